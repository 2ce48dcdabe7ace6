"""What trained autoencoders are for: each application is a library function that returns its numbers and
writes a picture, and each is reachable from the command line:

  python -m gen_jax.applications reduce   --workdir=DIR [--out=PNG]   # 2-D scatter, AE vs PCA, linear probe
  python -m gen_jax.applications anomaly  --config=configs/ae.py --held_out=0,1 --workdir=ROOT [--steps=N]
                                          [--score=reconstruction|code_knn]
  python -m gen_jax.applications denoise  --workdir=DIR [--noise_factor=0.5]
  python -m gen_jax.applications generate --workdir=DIR                # prior samples, interpolations, classes
  python -m gen_jax.applications compress --workdir=DIR1 --workdir=DIR2 ...   # PSNR against code bits
  python -m gen_jax.applications iwae     --workdir=DIR [--samples=1000] [--images=1000]

A workdir is one trained by `train.py` (any autoencoder or VAE config): `load_trained` restores its latest
checkpoint into the task's own state template. Pictures go to WORKDIR/applications/ unless --out is given.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gen_jax import config as config_lib
from gen_jax import corruption, data, images, tasks, vae
from gen_jax.checkpoint import Checkpointer
from gen_jax.models import autoencoders


# ----------------------------------------------------------------------------------------------------------
# A trained model, restored from a workdir
# ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained autoencoder or VAE with what it was trained on. `kind` is 'autoencoder' or 'vae'."""

    config: ml_collections.ConfigDict
    dataset: data.Dataset
    model: object
    params: object

    @property
    def kind(self) -> str:
        return "vae" if isinstance(self.model, autoencoders.VAE) else "autoencoder"

    @property
    def conditional(self) -> bool:
        return isinstance(self.model, autoencoders.ConditionalVAE)

    @property
    def code_dim(self) -> int:
        return self.model.latent_dim if self.kind == "vae" else self.model.code_dim

    def _labels(self, labels):
        return labels if self.conditional else None

    @functools.cached_property
    def _jitted(self) -> dict:
        """The model's encode / decode / score functions, compiled once per Trained."""
        model, vae_kind = self.model, self.kind == "vae"
        cond = self._labels

        def encode(params, x, labels):
            if vae_kind:
                return vae.encode(model, params, x, labels=cond(labels))[0]
            return model.apply({"params": params}, x, method=model.encode)

        def decode(params, z, labels):
            if vae_kind:
                return vae.decode(model, params, z, labels=cond(labels))
            return jax.nn.sigmoid(model.apply({"params": params}, z, method=model.decode))

        def score(params, x, labels, key):
            if vae_kind:
                return vae.negative_elbo(model, params, x, key, likelihood=self.config.loss.likelihood,
                                         labels=cond(labels))
            return jnp.sum((decode(params, encode(params, x, labels), labels) - x) ** 2, axis=(1, 2, 3))

        return {"encode": jax.jit(encode), "decode": jax.jit(decode), "score": jax.jit(score),
                "reconstruct": jax.jit(lambda p, x, y: decode(p, encode(p, x, y), y))}

    def _run(self, name, array, labels, batch_size, *extra):
        fn = self._jitted[name]
        return tasks.batched(lambda i, x: fn(self.params, x, _slice(labels, i, x), *[e(i) for e in extra]),
                             array, batch_size)

    def encode(self, images, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Codes [N, code_dim]: the code of an autoencoder, the posterior mean of a VAE."""
        return self._run("encode", images, labels, batch_size)

    def reconstruct(self, images, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Reconstructions in [0, 1] (a VAE decodes its posterior mean)."""
        return self._run("reconstruct", images, labels, batch_size)

    def decode(self, codes, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Images in [0, 1] from codes [N, code_dim]."""
        return self._run("decode", codes, labels, batch_size)

    def anomaly_scores(self, images, key, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Per-image anomaly score [N]: squared reconstruction error (autoencoder) or negative ELBO (VAE)."""
        return self._run("score", images, labels, batch_size, lambda i: jax.random.fold_in(key, i))


def _slice(labels, start, like):
    return None if labels is None else jnp.asarray(labels[start:start + len(like)])


def load_trained(workdir: str, *, source: str | None = None) -> Trained:
    """Restores the latest checkpoint in `workdir` (written by train.py) with its config and data set.

    `source` overrides the data source recorded in the workdir's config (e.g. to score another data set).
    """
    config = config_lib.load_saved(workdir)
    dataset = data.load(source) if source else data.from_config(config.data)
    task = tasks.build(config, dataset)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    if checkpointer.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints: train it first with train.py")
    state = checkpointer.restore(task.init_state(jax.random.key(0)))
    checkpointer.close()
    return Trained(config, dataset, tasks.create_model(config, dataset), state.params)


# ----------------------------------------------------------------------------------------------------------
# Dimensionality reduction and feature learning
# ----------------------------------------------------------------------------------------------------------
def pca_reconstruction_mse(train_images, test_images, num_components: int) -> float:
    """Held-out per-pixel MSE of PCA with `num_components` fitted on the training images (pixels clipped)."""
    from sklearn.decomposition import PCA
    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
    pca = PCA(num_components, random_state=0).fit(flat(train_images))
    recon = np.clip(pca.inverse_transform(pca.transform(flat(test_images))), 0.0, 1.0)
    return float(np.mean((recon - flat(test_images)) ** 2))


def linear_probe(train_features, train_labels, test_features, test_labels) -> float:
    """Test accuracy of a logistic regression fitted on standardised features (feature-learning probe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))
    probe.fit(flat(train_features), train_labels)
    return float(probe.score(flat(test_features), test_labels))


def reduce_dimensions(trained: Trained, out_png: str, *, max_train: int = 10000) -> dict:
    """Encodes the data set; writes a 2-D scatter of the test codes coloured by label; compares with PCA.

    Codes wider than 2 are projected on their first two principal components for the scatter.
    Returns held-out per-pixel MSE of the model and of PCA with as many components as the code has, and
    linear-probe accuracy on the codes and on raw pixels (both fitted on up to `max_train` training images).
    """
    from sklearn.decomposition import PCA
    ds = trained.dataset
    train_x, train_y = ds.train_images[:max_train], ds.train_labels[:max_train]
    train_codes = trained.encode(train_x, train_y)
    test_codes = trained.encode(ds.test_images, ds.test_labels)
    recon = trained.reconstruct(ds.test_images, ds.test_labels)
    k = trained.code_dim
    results = {
        "code_dim": k,
        "model_mse": float(np.mean((recon - ds.test_images) ** 2)),
        "pca_mse": pca_reconstruction_mse(train_x, ds.test_images, min(k, int(np.prod(ds.image_shape)))),
        "probe_accuracy_codes": linear_probe(train_codes, train_y, test_codes, ds.test_labels),
        "probe_accuracy_pixels": linear_probe(train_x, train_y, ds.test_images, ds.test_labels),
    }
    points = test_codes if k == 2 else PCA(2, random_state=0).fit(train_codes).transform(test_codes)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    scatter = ax.scatter(points[:, 0], points[:, 1], c=ds.test_labels, cmap="tab10", s=4)
    fig.colorbar(scatter, ax=ax, label="label")
    ax.set_title(f"test codes ({'2-D latent' if k == 2 else f'{k}-D codes, first 2 PCs'}); "
                 f"MSE {results['model_mse']:.4f} vs PCA {results['pca_mse']:.4f}", fontsize=9)
    _save(fig, out_png)
    return results


# ----------------------------------------------------------------------------------------------------------
# Anomaly detection
# ----------------------------------------------------------------------------------------------------------
def auroc(scores, is_anomaly) -> float:
    """ROC AUC of anomaly scores (higher = more anomalous) against boolean labels."""
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(np.asarray(is_anomaly, bool), np.asarray(scores, np.float64)))


def knn_cosine_distance(queries, references, *, k: int = 5, batch_size: int = 500) -> np.ndarray:
    """Mean cosine distance [N] from each query row to its k nearest reference rows (exact, in chunks)."""
    refs = _unit_rows(jnp.asarray(references, jnp.float32))
    k = min(k, refs.shape[0])
    return tasks.batched(lambda i, q: _knn_cosine(jnp.asarray(q, jnp.float32), refs, k), queries, batch_size)


def _unit_rows(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnums=2)
def _knn_cosine(queries, unit_refs, k: int):
    return 1.0 - jnp.mean(jax.lax.top_k(_unit_rows(queries) @ unit_refs.T, k)[0], axis=1)


ANOMALY_SCORES = ("reconstruction", "code_knn")


def anomaly_detection(trained: Trained, anomaly_label: int, out_png: str, *, key=None,
                      dataset: data.Dataset | None = None, score: str = "reconstruction", k: int = 5) -> dict:
    """Scores the test split (anomaly = images of class `anomaly_label`), returns AUROC, writes a histogram.

    score='reconstruction': squared reconstruction error (autoencoder) or negative ELBO (VAE).
    score='code_knn': mean cosine distance of the image's code to its k nearest training codes (the learned
    features as a novelty detector; reconstruction error calls simple unseen digits such as 1s normal).
    `trained` should not have seen `anomaly_label` in training (see `train_without`). `dataset` defaults to
    the model's own (whose training split lacks the held-out class and whose test split keeps every class).
    """
    ds = dataset or trained.dataset
    key = jax.random.key(0) if key is None else key
    if score == "reconstruction":
        scores = trained.anomaly_scores(ds.test_images, key, ds.test_labels)
        axis_label = "negative ELBO (nats)" if trained.kind == "vae" else "squared reconstruction error"
    elif score == "code_knn":
        normal = ds.train_labels != anomaly_label
        scores = knn_cosine_distance(trained.encode(ds.test_images, ds.test_labels),
                                     trained.encode(ds.train_images[normal], ds.train_labels[normal]), k=k)
        axis_label = f"mean cosine distance to the {k} nearest training codes"
    else:
        raise ValueError(f"unknown anomaly score {score!r}: use one of {ANOMALY_SCORES}")
    is_anomaly = ds.test_labels == anomaly_label
    result = {"anomaly_label": int(anomaly_label), "score": score, "auroc": auroc(scores, is_anomaly),
              "num_anomalies": int(is_anomaly.sum()), "num_normal": int((~is_anomaly).sum())}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=50)
    ax.hist(scores[~is_anomaly], bins=bins, alpha=0.6, density=True, label="normal (trained classes)")
    ax.hist(scores[is_anomaly], bins=bins, alpha=0.6, density=True, label=f"anomaly (class {anomaly_label})")
    ax.set_xlabel(axis_label)
    ax.set_title(f"held-out class {anomaly_label}: AUROC {result['auroc']:.3f}", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, out_png)
    return result


def train_without(config, workdir: str, anomaly_label: int) -> Trained:
    """Trains `config` with train.py's loop on its data minus class `anomaly_label` (data.exclude_labels);
    returns the model, whose data set keeps every class in its test split. Reruns resume."""
    from gen_jax import loop
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.exclude_labels = (anomaly_label,)
    loop.train(config, workdir)
    return load_trained(workdir)


# ----------------------------------------------------------------------------------------------------------
# Denoising, generation, compression, likelihood
# ----------------------------------------------------------------------------------------------------------
def denoise(trained: Trained, out_png: str, *, key=None, kind: str = "gaussian", noise_factor: float = 0.3,
            mask_rate: float = 0.25, num_show: int = 8) -> dict:
    """Corrupts the held-out images, reconstructs them, and reports mean PSNR (dB) before and after.

    Writes a grid whose rows are clean, corrupted and denoised images.
    """
    key = jax.random.key(0) if key is None else key
    clean = jnp.asarray(trained.dataset.test_images)
    noisy = np.asarray(corruption.corrupt(key, clean, kind=kind, noise_factor=noise_factor, mask_rate=mask_rate))
    denoised = trained.reconstruct(noisy, trained.dataset.test_labels)
    before = float(np.mean(corruption.psnr(jnp.asarray(noisy), clean)))
    after = float(np.mean(corruption.psnr(jnp.asarray(denoised), clean)))
    images.save_grid(out_png, np.concatenate([np.asarray(clean[:num_show]), noisy[:num_show], denoised[:num_show]]),
                     ncols=num_show)
    return {"corruption": kind, "psnr_noisy": before, "psnr_denoised": after, "psnr_gain": after - before}


def generate(trained: Trained, out_png: str, *, key=None, num: int = 64) -> dict:
    """VAE generation grids: prior samples (OUT), latent interpolations (OUT_interpolations.png) and, for a
    conditional VAE, one row per class (OUT_classes.png). Returns the paths written."""
    if trained.kind != "vae":
        raise ValueError("generate needs a VAE (a deterministic autoencoder has no prior to sample)")
    key = jax.random.key(0) if key is None else key
    model, params, ds = trained.model, trained.params, trained.dataset
    stem = os.path.splitext(out_png)[0]
    paths = {}
    if trained.conditional:
        classes = jnp.repeat(jnp.arange(ds.num_classes), 10)
        paths["classes"] = images.save_grid(f"{stem}_classes.png", np.asarray(
            vae.sample(model, params, key, len(classes), labels=classes)), ncols=10)
        labels = jnp.arange(num) % ds.num_classes
        paths["samples"] = images.save_grid(out_png, np.asarray(vae.sample(model, params, key, num, labels=labels)))
    else:
        paths["samples"] = images.save_grid(out_png, np.asarray(vae.sample(model, params, key, num)))
        test = jnp.asarray(ds.test_images)
        path = np.asarray(vae.interpolate(model, params, test[:8], test[8:16], num=10))
        paths["interpolations"] = images.save_grid(f"{stem}_interpolations.png",
                                                   path.reshape(-1, *path.shape[2:]), ncols=10)
    return paths


def compression(models: list[Trained], out_png: str) -> list[dict]:
    """Reconstruction PSNR against code size: each code is stored as float16 (16 bits per dimension).

    Returns one row per model (code_dim, bits per image, PSNR dB, per-pixel MSE) and plots PSNR against bits.
    """
    rows = []
    for trained in sorted(models, key=lambda t: t.code_dim):
        ds = trained.dataset
        codes = trained.encode(ds.test_images, ds.test_labels).astype(np.float16).astype(np.float32)
        recon = trained.decode(codes, ds.test_labels)
        psnr = float(np.mean(corruption.psnr(jnp.asarray(recon), jnp.asarray(ds.test_images))))
        rows.append({"code_dim": trained.code_dim, "bits_per_image": 16 * trained.code_dim,
                     "raw_bits_per_image": 8 * int(np.prod(ds.image_shape)), "psnr": psnr,
                     "mse": float(np.mean((recon - ds.test_images) ** 2))})
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r["bits_per_image"] for r in rows], [r["psnr"] for r in rows], marker="o")
    for r in rows:
        ax.annotate(f"{r['code_dim']}-d", (r["bits_per_image"], r["psnr"]), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("code size (bits per image, float16)")
    ax.set_ylabel("held-out reconstruction PSNR (dB)")
    _save(fig, out_png)
    return rows


def iwae(trained: Trained, *, num_samples: int = 1000, num_images: int = 0, key=None, batch_size: int = 100,
         chunk_size: int = 50) -> dict:
    """Importance-weighted test NLL (nats) with `num_samples` samples on `num_images` test images (0: all; fewer:
    `data.random_subset(total, num_images, key)`, unbiased for the whole test set), its standard error over
    those images, and the single-sample negative ELBO on the same images. Binarised models see one fixed
    binarisation of the test set, as in training's evaluation."""
    if trained.kind != "vae":
        raise ValueError("iwae needs a VAE")
    key = jax.random.key(0) if key is None else key
    rows = data.random_subset(len(trained.dataset.test_images), num_images, key)
    n = len(rows)
    binarize_key, elbo_key, iwae_key = jax.random.split(jax.random.fold_in(key, 1), 3)
    labels = trained.dataset.test_labels
    x, y = jnp.asarray(trained.dataset.test_images[rows]), None if labels is None else labels[rows]
    if trained.config.data.binarize:
        x = data.preprocess(x, uniform=jax.random.uniform(binarize_key, x.shape))
    model, likelihood = trained.model, trained.config.loss.likelihood
    fn = jax.jit(functools.partial(vae.iwae_nll, model, num_samples=num_samples, chunk_size=chunk_size,
                                   likelihood=likelihood))
    nll = tasks.batched(lambda i, xb: fn(trained.params, xb, jax.random.fold_in(iwae_key, i),
                                         labels=trained._labels(_slice(y, i, xb))), x, batch_size)
    elbo = trained.anomaly_scores(x, elbo_key, y, batch_size=batch_size)
    return {"iwae_nll": float(nll.mean()), "iwae_nll_se": float(nll.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
            "neg_elbo": float(elbo.mean()), "num_samples": num_samples, "num_images": int(n)}


# ----------------------------------------------------------------------------------------------------------
# Plot helpers and the command line
# ----------------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _out(args, name: str) -> str:
    return args.out or os.path.join(args.workdir[0], "applications", f"{name}.png")


def main(argv=None) -> int:
    """Command-line entry: `python -m gen_jax.applications TASK --workdir=DIR ...` (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m gen_jax.applications", description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["reduce", "anomaly", "denoise", "generate", "compress", "iwae"])
    parser.add_argument("--workdir", action="append", required=True,
                        help="trained workdir (compress: repeat for each code size; anomaly: output root)")
    parser.add_argument("--out", default="", help="PNG to write (default WORKDIR/applications/TASK.png)")
    parser.add_argument("--config", default="", help="anomaly: config file to train without each held-out class")
    parser.add_argument("--held_out", default="0", help="anomaly: comma-separated classes to hold out")
    parser.add_argument("--steps", type=int, default=0, help="anomaly: override train.steps")
    parser.add_argument("--score", default="reconstruction", choices=ANOMALY_SCORES,
                        help="anomaly: reconstruction error / negative ELBO, or kNN distance between codes")
    parser.add_argument("--source", default="", help="anomaly: override data.source (e.g. idx:DIR)")
    parser.add_argument("--corruption", default="gaussian", choices=["gaussian", "masking"])
    parser.add_argument("--noise_factor", type=float, default=0.3)
    parser.add_argument("--mask_rate", type=float, default=0.25)
    parser.add_argument("--samples", type=int, default=1000, help="iwae: importance samples k")
    parser.add_argument("--images", type=int, default=0, help="iwae: test images used, a random subset (0: all)")
    args = parser.parse_args(argv)
    if args.task == "reduce":
        result = reduce_dimensions(load_trained(args.workdir[0]), _out(args, "reduce"))
    elif args.task == "denoise":
        result = denoise(load_trained(args.workdir[0]), _out(args, "denoise"), kind=args.corruption,
                         noise_factor=args.noise_factor, mask_rate=args.mask_rate)
    elif args.task == "generate":
        result = generate(load_trained(args.workdir[0]), _out(args, "generate"))
    elif args.task == "compress":
        result = compression([load_trained(w) for w in args.workdir], _out(args, "compress"))
    elif args.task == "iwae":
        result = iwae(load_trained(args.workdir[0]), num_samples=args.samples, num_images=args.images)
    else:
        result = _anomaly_cli(args)
    print(json.dumps(result, indent=2))
    return 0


def _anomaly_cli(args) -> dict:
    if not args.config:
        raise SystemExit("anomaly needs --config=configs/NAME.py (trained once per held-out class)")
    import runpy
    config = ml_collections.ConfigDict(runpy.run_path(args.config)["get_config"]().to_dict())
    if args.steps:
        config.train.steps = args.steps
    if args.source:
        config.data.source = args.source
    config.train.progress = False
    rows = []
    for label in (int(c) for c in args.held_out.split(",")):
        workdir = os.path.join(args.workdir[0], f"without_{label}")
        trained = train_without(config, workdir, label)
        rows.append(anomaly_detection(trained, label, os.path.join(workdir, f"anomaly_{args.score}.png"),
                                      score=args.score))
    return {"per_class": rows, "mean_auroc": float(np.mean([r["auroc"] for r in rows]))}


if __name__ == "__main__":
    sys.exit(main())
