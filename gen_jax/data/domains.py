"""Two-domain data for image-to-image translation, built offline from a data set's arrays (numpy, seeded).

Each pair splits the training images into two disjoint halves by a fixed permutation (`split_halves`): domain A
holds half 1 as it is, domain B half 2 transformed, so no digit is seen in both domains (unpaired training, as
CycleGAN's). The test split is paired: test_b[i] is test_a[i] carried to domain B, a ground truth for A -> B
(`style_pair`) or B -> A (`mnist_m_pair`, where the digit is what A holds).

    from gen_jax import data
    from gen_jax.data import domains
    pair = domains.style_pair(data.load("idx:../shared/data/mnist"), seed=0)
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from gen_jax.data import sources
from gen_jax.data.lazy import LazyImages
from gen_jax.data.sources import Dataset
from gen_jax.errors import DataError

SOURCES = ("style:SOURCE", "mnist_m:SOURCE", "folders:DIR_A,DIR_B", "tfds:cycle_gan/NAME")
PAIRED_SOURCES = ("superres:SOURCE",)


@dataclasses.dataclass(frozen=True)
class TwoDomains:
    """Unpaired training images of domains A and B and a paired test split: float32 NHWC in [0, 1].

    train_a [Na, H, W, Ca], train_b [Nb, H, W, Cb] with their int32 labels; test_a [N, H, W, Ca] and
    test_b [N, H, W, Cb] show the same images (test_labels [N]) in each domain. train_a and train_b may be
    `LazyImages` (decoded on demand, `load(..., lazy=True)`).
    """

    name: str
    train_a: np.ndarray | LazyImages
    train_a_labels: np.ndarray
    train_b: np.ndarray | LazyImages
    train_b_labels: np.ndarray
    test_a: np.ndarray
    test_b: np.ndarray
    test_labels: np.ndarray

    @property
    def shape_a(self) -> tuple[int, int, int]:
        return tuple(self.train_a.shape[1:])

    @property
    def shape_b(self) -> tuple[int, int, int]:
        return tuple(self.train_b.shape[1:])


def split_halves(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint index sets of num // 2 examples each, from a permutation seeded by `seed`."""
    perm = np.random.default_rng(seed).permutation(num)
    half = num // 2
    return perm[:half], perm[half:2 * half]


def true_style(images: np.ndarray) -> np.ndarray:
    """Domain B of `style_pair`: strokes thickened by a 3x3 grey dilation (max filter, zeros outside), then
    inverted. The exact answer for any A -> B translation; not invertible, so B -> A has none."""
    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dilated = images.copy()
    for di in range(3):
        for dj in range(3):
            np.maximum(dilated, padded[:, di:di + height, dj:dj + width], out=dilated)
    return 1.0 - dilated


def _two_domains(name: str, dataset: Dataset, to_b, *, seed: int, num_train: int | None,
                 num_test: int | None) -> TwoDomains:
    """Domain A: one half of the training images; B: `to_b(images, split)` of the other half (split 1) and of the
    test images (split 2), capped at num_train per domain and num_test."""
    idx_a, idx_b = (i[:num_train] for i in split_halves(len(dataset.train_images), seed))
    test = slice(num_test)
    return TwoDomains(name, dataset.train_images[idx_a], dataset.train_labels[idx_a],
                      to_b(dataset.train_images[idx_b], 1), dataset.train_labels[idx_b],
                      dataset.test_images[test], to_b(dataset.test_images[test], 2), dataset.test_labels[test])


def style_pair(dataset: Dataset, *, seed: int = 0, num_train: int | None = None,
               num_test: int | None = None) -> TwoDomains:
    """A: `dataset`'s training images of one half; B: `true_style` of the other half's. The test split pairs
    each test image with its `true_style`. num_train / num_test cap each domain's training and the test images."""
    return _two_domains(f"style_pair({dataset.name})", dataset, lambda images, _: true_style(images), seed=seed,
                        num_train=num_train, num_test=num_test)


@functools.lru_cache(maxsize=1)
def sample_photos() -> np.ndarray:
    """scikit-learn's two bundled photographs (china.jpg, flower.jpg), float32 [2, 427, 640, 3] in [0, 1]."""
    from sklearn.datasets import load_sample_images  # imported here: only MNIST-M needs it
    return np.stack(load_sample_images().images).astype(np.float32) / 255.0


def photo_crops(num: int, size: tuple[int, int], *, seed: int | tuple[int, ...]) -> np.ndarray:
    """`num` crops of `size` (height, width) at uniform random positions of a random `sample_photos` photo,
    float32 [num, height, width, 3] in [0, 1]."""
    photos = sample_photos()
    rng = np.random.default_rng(seed)
    (height, width), (photo_h, photo_w) = size, photos.shape[1:3]
    which = rng.integers(0, len(photos), num)
    top = rng.integers(0, photo_h - height + 1, num)
    left = rng.integers(0, photo_w - width + 1, num)
    rows = top[:, None, None] + np.arange(height)[None, :, None]
    cols = left[:, None, None] + np.arange(width)[None, None, :]
    return photos[which[:, None, None], rows, cols]


def blend(digits: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """MNIST-M's blend of grey digits [N, H, W, 1] into colour crops [N, H, W, 3]: |crop - digit| per channel
    (Ganin et al. 2016): strokes invert the photo's colours, the background is the photo."""
    return np.abs(crops - digits).astype(np.float32)


def mnist_m(digits: np.ndarray, *, seed: int | tuple[int, ...]) -> np.ndarray:
    """MNIST-M images [N, H, W, 3] of grey digits [N, H, W, 1] in [0, 1], one random photo crop per digit."""
    return blend(digits, photo_crops(len(digits), digits.shape[1:3], seed=seed))


def mnist_m_pair(dataset: Dataset, *, seed: int = 0, num_train: int | None = None,
                 num_test: int | None = None) -> TwoDomains:
    """A: `dataset`'s grey training digits of one half; B: `mnist_m` of the other half's (colour). The test
    split pairs each grey test digit with its MNIST-M version. num_train / num_test cap the sizes as in
    `style_pair`; crops are drawn from seeds (seed, 1) for training and (seed, 2) for the test split."""
    if dataset.image_shape[-1] != 1:
        raise DataError(f"MNIST-M blends grey digits; {dataset.name} has {dataset.image_shape[-1]} channels")
    return _two_domains(f"mnist_m_pair({dataset.name})", dataset,
                        lambda images, split: mnist_m(images, seed=(seed, split)), seed=seed, num_train=num_train,
                        num_test=num_test)


def _from_folders(dirs: str, lazy: bool) -> TwoDomains:
    """Two image folders (each as `folder:DIR` reads it: class subfolders, optional train/ and test/) as domains A
    and B. Their test splits are not paired: test_b is B's own test images (as many as A's, cycled)."""
    parts = [d for d in dirs.split(",") if d]
    if len(parts) != 2:
        raise DataError(f"folders: needs two folders, 'folders:DIR_A,DIR_B', got {dirs!r}")
    a, b = (sources.load(f"folder:{d}", lazy=lazy) for d in parts)
    test_b = b.test_images[np.arange(len(a.test_images)) % len(b.test_images)]
    return TwoDomains(f"folders:{dirs}", a.train_images, a.train_labels, b.train_images, b.train_labels,
                      a.test_images, test_b, a.test_labels)


def _from_tfds(name: str, lazy: bool, data_dir: str | None) -> TwoDomains:
    """A tfds translation set with splits trainA, trainB, testA, testB (the cycle_gan sets, e.g.
    cycle_gan/horse2zebra), prepared in array_record format. Test splits are unpaired, as in `_from_folders`."""
    (train_a, labels_a), (train_b, labels_b), (test_a, test_labels), (test_b, _) = (
        sources.tfds_split(name, split, data_dir, lazy=lazy and split.startswith("train"))
        for split in ("trainA", "trainB", "testA", "testB"))
    return TwoDomains(f"tfds:{name}", train_a, labels_a, train_b, labels_b, test_a,
                      test_b[np.arange(len(test_a)) % len(test_b)], test_labels)


def load(source: str, *, seed: int = 0, lazy: bool = False, tfds_data_dir: str | None = None) -> TwoDomains:
    """Two domains named by a source string: 'style:SOURCE' (`style_pair` of a one-domain source, e.g.
    style:digits), 'mnist_m:SOURCE' (`mnist_m_pair`, e.g. mnist_m:idx:../shared/data/mnist),
    'folders:DIR_A,DIR_B', or 'tfds:NAME' (a set with trainA/trainB/testA/testB splits, e.g.
    tfds:cycle_gan/horse2zebra). lazy: leave the training images of folders: and tfds: undecoded
    (`LazyImages`), as `sources.load` does; style: and mnist_m: make their domains in memory. tfds_data_dir:
    where prepared tfds sets live (None: tfds's default)."""
    kind, _, arg = source.partition(":")
    if kind == "style" and arg:
        return style_pair(sources.load(arg, tfds_data_dir=tfds_data_dir), seed=seed)
    if kind == "mnist_m" and arg:
        return mnist_m_pair(sources.load(arg, tfds_data_dir=tfds_data_dir), seed=seed)
    if kind == "folders" and arg:
        return _from_folders(arg, lazy)
    if kind == "tfds" and arg:
        return _from_tfds(arg, lazy, tfds_data_dir)
    raise DataError(f"unknown two-domain source {source!r}: use {', '.join(SOURCES)}")


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Paired translation data (pix2pix): inputs and the targets they should become, float32 NHWC in [0, 1].

    train_inputs / train_targets [N, H, W, C] row by row, test_inputs / test_targets likewise, with labels;
    test_baseline [N, H, W, C] is what a fixed method makes of each test input (bicubic upscaling for
    super-resolution), for comparison.
    """

    name: str
    train_inputs: np.ndarray
    train_targets: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_targets: np.ndarray
    test_baseline: np.ndarray
    test_labels: np.ndarray

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_inputs.shape[1:])

    @property
    def target_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_targets.shape[1:])


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downsampling by `factor` (each output pixel the mean of a factor x factor block)."""
    n, height, width, channels = images.shape
    if height % factor or width % factor:
        raise DataError(f"super-resolution by {factor} needs sides divisible by {factor}, got {height}x{width}")
    return images.reshape(n, height // factor, factor, width // factor, factor, channels).mean(axis=(2, 4))


def bicubic(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic upscaling to `size` (height, width), clipped to [0, 1]: the classical baseline."""
    shape = (images.shape[0], *size, images.shape[-1])
    return np.clip(np.asarray(jax.image.resize(images, shape, "cubic")), 0.0, 1.0).astype(np.float32)


def super_resolution(dataset: Dataset, *, factor: int = 4) -> Pairs:
    """Upscaling by `factor` as paired translation: each input is its target box-downsampled by `factor` and
    shown at full size by nearest-neighbour repetition (the network sees exactly the low-resolution pixels);
    the baseline is bicubic upscaling of the same low-resolution image."""
    def low_and_input(images):
        low = downsample(images, factor)
        return low, low.repeat(factor, axis=1).repeat(factor, axis=2)

    _, train_inputs = low_and_input(dataset.train_images)
    test_low, test_inputs = low_and_input(dataset.test_images)
    return Pairs(f"superres{factor}({dataset.name})", train_inputs, dataset.train_images, dataset.train_labels,
                 test_inputs, dataset.test_images, bicubic(test_low, dataset.image_shape[:2]),
                 dataset.test_labels)


def load_pairs(source: str, *, tfds_data_dir: str | None = None) -> Pairs:
    """Paired data named by a source string: 'superres:SOURCE' (4x super-resolution of a one-domain source,
    e.g. superres:digits, 2x2 -> 8x8, or superres:idx:../shared/data/mnist, 7x7 -> 28x28)."""
    kind, _, arg = source.partition(":")
    if kind == "superres" and arg:
        return super_resolution(sources.load(arg, tfds_data_dir=tfds_data_dir))
    raise DataError(f"unknown paired source {source!r}: use {', '.join(PAIRED_SOURCES)}")
