"""Data sources: every source loads into a `Dataset` of float32 NHWC images in [0, 1] plus int32 labels.

Sources (`load(source)`):
  digits        scikit-learn's bundled 8x8 digits (1797 images), fixed split: 1500 train / 297 test.
  idx:DIR       MNIST-format IDX files (raw or .gz), e.g. ../shared/data/mnist.
  folder:DIR    PNG/JPEG images, class labels from subfolder names (DIR/train and DIR/test if present).
  tfds:NAME     a TensorFlow Datasets data set already prepared in array_record format (no TensorFlow needed).
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.datasets import load_digits

from gen_jax.errors import DataError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set held in memory: images float32 [N, H, W, C] in [0, 1], labels int32 [N]."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


def load(source: str, *, tfds_data_dir: str | None = None) -> Dataset:
    """Loads a data set named by a source string ('digits', 'idx:DIR', 'folder:DIR', 'tfds:NAME')."""
    kind, _, arg = source.partition(":")
    if kind == "digits" and not arg:
        return _load_digits()
    if kind == "idx" and arg:
        return _load_idx(arg)
    if kind == "folder" and arg:
        return _load_folder(arg)
    if kind == "tfds" and arg:
        return _load_tfds(arg, data_dir=tfds_data_dir)
    raise DataError(
        f"unknown data source {source!r}: use 'digits', 'idx:DIR', 'folder:DIR' or 'tfds:NAME'")


def from_config(data_config) -> Dataset:
    """The data set a config's `data` section names, its training split without the classes listed in
    `exclude_labels` (e.g. the held-out class of an anomaly detector); the test split keeps every class."""
    dataset = load(data_config.source, tfds_data_dir=data_config.get("tfds_data_dir") or None)
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
                               train_images=dataset.train_images[keep], train_labels=dataset.train_labels[keep])


def _make_dataset(name, train, test, num_classes=None) -> Dataset:
    (xtr, ytr), (xte, yte) = train, test
    if len(xtr) == 0 or len(xte) == 0:
        raise DataError(f"data set {name!r} has an empty train or test split")
    labels = np.concatenate([ytr, yte])
    return Dataset(name, xtr.astype(np.float32), ytr.astype(np.int32), xte.astype(np.float32),
                   yte.astype(np.int32), int(num_classes or labels.max() + 1))


def _load_digits() -> Dataset:
    digits = load_digits()
    images = (digits.images / 16.0)[..., None]  # 0..16 ink levels -> [0, 1]
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


def _read_image_folder(directory: str, classes: Sequence[str]):
    images, labels = [], []
    for label, cls in enumerate(classes):
        cls_dir = os.path.join(directory, cls)
        for name in sorted(os.listdir(cls_dir)):
            if not name.lower().endswith(_IMAGE_SUFFIXES):
                continue
            path = os.path.join(cls_dir, name)
            try:
                with Image.open(path) as im:
                    im.load()
                    images.append(_unit_array(im))
            except (UnidentifiedImageError, OSError, ValueError) as e:
                raise DataError(f"unreadable image {path}: {e}") from None
            labels.append(label)
    return images, labels


def _unit_array(im) -> np.ndarray:
    """A PIL image as float32 [H, W, 1] (grayscale) or [H, W, 3] in [0, 1]; 16-bit grayscale keeps its range
    (divided by 65535, not clipped to 255)."""
    if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit PNGs open as I;16 (or I in older Pillow)
        return (np.asarray(im, np.float64) / 65535.0).clip(0, 1).astype(np.float32)[..., None]
    if im.mode == "F":
        return np.asarray(im, np.float32).clip(0, 1)[..., None]
    if im.mode == "L":
        return np.asarray(im, np.uint8)[..., None] / np.float32(255)
    return np.asarray(im.convert("RGB"), np.uint8) / np.float32(255)


def _stack_images(images, directory) -> np.ndarray:
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        raise DataError(f"images in {directory} have mixed sizes {sorted(sizes)[:4]} (height, width): resize "
                        f"them to one size")
    if any(im.shape[-1] == 3 for im in images):  # grayscale images join colour ones as gray RGB
        images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]
    return np.stack(images)


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
    per_root = [_read_image_folder(root, classes) for root in roots]
    if any(not images for images, _ in per_root):
        raise DataError(f"image folder {directory} contains no PNG or JPEG images")
    all_images = _stack_images([im for images, _ in per_root for im in images], directory)
    all_labels = np.asarray([label for _, labels in per_root for label in labels])
    if len(roots) == 2:
        n_train = len(per_root[0][0])
        train, test = np.arange(n_train), np.arange(n_train, len(all_images))
    else:  # hold out a fixed 10% (at least one image)
        order = np.random.default_rng(0).permutation(len(all_images))
        n_test = max(1, len(order) // 10)
        train, test = order[n_test:], order[:n_test]
    return _make_dataset(f"folder:{directory}", (all_images[train], all_labels[train]),
                         (all_images[test], all_labels[test]), num_classes=len(classes))


def tfds_split(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 NHWC in [0, 1], int labels, 0 where the set has none) of one split of a tfds data set
    prepared in array_record format, decoded once."""
    import tensorflow_datasets as tfds  # imported here: heavy, and only tfds sources need it
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # tfds raises many types for "not found / not prepared"
        raise DataError(
            f"tfds data set {name!r} (split {split}) is not available: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''} -- prepare it with "
            f"`tfds build {name} --file_format=array_record` on a machine with internet") from None
    examples = [source[i] for i in range(len(source))]
    sizes = sorted({np.shape(ex["image"]) for ex in examples})
    if len(sizes) > 1:
        raise DataError(f"tfds data set {name!r} (split {split}) has images of several sizes {sizes[:4]}: "
                        f"resize them to one size")
    images = np.stack([np.asarray(ex["image"]) for ex in examples])
    labels = np.asarray([int(ex.get("label", 0)) for ex in examples])
    return (images[..., None] if images.ndim == 3 else images) / np.float32(255), labels


def _load_tfds(name: str, data_dir: str | None) -> Dataset:
    return _make_dataset(f"tfds:{name}", *(tfds_split(name, split, data_dir) for split in ("train", "test")))
