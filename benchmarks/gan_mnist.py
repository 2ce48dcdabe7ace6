"""Side-by-side GAN benchmark on MNIST: gen_jax (configs/KIND.py through the one train loop) against the
PyTorch seed (benchmarks/torch_seed.py), same architecture, batch size, optimizer and generator steps.

Both sides' 10k samples are scored by the project's own evaluation (gen_jax.evaluation.sample_quality.generative_metrics) in the
feature space of a LeNet digit classifier (gen_jax.classifier, ~99% MNIST test accuracy; trained into
--classifier on first use), against the 10k MNIST test images:
  fid, kid      Frechet / kernel distance in the classifier's feature space; lower is better
  precision, recall  improved precision and recall (k=3)
  classes_covered    classes predicted for more than 1% of the samples (10 = every digit present)
  class_kl      KL(predicted class histogram || uniform): 0 when balanced (Metz et al. 2017)
  label_accuracy     conditional models only: fraction classified as the label they were drawn for
  images/s      real training images consumed per second (n_critic * 64 per generator step for the WGANs)

  python benchmarks/gan_mnist.py --kinds=gan,dcgan --steps=3000 [--out=results.json]
gen_jax samples with its EMA generator weights where the config keeps one (all but wgan_gp); the seed has none
(--rescore_raw scores finished gen_jax runs with their raw weights). The torch side uses the
learning rate and Adam betas of configs/KIND.py (b1=0.5 for gan/dcgan/cgan; the seed's torch default b1=0.9
collapses both sides' MLP GAN to 1-4 classes by step 3000).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import benchmarks  # noqa: E402
from benchmarks import torch_seed  # noqa: E402
from gen_jax import config as config_lib  # noqa: E402
from gen_jax import data  # noqa: E402
from gen_jax.evaluation import domain_classifier as classifier_lib  # noqa: E402
from gen_jax.evaluation import sample_quality  # noqa: E402
from gen_jax.training.loop import train  # noqa: E402
from gen_jax.training.runs import restore_run  # noqa: E402

MNIST = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
NUM_SAMPLES = 10_000


# ----------------------------------------------------------------------------- the judge
class Judge:
    """The project's own evaluation (gen_jax.evaluate) with a LeNet MNIST classifier, against the MNIST test set."""

    def __init__(self, classifier_dir: str, dataset):
        self.dataset, self.classifier_dir = dataset, classifier_dir
        if not os.path.exists(os.path.join(classifier_dir, classifier_lib.SPEC_FILE)):
            print(f"training the judge (gen_jax.classifier, LeNet) into {classifier_dir}", flush=True)
            classifier_lib.save(classifier_lib.train(dataset, progress=False), classifier_dir)
        self.classifier = classifier_lib.load(classifier_dir)
        self.reference = sample_quality.reference_stats(self.classifier, dataset, split="test",
                                                  cache_dir=sample_quality.default_cache_dir(classifier_dir))

    def score(self, images01, labels=None) -> dict:
        results = sample_quality.generative_metrics(data.quantize(images01), labels, self.classifier, self.reference,
                                              key=jax.random.key(0))
        keep = ("fid", "kid", "precision", "recall", "classes_covered", "class_kl", "label_accuracy",
                "class_counts", "extractor")
        return {k: results[k] for k in keep if k in results}


# ----------------------------------------------------------------------------- the two sides
def _config(kind, overrides=()):
    """configs/KIND.py with `overrides`: (dotted key, value) pairs, e.g. ("gan.ema_decay", 0.0)."""
    return config_lib.load(os.path.join(ROOT, "configs", f"{kind}.py"), dict(overrides))


def run_jax(config, steps, workdir):
    """Trains `config` (a configs/KIND.py) on MNIST; returns (samples [N, 28, 28, 1] in [0, 1], labels or None,
    images/s)."""
    config.data.source = f"idx:{MNIST}"
    config.train.update(steps=steps, log_every=100, sample_every=max(steps // 6, 1), checkpoint_every=steps,
                        progress=False)
    config.eval.num_samples = 1000
    summary = train(config, workdir)
    if summary["interrupted"] or summary["step"] != steps:
        raise SystemExit(f"gen_jax run {workdir} stopped at step {summary['step']} (signal {summary['interrupted']})")
    return jax_samples(workdir)[:3]


def jax_samples(workdir, raw_weights=False):
    """(samples, labels or None, median images/s, config) of a finished gen_jax run, drawn as run_jax draws them:
    from the EMA generator (the config's ema_decay), or from the raw generator weights, as the seed samples."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        speeds = [row["images_per_sec"] for row in map(json.loads, f) if "images_per_sec" in row]
    run = restore_run(workdir)
    state = run.state.replace(ema_params={"generator": run.state["generator"].params}) if raw_weights else run.state
    images, labels = run.task.sample(state, jax.random.key(run.config.seed + 1), NUM_SAMPLES)
    return images, labels, float(np.median(speeds)), run.config


def run_torch(kind, config, steps, x01, labels, threads=None):
    """Trains the seed's KIND with torch_seed.train_gan the way `config` trains gen_jax's (optimizer settings,
    seed, and a spectrally normalised discriminator when the config has one); returns (samples in [0, 1],
    labels or None, images/s)."""
    optim, seed = config.optim_d, config.seed
    betas = (optim.b1, optim.b2) if optim.name == "adam" else None
    sampler, ips = torch_seed.train_gan(kind, x01 * 2 - 1, labels, steps=steps, batch_size=64, seed=seed,
                                        lr=optim.learning_rate, betas=betas, num_threads=threads,
                                        spectral_norm=config.discriminator.get("spectral_norm", False))
    wanted = np.arange(NUM_SAMPLES) % 10 if kind == "cgan" else None
    chunks = [sampler(1000, labels=None if wanted is None else wanted[i:i + 1000], seed=seed + 1 + i)
              for i in range(0, NUM_SAMPLES, 1000)]
    return (np.concatenate(chunks) + 1) / 2, wanted, ips


def report(path: str) -> str:
    """A markdown table of the JSON lines in `path`: each kind's sides beside each other."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = ["| config | side | seed | spectral norm | init | sampled from | FID | KID | precision | recall | "
           "classes (>1%) | class KL | label acc. | images/s | commit |", "|---" * 15 + "|"]
    for r in rows:
        side = "gen_jax" if r["side"] == "jax" else "PyTorch seed"
        acc = f"{r['label_accuracy']:.3f}" if "label_accuracy" in r else "-"
        overrides = r.get("overrides", {})
        seed = overrides.get("seed", 0)
        init = r.get("weight_init", overrides.get("generator.weight_init", "flax")) if r["side"] == "jax" else "torch"
        ema_default = "EMA" if r["side"] == "jax" and overrides.get("gan.ema_decay", 0.999) > 0 else "raw"
        out.append(f"| {r['kind']} | {side} | {seed} | {'yes' if r.get('spectral_norm') else 'no'} | {init} | "
                   f"{r.get('weights', ema_default)} | {r['fid']:.1f} | "
                   f"{r['kid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['classes_covered']} | "
                   f"{r['class_kl']:.3f} | {acc} | {r['images_per_sec']:.0f} | {r.get('commit', '?')} |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="gan,dcgan", help="comma-separated: gan,dcgan,cgan,wgan,wgan_gp")
    parser.add_argument("--steps", type=int, default=3000, help="generator steps")
    parser.add_argument("--sides", default="jax,torch")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--classifier", default=os.path.join(ROOT, "runs", "classifier_mnist"),
                        help="the judge: a gen_jax.classifier folder (trained there when absent)")
    parser.add_argument("--out", default="", help="append results as JSON lines here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (Python literal) for both sides, e.g. --set seed=1 (the torch side "
                             "follows optimizer settings, seed and discriminator.spectral_norm)")
    parser.add_argument("--report", default="", help="print the results in FILE (JSON lines) as a table, and stop")
    parser.add_argument("--rescore_raw", default="", metavar="DIR,...",
                        help="instead of training: score finished gen_jax runs of --kinds (one kind) with their raw "
                             "generator weights (the EMA does not feed back into training, so this is the run "
                             "with gan.ema_decay=0)")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.report))
        return
    import ast
    overrides = [(k, ast.literal_eval(v)) for k, _, v in (item.partition("=") for item in args.set)]

    x_train, y_train = torch_seed.load_mnist(MNIST, "train")
    judge = Judge(args.classifier, data.load(f"idx:{MNIST}"))
    print(f"judge: {judge.classifier.name}, test accuracy {judge.classifier.spec['test_accuracy']:.4f}; "
          f"10k MNIST train images score {json.dumps(judge.score(x_train[:NUM_SAMPLES]))}", flush=True)
    if args.rescore_raw:
        for workdir in args.rescore_raw.split(","):
            images, labels, ips, config = jax_samples(workdir, raw_weights=True)
            _write(args.out, {"kind": args.kinds, "side": "jax", "commit": benchmarks.commit(),
                              "rescored_run": os.path.basename(workdir.rstrip("/")), "steps": args.steps, "images_per_sec": round(ips, 1),
                              **_model_fields(config, "jax"), "weights": "raw", "overrides": {"seed": config.seed},
                              **judge.score(images, labels), "backend": jax.default_backend()})
        return
    for kind in args.kinds.split(","):
        for side in args.sides.split(","):
            start = time.perf_counter()
            config = _config(kind, overrides)
            if side == "jax":
                images, labels, ips = run_jax(config, args.steps, tempfile.mkdtemp(prefix=f"gan_mnist_{kind}_"))
            else:
                images, labels, ips = run_torch(kind, config, args.steps, x_train, y_train, threads=args.threads)
            row = {"kind": kind, "side": side, "commit": benchmarks.commit(), "steps": args.steps,
                   "images_per_sec": round(ips, 1),
                   **_model_fields(config, side),
                   "weights": "EMA" if side == "jax" and config.gan.ema_decay > 0 else "raw",
                   **({"overrides": dict(overrides)} if overrides else {}),
                   "wall_s": round(time.perf_counter() - start), **judge.score(images, labels),
                   "backend": jax.default_backend() if side == "jax" else "torch-cpu"}
            _write(args.out, row)


def _model_fields(config, side):
    """The result row's spectral_norm and weight_init of `config` trained by `side` (torch: PyTorch's init)."""
    return {"spectral_norm": bool(config.discriminator.get("spectral_norm", False)),
            "weight_init": config.generator.get("weight_init", "flax") if side == "jax" else "torch"}


def _write(path, row):
    """Prints a result row, and appends it to `path` (JSON lines) when given."""
    print(json.dumps(row), flush=True)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
