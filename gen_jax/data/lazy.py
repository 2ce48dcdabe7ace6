"""Image collections that decode on demand: a training set larger than memory reads only the rows a step needs.

A `LazyImages` stands for a float32 NHWC array in [0, 1] (shape, dtype, len, nbytes, indexing, `take`); its rows
come from a reader, one record at a time: image files (`image_files`) or a tfds data source (`tfds_records`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from gen_jax.errors import DataError


@dataclasses.dataclass(frozen=True, eq=False)
class LazyImages:
    """float32 images [N, H, W, C] in [0, 1] decoded when indexed: row i is `read(rows[i])`, a [H, W, C] array.

    Indexing with an int gives one image, with a slice or an index array a stacked numpy array; `take` gives a
    view on a subset of rows without decoding; `np.asarray` decodes every row.
    """

    read: Callable[[int], np.ndarray] = dataclasses.field(repr=False)
    rows: np.ndarray
    image_shape: tuple[int, int, int]

    dtype = np.dtype(np.float32)
    ndim = 4

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), *self.image_shape)

    @property
    def nbytes(self) -> int:
        """The bytes these images take decoded, as a float32 array."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        records = self.rows[key]
        if np.ndim(records) == 0:
            return self.read(int(records))
        out = np.empty((len(records), *self.image_shape), np.float32)
        for i, record in enumerate(records):
            out[i] = self.read(int(record))
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:].astype(dtype or np.float32, copy=False)

    def take(self, indices, axis: int = 0) -> LazyImages:
        """The rows `indices` (as `np.take(array, indices, axis=0)`), still undecoded."""
        if axis != 0:
            raise ValueError(f"LazyImages.take selects rows (axis 0), got axis={axis}")
        return dataclasses.replace(self, rows=self.rows[np.asarray(indices)])


def _is_integer(mode: str) -> bool:
    return mode == "I" or mode.startswith("I;16")  # 16-bit PNGs open as I;16 (or I in older Pillow)


def _is_gray(mode: str) -> bool:
    """Whether `_unit_array` gives an image of this PIL mode one channel (else three)."""
    return mode in ("L", "F") or _is_integer(mode)


def _unit_array(im) -> np.ndarray:
    """A PIL image as float32 [H, W, 1] (grayscale) or [H, W, 3] in [0, 1]; 16-bit grayscale keeps its range
    (divided by 65535, not clipped to 255)."""
    if _is_integer(im.mode):
        return (np.asarray(im, np.float64) / 65535.0).clip(0, 1).astype(np.float32)[..., None]
    if im.mode == "F":
        return np.asarray(im, np.float32).clip(0, 1)[..., None]
    if im.mode == "L":
        return np.asarray(im, np.uint8)[..., None] / np.float32(255)
    return np.asarray(im.convert("RGB"), np.uint8) / np.float32(255)


def _with_image(path: str, fn):
    """fn(the PIL image of file `path`); a file PIL cannot read (or decode) is a DataError naming it."""
    try:
        with Image.open(path) as im:
            return fn(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"unreadable image {path}: {e}") from None


def _header(im) -> tuple[int, int, int]:
    return im.height, im.width, 1 if _is_gray(im.mode) else 3


def _read_file(paths: Sequence[str], channels: int, record: int) -> np.ndarray:
    """Image file `paths[record]` decoded by `_unit_array`; grayscale repeated to `channels` (3 joins colour)."""
    image = _with_image(paths[record], _unit_array)
    return np.repeat(image, channels, axis=-1) if image.shape[-1] != channels else image


def image_files(paths: Sequence[str], *, where: str) -> LazyImages:
    """The image files `paths` as one collection, after reading only their headers: every image must have the
    same size (else a DataError naming `where`); grayscale ones join colour ones as gray RGB."""
    headers = [_with_image(path, _header) for path in paths]
    sizes = sorted({h[:2] for h in headers})
    if len(sizes) > 1:
        raise DataError(f"images in {where} have mixed sizes {sizes[:4]} (height, width): resize them to one size")
    channels = max(h[2] for h in headers)
    return LazyImages(functools.partial(_read_file, tuple(paths), channels), np.arange(len(paths)),
                      (*sizes[0], channels))


def _tfds_unit(image) -> np.ndarray:
    """A tfds image (uint8 [H, W] or [H, W, C]) as float32 [H, W, C] in [0, 1]."""
    image = np.asarray(image)
    return (image[..., None] if image.ndim == 2 else image) / np.float32(255)


def _read_record(source, record: int) -> np.ndarray:
    return _tfds_unit(source[record]["image"])


def tfds_records(source, *, where: str) -> tuple[LazyImages, np.ndarray]:
    """(images, int labels, 0 where the set has none) of a tfds data source (`tfds.data_source`). Labels and
    image sizes come from one pass over the records that keeps none of the images; images of several sizes or
    no records at all are a DataError naming `where`."""
    if not len(source):
        raise DataError(f"{where} has no records")
    sizes, labels = set(), np.zeros(len(source), np.int64)
    for i in range(len(source)):
        example = source[i]
        sizes.add(_tfds_unit(example["image"]).shape)
        labels[i] = int(example.get("label", 0))
    if len(sizes) > 1:
        raise DataError(f"{where} has images of several sizes {sorted(sizes)[:4]}: resize them to one size")
    return LazyImages(functools.partial(_read_record, source), np.arange(len(source)), sizes.pop()), labels
