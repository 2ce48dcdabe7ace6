"""Sample quality in a domain classifier's feature space: cached reference statistics, every metric of a set
of samples against them, and the eval.json record (`python -m gen_jax.evaluate` is the command line over it).

Generated images are quantised to uint8 first (as a saved PNG would be), and so are the reference images.
Every number is reported with its extractor ("lenet:HASH", `evaluation.domain_classifier`), the sample count
and the reference split it is compared with. The metrics themselves are `evaluation.metrics`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import files
from gen_jax.data import quantize
from gen_jax.errors import UserError
from gen_jax.evaluation import domain_classifier as classifier_lib
from gen_jax.evaluation import metrics

REFERENCE_CACHE = "reference_stats"  # under the classifier's folder unless another cache_dir is given
MIN_SAMPLES = 10  # the Inception Score's 10 splits need one sample each
COVERAGE_MIN_SHARE = 0.1  # a class is covered with > 10% of a uniform share of the samples (not by stray errors)
_STD_OF = {"kid": "kid_std", "is": "is_std"}
METRIC_NAMES = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "classes_covered", "class_kl",
                "label_accuracy")


# ----------------------------------------------------------------------------- reference statistics
@dataclasses.dataclass(frozen=True)
class ReferenceStats:
    """Features of real images under one extractor: the FID Gaussian (float64) and the rows for KID and k-NN."""

    data: str               # the data source, e.g. 'idx:../shared/data/mnist'
    split: str              # 'train' | 'test'
    extractor: str          # Classifier.name
    num_images: int
    mu: np.ndarray          # [F] float64
    sigma: np.ndarray       # [F, F] float64
    features: np.ndarray    # [num_images, F] float32

    @property
    def name(self) -> str:
        return f"{self.data}:{self.split}"


def _split(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "train":
        return dataset.train_images, dataset.train_labels
    if split == "test":
        return dataset.test_images, dataset.test_labels
    raise UserError(f"reference split must be 'train' or 'test', got {split!r}")


def cache_path(cache_dir: str, data: str, split: str, extractor: str, data_digest: str) -> str:
    """The file caching one reference: its name holds every part of the key (data source, split, extractor
    hash, a digest of the exact uint8 images), so a changed extractor or data set never reads stale numbers."""
    key = hashlib.sha256(json.dumps([data, split, extractor, data_digest]).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(data.rstrip("/")) or data).strip("_")[:40]
    return os.path.join(cache_dir, f"{slug}_{split}_{extractor.replace(':', '-')}_{key}.npz")


def reference_stats(classifier: classifier_lib.Classifier, dataset, *, split: str = "test", num_images: int = 0,
                    cache_dir: str | None = None) -> ReferenceStats:
    """Reference statistics of `dataset`'s `split` (its first `num_images`, 0 = all) under `classifier`.

    Read from `cache_dir` when a file with the same key exists (see `cache_path`), computed and written there
    otherwise (None: no cache).
    """
    images, _ = _split(dataset, split)
    images = quantize(images[:num_images or None])
    if len(images) <= 5:
        raise UserError(f"the {split} split of {dataset.name} has {len(images)} images; need more than 5")
    digest = hashlib.sha256(images.tobytes()).hexdigest()[:16]
    path = cache_path(cache_dir, dataset.name, split, classifier.name, digest) if cache_dir else None
    if path and os.path.exists(path):
        with np.load(path) as cached:
            if str(cached["extractor"]) == classifier.name and str(cached["data_digest"]) == digest:
                return ReferenceStats(dataset.name, split, classifier.name, len(images), cached["mu"],
                                      cached["sigma"], cached["features"])
    features, _ = classifier.features_and_probs(images)
    mu, sigma = metrics.feature_stats(features)
    stats = ReferenceStats(dataset.name, split, classifier.name, len(images), np.asarray(mu),
                           np.asarray(sigma), np.asarray(features))
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp.npz"  # write then rename: readers never see half a file
        np.savez(partial, mu=stats.mu, sigma=stats.sigma, features=stats.features, extractor=classifier.name,
                 data=dataset.name, split=split, data_digest=digest)
        os.replace(partial, path)
    return stats


def default_cache_dir(classifier_dir: str) -> str:
    return os.path.join(classifier_dir, REFERENCE_CACHE)


# ----------------------------------------------------------------------------- the metrics
def generative_metrics(images, labels, classifier: classifier_lib.Classifier, reference: ReferenceStats, *,
                       key: jax.Array, kid_subsets: int = 100, kid_subset_size: int = 1000,
                       batch_size: int = 500) -> dict:
    """Every sample-quality metric of `images` in `classifier`'s space, against `reference`.

    Args:
      images: [N, H, W, C] uint8 generated images (float [0, 1] is accepted), N >= 10.
      labels: [N] int classes the samples were asked for (conditional models) or None; when given,
        label_accuracy is the fraction the classifier assigns to the requested class.
      classifier: the extractor; reference: its statistics of real images (same extractor).
      key: PRNG key of KID's subsets and the Inception Score's shuffle.

    Returns:
      A flat dict: fid, kid (+ kid_std), is (+ is_std; the classifier Inception Score, at most num_classes),
      precision, recall (k=3), density, coverage (k=5), classes_covered (classes predicted for more than
      10% of a uniform share of the samples), class_kl (KL of the predicted class histogram from
      uniform), class_counts, [label_accuracy], and the provenance of all of them:
      extractor, reference ('SOURCE:SPLIT'), num_reference, num_samples.
    """
    if reference.extractor != classifier.name:
        raise UserError(f"reference statistics were computed with {reference.extractor}, not {classifier.name}")
    if len(images) < MIN_SAMPLES:
        raise UserError(f"need at least {MIN_SAMPLES} samples to score, got {len(images)}")
    if labels is not None and np.shape(labels) != (len(images),):
        raise UserError(f"labels must be [{len(images)}], got shape {np.shape(labels)}")
    features, probs = classifier.features_and_probs(images, batch_size=batch_size)
    kid_key, is_key = jax.random.split(key)
    kid_mean, kid_std = metrics.kid(features, reference.features, num_subsets=kid_subsets,
                                    subset_size=kid_subset_size, key=kid_key)
    is_mean, is_std = metrics.inception_score(probs, key=is_key)
    precision, recall = metrics.precision_recall(reference.features, features)
    density, coverage = metrics.density_coverage(reference.features, features)
    histogram = metrics.class_histogram(probs, min_share=COVERAGE_MIN_SHARE)
    results = {
        "fid": metrics.fid_from_stats(*metrics.feature_stats(features), reference.mu, reference.sigma),
        "kid": kid_mean, "kid_std": kid_std, "is": is_mean, "is_std": is_std,
        "precision": precision, "recall": recall, "density": density, "coverage": coverage,
        "classes_covered": histogram.num_covered, "class_kl": histogram.kl_to_uniform,
    }
    if labels is not None:
        results["label_accuracy"] = jnp.mean(jnp.argmax(probs, axis=1) == jnp.asarray(labels))
    results = {k: (int(v) if k == "classes_covered" else float(v)) for k, v in jax.device_get(results).items()}
    return {**results, "class_counts": np.asarray(histogram.counts).tolist(), "extractor": classifier.name,
            "reference": reference.name, "num_reference": reference.num_images, "num_samples": len(images)}


def describe(results: dict) -> dict:
    """Per-metric records {name: {value, [std], extractor, num_samples, reference, num_reference}} from the flat
    `generative_metrics` dict: each number travels with what it was measured with."""
    provenance = {k: results[k] for k in ("extractor", "num_samples", "reference", "num_reference")}
    out = {}
    for name in METRIC_NAMES:
        if name in results:
            std = {"std": results[_STD_OF[name]]} if name in _STD_OF else {}
            out[name] = {"value": results[name], **std, **provenance}
    return out


# ----------------------------------------------------------------------------- records
def load_samples(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) from a .npz with 'images' [N, H, W, C] uint8 (float [0, 1] is quantised)."""
    if not os.path.exists(path):
        raise UserError(f"samples file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # numpy raises several types for non-npz content
        raise UserError(f"{path} is not a .npz file ({type(e).__name__}); write samples with "
                        f"`python -m gen_jax.sample`") from None
    if "images" not in arrays:
        raise UserError(f"{path} has no 'images' array (it has: {', '.join(arrays) or 'nothing'})")
    images, labels = arrays["images"], arrays.get("labels")
    if images.ndim not in (3, 4):
        raise UserError(f"images in {path} must be [N, H, W, C] (or [N, H, W] grey), got shape {images.shape}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 1:
            raise UserError(f"images in {path} must be uint8 0..255 or float in [0, 1], got {images.dtype} "
                            f"in [{images.min()}, {images.max()}]")
        images = quantize(images)
    if labels is not None and labels.shape != (len(images),):
        raise UserError(f"labels in {path} must be [{len(images)}], got shape {labels.shape}")
    return images, labels


def score(images, labels, classifier_dir: str, dataset, *, split: str = "test", num_reference: int = 0,
          seed: int = 0, cache_dir: str | None = None, source: str = "") -> dict:
    """Loads the classifier, gets (cached) reference statistics and returns the eval.json record."""
    classifier = classifier_lib.load(classifier_dir)
    if tuple(dataset.image_shape) != classifier.image_shape:
        raise UserError(f"classifier {classifier_dir} takes {classifier.image_shape} images, the reference data "
                        f"{dataset.name} has {tuple(dataset.image_shape)}")
    images = classifier_lib.check_images(images, classifier.image_shape, "samples")
    reference = reference_stats(classifier, dataset, split=split, num_images=num_reference,
                                cache_dir=cache_dir or default_cache_dir(classifier_dir))
    results = generative_metrics(images, labels, classifier, reference, key=jax.random.key(seed))
    return {"samples": source, "extractor": classifier.name, "classifier_dir": os.path.abspath(classifier_dir),
            "classifier_test_accuracy": classifier.spec.get("test_accuracy"), "num_samples": len(images),
            "reference": {"data": dataset.name, "split": split, "num_images": reference.num_images},
            "metrics": describe(results), "class_counts": results["class_counts"], "seed": seed}


def classification_accuracy_score(images, labels, dataset, *, with_real: bool = True, **train_options) -> dict:
    """The classification accuracy score (Ravuri & Vinyals 2019): a digit classifier trained only on generated
    `images` [N, H, W, C] (uint8 or [0, 1]) with the `labels` they were drawn for, tested on `dataset`'s real
    test split; with_real, beside the same classifier trained the same way on the real training split.

    Synthetic data used as training data (the seed's "data augmentation" application): close to the real
    accuracy only when the samples are right, diverse and of the asked class. train_options go to
    `domain_classifier.train` (arch, options, epochs, batch_size, learning_rate, seed).
    """
    if labels is None:
        raise UserError("the classification accuracy score needs a conditional model (samples with labels)")
    images = np.asarray(images)
    images = images / np.float32(255) if images.dtype == np.uint8 else images.astype(np.float32)
    synthetic = dataclasses.replace(dataset, name=f"samples of {dataset.name}", train_images=images,
                                    train_labels=np.asarray(labels, np.int32))

    def accuracy(ds) -> float:
        return classifier_lib.train(ds, progress=False, **train_options).spec["test_accuracy"]

    result = {"cas": accuracy(synthetic), "num_samples": len(images)}
    if with_real:
        result["real_accuracy"] = accuracy(dataset)
    return result


def write_record(out: str, record: dict) -> None:
    """Stores `record` under 'sample_metrics' in the JSON file `out`, keeping its other keys (a run's
    eval.json keeps the training evaluation)."""
    existing = {}
    if os.path.exists(out):
        try:
            with open(out) as f:
                existing = json.load(f)
        except (OSError, json.JSONDecodeError):
            existing = {}
    existing = existing if isinstance(existing, dict) else {}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    files.write_json(out, {**existing, "sample_metrics": record})
