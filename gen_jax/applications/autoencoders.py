"""What trained autoencoders are for: each application is a library function that returns its numbers and
writes a picture; `python -m gen_jax.applications` is the command line over them:

  python -m gen_jax.applications reduce   --workdir=DIR [--out=PNG]   # 2-D scatter, AE vs PCA, linear probe
  python -m gen_jax.applications anomaly  --config=configs/ae.py --held_out=0,1 --workdir=ROOT [--steps=N]
                                          [--score=reconstruction|code_knn]
  python -m gen_jax.applications denoise  --workdir=DIR [--noise_factor=0.5]
  python -m gen_jax.applications generate --workdir=DIR                # prior samples, interpolations, classes
  python -m gen_jax.applications compress --workdir=DIR1 --workdir=DIR2 ...   # PSNR against code bits
  python -m gen_jax.applications iwae     --workdir=DIR [--samples=1000] [--images=1000]

A workdir is one trained by `train.py` (any autoencoder or VAE config); `load_trained` opens it through
`training.runs.restore_run`. Pictures go to WORKDIR/applications/ unless --out is given.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from types import ModuleType

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gen_jax import data, images
from gen_jax.data import corruption
from gen_jax.errors import UserError
from gen_jax.evaluation import metrics
from gen_jax.families import autoencoder, vae
from gen_jax.training import loop
from gen_jax.training.runs import restore_run

FAMILY_FUNCTIONS = {"vae": vae, "autoencoder": autoencoder}  # the same code/decode/reconstruct/anomaly_score


# ----------------------------------------------------------------------------------------------------------
# A trained model, restored from a workdir
# ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained autoencoder or VAE with what it was trained on; its family's functions run in jitted batches."""

    config: ml_collections.ConfigDict
    dataset: data.Dataset
    model: object
    params: object

    @property
    def family(self) -> ModuleType:
        """`families.vae` or `families.autoencoder`: both offer code, decode, reconstruct and anomaly_score."""
        return FAMILY_FUNCTIONS[self.config.task]

    @property
    def conditional(self) -> bool:
        return getattr(self.model, "num_classes", 0) > 0

    @property
    def code_dim(self) -> int:
        return self.model.latent_dim if self.config.task == "vae" else self.model.code_dim

    @functools.cached_property
    def _jitted(self) -> dict:
        """The family's functions bound to the model, compiled once per Trained."""
        likelihood = self.config.loss.get("likelihood", "")
        score = functools.partial(self.family.anomaly_score, likelihood=likelihood)
        return {name: jax.jit(functools.partial(fn, self.model))
                for name, fn in (("code", self.family.code), ("decode", self.family.decode),
                                 ("reconstruct", self.family.reconstruct), ("score", score))}

    def _run(self, name, array, labels, batch_size, key=None):
        fn = self._jitted[name]
        extra = (lambda i: (jax.random.fold_in(key, i),)) if key is not None else (lambda i: ())
        labels = labels if self.conditional else None
        return data.map_batches(lambda i, x: fn(self.params, x, *extra(i), labels=_slice(labels, i, x)),
                                array, batch_size)

    def encode(self, images, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Codes [N, code_dim]: the code of an autoencoder, the posterior mean of a VAE."""
        return self._run("code", images, labels, batch_size)

    def reconstruct(self, images, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Reconstructions in [0, 1] (a VAE decodes its posterior mean)."""
        return self._run("reconstruct", images, labels, batch_size)

    def decode(self, codes, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Images in [0, 1] from codes [N, code_dim]."""
        return self._run("decode", codes, labels, batch_size)

    def anomaly_scores(self, images, key, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """Per-image anomaly score [N]: squared reconstruction error (autoencoder) or negative ELBO (VAE)."""
        return self._run("score", images, labels, batch_size, key)


def _slice(labels, start, like):
    return None if labels is None else jnp.asarray(labels[start:start + len(like)])


def load_trained(workdir: str, *, source: str | None = None) -> Trained:
    """The latest checkpoint of the autoencoder or VAE run in `workdir` (written by train.py).

    `source` overrides the data source recorded in the workdir's config (e.g. to score another data set).
    """
    run = restore_run(workdir, source=source)
    if run.config.task not in FAMILY_FUNCTIONS:
        raise UserError(f"{workdir} holds a {run.config.task!r} run; the applications need an autoencoder or VAE")
    return Trained(run.config, run.dataset, run.task.modules["model"], run.state.params)


# ----------------------------------------------------------------------------------------------------------
# Dimensionality reduction and feature learning
# ----------------------------------------------------------------------------------------------------------
def pca_reconstruction_mse(train_images, test_images, num_components: int) -> float:
    """Held-out per-pixel MSE of PCA with `num_components` fitted on the training images (pixels clipped)."""
    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
    pca = PCA(num_components, random_state=0).fit(flat(train_images))
    recon = np.clip(pca.inverse_transform(pca.transform(flat(test_images))), 0.0, 1.0)
    return float(np.mean((recon - flat(test_images)) ** 2))


def linear_probe(train_features, train_labels, test_features, test_labels) -> float:
    """Test accuracy of a logistic regression fitted on standardised features (feature-learning probe)."""
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
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
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
    return float(roc_auc_score(np.asarray(is_anomaly, bool), np.asarray(scores, np.float64)))


def knn_cosine_distance(queries, references, *, k: int = 5, batch_size: int = 500) -> np.ndarray:
    """Mean cosine distance [N] from each query row to its k nearest reference rows (exact, in chunks)."""
    refs = _unit_rows(jnp.asarray(references, jnp.float32))
    k = min(k, refs.shape[0])
    return data.map_batches(lambda i, q: _knn_cosine(jnp.asarray(q, jnp.float32), refs, k), queries, batch_size)


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
        axis_label = "negative ELBO (nats)" if trained.config.task == "vae" else "squared reconstruction error"
    elif score == "code_knn":
        normal = ds.train_labels != anomaly_label
        scores = knn_cosine_distance(trained.encode(ds.test_images, ds.test_labels),
                                     trained.encode(ds.train_images[normal], ds.train_labels[normal]), k=k)
        axis_label = f"mean cosine distance to the {k} nearest training codes"
    else:
        raise UserError(f"unknown anomaly score {score!r}: use one of {ANOMALY_SCORES}")
    is_anomaly = ds.test_labels == anomaly_label
    result = {"anomaly_label": int(anomaly_label), "score": score, "auroc": auroc(scores, is_anomaly),
              "num_anomalies": int(is_anomaly.sum()), "num_normal": int((~is_anomaly).sum())}
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
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
    before = float(np.mean(metrics.psnr(jnp.asarray(noisy), clean)))
    after = float(np.mean(metrics.psnr(jnp.asarray(denoised), clean)))
    images.save_grid(out_png, np.concatenate([np.asarray(clean[:num_show]), noisy[:num_show], denoised[:num_show]]),
                     ncols=num_show)
    return {"corruption": kind, "psnr_noisy": before, "psnr_denoised": after, "psnr_gain": after - before}


def generate(trained: Trained, out_png: str, *, key=None, num: int = 64) -> dict:
    """VAE generation grids: prior samples (OUT), latent interpolations (OUT_interpolations.png) and, for a
    conditional VAE, one row per class (OUT_classes.png). Returns the paths written."""
    if trained.config.task != "vae":
        raise UserError("generate needs a VAE (a deterministic autoencoder has no prior to sample)")
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
        psnr = float(np.mean(metrics.psnr(jnp.asarray(recon), jnp.asarray(ds.test_images))))
        rows.append({"code_dim": trained.code_dim, "bits_per_image": 16 * trained.code_dim,
                     "raw_bits_per_image": 8 * int(np.prod(ds.image_shape)), "psnr": psnr,
                     "mse": float(np.mean((recon - ds.test_images) ** 2))})
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
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
    """Importance-weighted test NLL (nats) of a VAE: `families.vae.iwae_evaluation` on the test split."""
    if trained.config.task != "vae":
        raise UserError("iwae needs a VAE")
    ds = trained.dataset
    return vae.iwae_evaluation(trained.model, trained.params, ds.test_images,
                               ds.test_labels if trained.conditional else None,
                               jax.random.key(0) if key is None else key, num_samples=num_samples,
                               num_images=num_images, likelihood=trained.config.loss.likelihood,
                               binarize=trained.config.data.binarize, batch_size=batch_size, chunk_size=chunk_size)


# ----------------------------------------------------------------------------------------------------------
# Plot helpers
# ----------------------------------------------------------------------------------------------------------
def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
