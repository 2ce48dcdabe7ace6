"""Side-by-side GAN benchmark on MNIST: gen_jax (configs/KIND.py through the one train loop) against the
PyTorch seed (benchmarks/torch_seed.py), same architecture, batch size, optimizer and generator steps.

Both sides' samples are scored by one digit classifier trained here (an MLP 784-256-128-10 in JAX on MNIST
train, ~98% test accuracy), until the project's own classifier exists:
  fid       Frechet distance between 10k samples and the 10k MNIST test images in the classifier's
            128-d penultimate feature space (gen_jax.metrics.fid); lower is better
  classes   classes predicted for at least 1% of the samples (10 = every digit present)
  kl_uniform  KL(predicted class histogram || uniform): 0 when balanced (Metz et al. 2017)
  cond_acc  conditional models only: fraction of samples classified as the label they were drawn for
  images/s  real training images consumed per second (n_critic * 64 per generator step for the WGANs)

  python benchmarks/gan_mnist.py --kinds=gan,dcgan --steps=3000 [--out=results.json]
gen_jax samples with its EMA generator weights (its default); the seed has none. The torch side uses the
learning rate and Adam betas of configs/KIND.py (b1=0.5 for gan/dcgan/cgan; the seed's torch default b1=0.9
collapses both sides' MLP GAN to 1-4 classes by step 3000).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks import torch_seed  # noqa: E402
from gen_jax import metrics  # noqa: E402

MNIST = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
NUM_SAMPLES = 10_000


# ----------------------------------------------------------------------------- the judge
def _mlp(params, x):
    """Classifier logits and its penultimate (128-d) features for images [N, 28, 28, 1] in [0, 1]."""
    h = x.reshape(len(x), -1)
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params[-1]
    return h @ w + b, h


def train_classifier(images, labels, *, steps=3000, batch=128, seed=0):
    """An MLP digit classifier (Adam 1e-3), trained on `images` (MNIST train)."""
    key = jax.random.key(seed)
    sizes = [784, 256, 128, 10]
    params = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params.append((jax.random.normal(jax.random.fold_in(key, i), (n_in, n_out)) * np.sqrt(2 / n_in),
                       jnp.zeros(n_out)))
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(_mlp(p, x)[0], y).mean()
        grads = jax.grad(loss)(params)
        updates, opt = tx.update(grads, opt)
        return optax.apply_updates(params, updates), opt

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(images), batch)
        params, opt = step(params, opt, images[idx], labels[idx])
    return params


class Judge:
    """Scores a sample set against the MNIST test set in the classifier's feature space."""

    def __init__(self, params, test_images, test_labels):
        self._apply = jax.jit(functools.partial(_mlp, params))
        logits, self.test_features = self.embed(test_images)
        self.test_accuracy = float(np.mean(np.argmax(logits, 1) == test_labels))

    def embed(self, images):
        outs = [self._apply(jnp.asarray(images[i:i + 1000])) for i in range(0, len(images), 1000)]
        return np.concatenate([np.asarray(o[0]) for o in outs]), np.concatenate([np.asarray(o[1]) for o in outs])

    def score(self, images01, labels=None) -> dict:
        logits, features = self.embed(np.clip(images01, 0.0, 1.0).astype(np.float32))
        predicted = np.argmax(logits, 1)
        hist = metrics.class_histogram(jnp.asarray(predicted), num_classes=10)
        counts = np.asarray(hist.counts)
        out = {"fid": float(metrics.fid(jnp.asarray(features), jnp.asarray(self.test_features))),
               "classes": int(np.sum(counts >= 0.01 * len(predicted))),
               "kl_uniform": float(hist.kl_to_uniform),
               "class_counts": counts.tolist()}
        if labels is not None:
            out["cond_acc"] = float(np.mean(predicted == labels))
        return out


# ----------------------------------------------------------------------------- the two sides
def _config(kind):
    spec = importlib.util.spec_from_file_location(kind, os.path.join(ROOT, "configs", f"{kind}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def run_jax(kind, steps, workdir, seed=0, overrides=()):
    """Trains configs/KIND.py on MNIST; returns (samples [N, 28, 28, 1] in [0, 1], labels or None, images/s).

    overrides: (dotted key, value) pairs applied to the config, e.g. ("gan.ema_decay", 0.0).
    """
    from gen_jax.loop import train
    from gen_jax.sample import load_run
    config = _config(kind)
    for key, value in overrides:
        section, _, field = key.rpartition(".")
        (config[section] if section else config)[field] = value
    config.data.source = f"idx:{MNIST}"
    config.seed = seed
    config.train.update(steps=steps, log_every=100, sample_every=max(steps // 6, 1), checkpoint_every=steps,
                        progress=False)
    config.eval.num_samples = 1000
    summary = train(config, workdir)
    if summary["interrupted"] or summary["step"] != steps:
        raise SystemExit(f"gen_jax {kind} stopped at step {summary['step']} (signal {summary['interrupted']})")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        speeds = [row["images_per_sec"] for row in map(json.loads, f) if "images_per_sec" in row]
    _, _, task, state, _ = load_run(workdir)
    images, labels = task.sample(state, jax.random.key(seed + 1), NUM_SAMPLES)
    return images, labels, float(np.median(speeds))


def run_torch(kind, steps, x01, labels, seed=0, threads=None):
    """Trains the seed's KIND with torch_seed.train_gan, with the optimizer settings of configs/KIND.py (so both
    sides train the same way); returns (samples in [0, 1], labels or None, images/s)."""
    optim = _config(kind).optim_d
    betas = (optim.b1, optim.b2) if optim.name == "adam" else None
    sampler, ips = torch_seed.train_gan(kind, x01 * 2 - 1, labels, steps=steps, batch_size=64, seed=seed,
                                        lr=optim.learning_rate, betas=betas, num_threads=threads)
    wanted = np.arange(NUM_SAMPLES) % 10 if kind == "cgan" else None
    chunks = [sampler(1000, labels=None if wanted is None else wanted[i:i + 1000], seed=seed + 1 + i)
              for i in range(0, NUM_SAMPLES, 1000)]
    return (np.concatenate(chunks) + 1) / 2, wanted, ips


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="gan,dcgan", help="comma-separated: gan,dcgan,cgan,wgan,wgan_gp")
    parser.add_argument("--steps", type=int, default=3000, help="generator steps")
    parser.add_argument("--sides", default="jax,torch")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default="", help="append results as JSON lines here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="gen_jax config override (Python literal), e.g. --set gan.ema_decay=0.0")
    args = parser.parse_args(argv)
    import ast
    overrides = [(k, ast.literal_eval(v)) for k, _, v in (item.partition("=") for item in args.set)]

    x_train, y_train = torch_seed.load_mnist(MNIST, "train")
    x_test, y_test = torch_seed.load_mnist(MNIST, "test")
    start = time.perf_counter()
    judge = Judge(train_classifier(x_train, y_train), x_test, y_test)
    print(f"judge: MLP classifier, test accuracy {judge.test_accuracy:.4f} ({time.perf_counter() - start:.0f}s); "
          f"real test images vs themselves: fid 0, train images: "
          f"fid {judge.score(x_train[:NUM_SAMPLES])['fid']:.3f}", flush=True)
    for kind in args.kinds.split(","):
        for side in args.sides.split(","):
            start = time.perf_counter()
            if side == "jax":
                images, labels, ips = run_jax(kind, args.steps, tempfile.mkdtemp(prefix=f"gan_mnist_{kind}_"),
                                              overrides=overrides)
            else:
                images, labels, ips = run_torch(kind, args.steps, x_train, y_train, threads=args.threads)
            row = {"kind": kind, "side": side, "steps": args.steps, "images_per_sec": round(ips, 1),
                   **({"overrides": dict(overrides)} if side == "jax" and overrides else {}),
                   "wall_s": round(time.perf_counter() - start), **judge.score(images, labels),
                   "backend": jax.default_backend() if side == "jax" else "torch-cpu"}
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
