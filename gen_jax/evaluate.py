"""Sample quality in a domain classifier's feature space: the driver, cached reference statistics, and the hooks
the train loop calls to score samples during training and keep the best checkpoint.

    python -m gen_jax.evaluate --workdir=RUN [--classifier=DIR] [--num=N] [--checkpoint=latest|best]
    python -m gen_jax.evaluate --samples=FILE.npz --data=SOURCE --classifier=DIR

Generated images are quantised to uint8 first (as a saved PNG would be), and so are the reference images.
Every number is reported with its extractor ("lenet:HASH", `gen_jax.classifier`), the sample count and the
reference split it is compared with. The metrics themselves are `gen_jax.metrics`.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import classifier as classifier_lib
from gen_jax import metrics
from gen_jax.errors import ConfigError, UserError

REFERENCE_CACHE = "reference_stats"  # under the classifier's folder unless another cache_dir is given
MIN_SAMPLES = 10  # the Inception Score's 10 splits need one sample each
COVERAGE_MIN_SHARE = 0.1  # a class is covered with > 10% of a uniform share of the samples (not by stray errors)
_STD_OF = {"kid": "kid_std", "is": "is_std"}
METRIC_NAMES = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "classes_covered", "class_kl",
                "label_accuracy")


def quantize(images) -> np.ndarray:
    """[0, 1] float images -> uint8 0..255 (round to nearest, clipped), as `gen_jax.sample` writes them."""
    return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


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


# ----------------------------------------------------------------------------- training hooks
def sample_scorer(config, dataset, task) -> Callable | None:
    """The loop's hook: score(state, key) -> `generative_metrics` of `task.sample`'s samples, or None when
    config.eval.classifier_dir is empty.

    Scores config.eval.num_samples samples (0: as many as test images) against the test split; the
    classifier and the reference statistics are loaded once, here.
    """
    directory = config.eval.get("classifier_dir", "")
    if not directory:
        return None
    if task.sample is None:
        raise ConfigError(f"eval.classifier_dir is set, but task {config.task!r} cannot sample: unset it")
    classifier = classifier_lib.load(directory)
    if classifier.image_shape != tuple(dataset.image_shape):
        raise ConfigError(f"eval.classifier_dir {directory} takes {classifier.image_shape} images, "
                          f"the data {dataset.name} has {tuple(dataset.image_shape)}")
    reference = reference_stats(classifier, dataset, split="test", cache_dir=default_cache_dir(directory))
    num = config.eval.get("num_samples", 0) or len(dataset.test_images)

    def score(state, key) -> dict:
        sample_key, metric_key = jax.random.split(key)
        images, labels = task.sample(state, sample_key, num)
        return generative_metrics(quantize(images), labels, classifier, reference, key=metric_key)

    return score


class BestCheckpoint:
    """Keeps the checkpoint with the best value of one eval metric in WORKDIR/best (one step) and its results
    in WORKDIR/best.json; survives resumes (the previous best is read back from best.json)."""

    def __init__(self, workdir: str, metric: str, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ConfigError(f"eval.best_mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.mode = metric, mode
        self.directory = os.path.join(workdir, "best")
        self.record_path = os.path.join(workdir, "best.json")
        self.value = None
        if os.path.exists(self.record_path):
            with open(self.record_path) as f:
                record = json.load(f)
            if record.get("metric") == metric and record.get("mode") == mode:
                self.value = record["value"]

    def _better(self, value: float) -> bool:
        if self.value is None:
            return True
        return value < self.value if self.mode == "min" else value > self.value

    def update(self, step: int, state, results: dict) -> bool:
        """Saves `state` as the best if results[metric] beats the best so far; returns whether it did."""
        from gen_jax.checkpoint import Checkpointer
        if not isinstance(results.get(self.metric), (int, float)):
            numeric = sorted(k for k, v in results.items() if isinstance(v, (int, float)))
            raise ConfigError(f"eval.best_metric {self.metric!r} is not an eval result; available: "
                              f"{', '.join(numeric)}")
        value = float(results[self.metric])
        if not math.isfinite(value) or not self._better(value):
            return False
        shutil.rmtree(self.directory, ignore_errors=True)  # one step only, even if a resume went back in steps
        checkpointer = Checkpointer(self.directory, keep=1)
        checkpointer.save(step, state)
        checkpointer.close()
        self.value = value
        with open(self.record_path, "w") as f:
            json.dump({"step": step, "metric": self.metric, "mode": self.mode, "value": value,
                       "results": results}, f, indent=2)
        return True


def best_checkpoint(config, workdir: str) -> BestCheckpoint | None:
    """A `BestCheckpoint` for config.eval.best_metric / best_mode, or None when best_metric is empty."""
    metric = config.eval.get("best_metric", "")
    return BestCheckpoint(workdir, metric, config.eval.get("best_mode", "min")) if metric else None


# ----------------------------------------------------------------------------- drivers
def _restore_run(workdir: str, checkpoint: str = "latest"):
    """(config, dataset, task, state, step) of a run's latest or best checkpoint."""
    from gen_jax import sample
    from gen_jax.checkpoint import Checkpointer
    config, dataset, task, state, step = sample.load_run(workdir)
    if checkpoint == "best":
        best = Checkpointer(os.path.join(workdir, "best"), keep=1)
        step = best.latest_step()
        if step is None:
            raise UserError(f"{workdir} has no best checkpoint (train with --config.eval.best_metric=fid)")
        state = best.restore(state, step)
        best.close()
    elif checkpoint != "latest":
        raise UserError(f"--checkpoint must be 'latest' or 'best', got {checkpoint!r}")
    if task.sample is None:
        raise UserError(f"task {config.task!r} of {workdir} cannot sample")
    return config, dataset, task, state, step


def sample_images(workdir: str, num: int, key: jax.Array, *, checkpoint: str = "latest"):
    """`num` samples of a trained run (its task's `sample`, GANs with EMA weights), quantised to uint8.

    Returns (images uint8 [num, H, W, C], labels int32 [num] for conditional models, else None).
    """
    _, _, task, state, _ = _restore_run(workdir, checkpoint)
    images, labels = task.sample(state, key, num)
    return quantize(images), None if labels is None else np.asarray(labels, np.int32)


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
    with open(out, "w") as f:
        json.dump({**existing, "sample_metrics": record}, f, indent=2)


def run(args) -> tuple[dict, str]:
    """The command line's work: (record, output path)."""
    from gen_jax import data
    if bool(args.workdir) == bool(args.samples):
        raise UserError("pass either --workdir=RUN (sample a trained run) or --samples=FILE.npz --data=SOURCE")
    if args.samples:
        if not args.data:
            raise UserError("--samples needs --data=SOURCE (the real images to compare with)")
        if not args.classifier:
            raise UserError("--samples needs --classifier=DIR (train one with python -m gen_jax.classifier)")
        images, labels = load_samples(args.samples)
        dataset = data.load(args.data)
        record = score(images, labels, args.classifier, dataset, split=args.split, num_reference=args.num_reference,
                       seed=args.seed, cache_dir=args.cache_dir, source=os.path.abspath(args.samples))
        return record, args.out or os.path.join(os.path.dirname(os.path.abspath(args.samples)), "eval.json")
    config, dataset, task, state, step = _restore_run(args.workdir, args.checkpoint)
    if args.data and args.data != config.data.source:
        dataset = data.load(args.data)
    classifier_dir = args.classifier or config.eval.get("classifier_dir", "")
    if not classifier_dir:
        raise UserError("no classifier: pass --classifier=DIR (train one with python -m gen_jax.classifier "
                        f"--data={config.data.source} --workdir=DIR)")
    num = args.num or len(dataset.test_images)
    images, labels = task.sample(state, jax.random.fold_in(jax.random.key(args.seed), 1), num)
    record = score(quantize(images), labels, classifier_dir, dataset, split=args.split,
                   num_reference=args.num_reference, seed=args.seed, cache_dir=args.cache_dir,
                   source=f"{os.path.abspath(args.workdir)} ({args.checkpoint} checkpoint, step {step})")
    record["step"] = step
    return record, args.out or os.path.join(args.workdir, "eval.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="", help="a training run to sample (its latest or best checkpoint)")
    parser.add_argument("--samples", default="", help=".npz with 'images' uint8 [N, H, W, C] (and 'labels')")
    parser.add_argument("--data", default="", help="reference data source (default with --workdir: the run's)")
    parser.add_argument("--classifier", default="", help="a gen_jax.classifier folder (default: the run's "
                                                         "eval.classifier_dir)")
    parser.add_argument("--num", type=int, default=0, help="samples drawn with --workdir (0: as many as test images)")
    parser.add_argument("--checkpoint", default="latest", choices=("latest", "best"))
    parser.add_argument("--split", default="test", choices=("train", "test"), help="reference split")
    parser.add_argument("--num_reference", type=int, default=0, help="first N reference images (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", default="", help="reference statistics cache (default: CLASSIFIER/"
                                                        f"{REFERENCE_CACHE})")
    parser.add_argument("--out", default="", help="JSON file to write (default: eval.json in the run's folder or "
                                                  "next to the samples); other keys in it are kept")
    args = parser.parse_args(argv)
    try:
        record, out = run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_record(out, record)
    ref = record["reference"]
    print(f"{record['num_samples']} samples vs {ref['data']}:{ref['split']} ({ref['num_images']} images), "
          f"extractor {record['extractor']}")
    for name, entry in record["metrics"].items():
        std = f" +- {entry['std']:.4g}" if "std" in entry else ""
        print(f"  {name:16s} {entry['value']:.5g}{std}")
    print(f"  class_counts     {record['class_counts']}\n-> {out} (sample_metrics)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
