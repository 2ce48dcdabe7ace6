"""Data sources: every source loads into a `Dataset` of float32 NHWC images in [0, 1] plus int32 labels.

Sources (`load(source)`):
  digits        scikit-learn's bundled 8x8 digits (1797 images), fixed split: 1500 train / 297 test.
  idx:DIR       MNIST-format IDX files (raw or .gz), e.g. ../shared/data/mnist.
  folder:DIR    PNG/JPEG images, class labels from subfolder names (DIR/train and DIR/test if present).
  tfds:NAME     a TensorFlow Datasets data set already prepared in array_record format (no TensorFlow needed).

`load(source, lazy=True)` keeps the training images of folder: and tfds: sources undecoded (`LazyImages`), for
training sets larger than memory; the same rows in the same order as the eager load.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from typing import Sequence

import numpy as np
from sklearn.datasets import load_digits

from gen_jax.data.lazy import LazyImages, image_files, tfds_records
from gen_jax.errors import DataError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set: images float32 [N, H, W, C] in [0, 1], labels int32 [N]; the training images may be
    `LazyImages` (decoded on demand), everything else is in memory."""

    name: str
    train_images: np.ndarray | LazyImages
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


def load(source: str, *, tfds_data_dir: str | None = None, lazy: bool = False) -> Dataset:
    """Loads a data set named by a source string ('digits', 'idx:DIR', 'folder:DIR', 'tfds:NAME').

    lazy: leave the training images of folder: and tfds: sources undecoded (`LazyImages`; digits and idx: are
    arrays either way), so that a streaming pipeline reads only each step's rows.
    """
    kind, _, arg = source.partition(":")
    if kind == "digits" and not arg:
        dataset = _load_digits()
    elif kind == "idx" and arg:
        dataset = _load_idx(arg)
    elif kind == "folder" and arg:
        dataset = _load_folder(arg)
    elif kind == "tfds" and arg:
        dataset = _load_tfds(arg, data_dir=tfds_data_dir)
    else:
        raise DataError(
            f"unknown data source {source!r}: use 'digits', 'idx:DIR', 'folder:DIR' or 'tfds:NAME'")
    return dataset if lazy else dataclasses.replace(dataset, train_images=np.asarray(dataset.train_images))


def from_config(data_config, *, lazy: bool = False) -> Dataset:
    """The data set a config's `data` section names, its training split without the classes listed in
    `exclude_labels` (e.g. the held-out class of an anomaly detector); the test split keeps every class.
    lazy: as in `load`."""
    dataset = load(data_config.source, tfds_data_dir=data_config.get("tfds_data_dir") or None, lazy=lazy)
    return without_labels(dataset, tuple(data_config.get("exclude_labels", ())))


def without_labels(dataset: Dataset, labels: Sequence[int]) -> Dataset:
    """`dataset` with the training images of classes `labels` removed (test split unchanged)."""
    if not labels:
        return dataset
    unknown = sorted(set(labels) - set(range(dataset.num_classes)))
    if unknown:
        raise DataError(f"exclude_labels {unknown} are not classes of {dataset.name} "
                        f"(it has classes 0..{dataset.num_classes - 1})")
    keep = ~np.isin(dataset.train_labels, np.asarray(labels))
    if not keep.any():
        raise DataError(f"exclude_labels {sorted(labels)} leave no training images in {dataset.name}")
    return dataclasses.replace(dataset, name=f"{dataset.name} without {','.join(map(str, sorted(labels)))}",
                               train_images=dataset.train_images.take(np.flatnonzero(keep), axis=0),
                               train_labels=dataset.train_labels[keep])


def _make_dataset(name, train, test, num_classes=None) -> Dataset:
    (xtr, ytr), (xte, yte) = train, test
    if len(xtr) == 0 or len(xte) == 0:
        raise DataError(f"data set {name!r} has an empty train or test split")
    labels = np.concatenate([ytr, yte])
    return Dataset(name, xtr, ytr.astype(np.int32), xte, yte.astype(np.int32), int(num_classes or labels.max() + 1))


def _load_digits() -> Dataset:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # 0..16 ink levels -> [0, 1]
    order = np.random.default_rng(0).permutation(len(images))  # fixed split, independent of the run's seed
    train, test = order[:1500], order[1500:]
    return _make_dataset("digits", (images[train], digits.target[train]),
                         (images[test], digits.target[test]), num_classes=10)


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (raw or gzip): unsigned-byte arrays such as MNIST images [N, 28, 28] or labels [N]."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # EOFError: a .gz cut short
        raise DataError(f"cannot read IDX file {path} (truncated or not gzip?): {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, found {data.size} bytes")
    return data.reshape(dims)


def _find_idx(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise DataError(f"IDX folder {directory} has no {stem}[.gz]")


def _load_idx(directory: str) -> Dataset:
    if not os.path.isdir(directory):
        raise DataError(f"IDX folder {directory} does not exist")
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise DataError(f"{directory}: {len(images)} {prefix} images but {len(labels)} labels")
        splits.append((images[..., None] / np.float32(255), labels))
    return _make_dataset(f"idx:{directory}", *splits)


def _image_paths(directory: str, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    """The PNG/JPEG files under directory/CLASS/ (classes in order, files sorted by name) and their labels."""
    paths, labels = [], []
    for label, cls in enumerate(classes):
        names = sorted(n for n in os.listdir(os.path.join(directory, cls)) if n.lower().endswith(_IMAGE_SUFFIXES))
        paths += [os.path.join(directory, cls, name) for name in names]
        labels += [label] * len(names)
    return paths, labels


def _load_folder(directory: str) -> Dataset:
    if not os.path.isdir(directory):
        raise DataError(f"image folder {directory} does not exist")
    split_dirs = [os.path.join(directory, s) for s in ("train", "test")]
    roots = split_dirs if all(os.path.isdir(d) for d in split_dirs) else [directory]
    class_lists = [sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))) for root in roots]
    classes = class_lists[0]
    if not classes:
        raise DataError(f"image folder {roots[0]} has no class subfolders (expected {roots[0]}/CLASS/*.png)")
    if len(roots) == 2 and class_lists[1] != classes:
        missing, extra = sorted(set(classes) - set(class_lists[1])), sorted(set(class_lists[1]) - set(classes))
        raise DataError(f"{roots[1]} and {roots[0]} must have the same class folders: "
                        + "; ".join(filter(None, [missing and f"test lacks {', '.join(missing)}",
                                                  extra and f"test has extra {', '.join(extra)}"])))
    per_root = [_image_paths(root, classes) for root in roots]
    if any(not paths for paths, _ in per_root):
        raise DataError(f"image folder {directory} contains no PNG or JPEG images")
    all_images = image_files([p for paths, _ in per_root for p in paths], where=directory)
    all_labels = np.asarray([label for _, labels in per_root for label in labels])
    if len(roots) == 2:
        n_train = len(per_root[0][0])
        train, test = np.arange(n_train), np.arange(n_train, len(all_images))
    else:  # hold out a fixed 10% (at least one image)
        order = np.random.default_rng(0).permutation(len(all_images))
        n_test = max(1, len(order) // 10)
        train, test = order[n_test:], order[:n_test]
    return _make_dataset(f"folder:{directory}", (all_images.take(train), all_labels[train]),
                         (np.asarray(all_images.take(test)), all_labels[test]), num_classes=len(classes))


def tfds_split(name: str, split: str, data_dir: str | None = None, *, lazy: bool = False):
    """(images float32 NHWC in [0, 1], int labels, 0 where the set has none) of one split of a tfds data set
    prepared in array_record format; lazy: the images as `LazyImages`, else decoded into an array."""
    import tensorflow_datasets as tfds  # imported here: heavy, and only tfds sources need it
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # tfds raises many types for "not found / not prepared"
        raise DataError(
            f"tfds data set {name!r} (split {split}) is not available: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''} -- prepare it with "
            f"`tfds build {name} --file_format=array_record` on a machine with internet") from None
    images, labels = tfds_records(source, where=f"tfds data set {name!r} (split {split})")
    return (images if lazy else np.asarray(images)), labels


def _tfds_num_classes(name: str, data_dir: str | None) -> int | None:
    """The class count of a tfds set's 'label' feature, from its metadata (a class absent from both splits still
    counts); None when the set has no ClassLabel 'label' (then the labels seen decide)."""
    import tensorflow_datasets as tfds
    try:
        return int(tfds.builder(name, data_dir=data_dir).info.features["label"].num_classes)
    except (KeyError, AttributeError, TypeError, ValueError):
        return None


def _load_tfds(name: str, data_dir: str | None) -> Dataset:
    return _make_dataset(f"tfds:{name}", tfds_split(name, "train", data_dir, lazy=True),
                         tfds_split(name, "test", data_dir), num_classes=_tfds_num_classes(name, data_dir))
