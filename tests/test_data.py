"""The data layer: every source, deterministic batching, and one clear error per kind of bad input."""
import gzip
import os

import numpy as np
import pytest
from PIL import Image

from gen_jax import data
from gen_jax.errors import DataError

MNIST_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


def _check_dataset(ds, shape, num_classes):
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert images.dtype == np.float32 and labels.dtype == np.int32
        assert images.shape[1:] == shape and len(images) == len(labels)
        assert 0.0 <= images.min() and images.max() <= 1.0
    assert ds.num_classes == num_classes


def test_digits_fixed_split():
    ds = data.load("digits")
    _check_dataset(ds, (8, 8, 1), 10)
    assert (len(ds.train_images), len(ds.test_images)) == (1500, 297)
    from sklearn.datasets import load_digits  # the documented split: a default_rng(0) permutation, last 297 test
    digits, order = load_digits(), np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(ds.test_images[..., 0], digits.images[order[1500:]] / 16.0)
    np.testing.assert_array_equal(ds.train_labels, digits.target[order[:1500]])
    assert ds.train_images.max() == 1.0  # 16 ink levels scaled to [0, 1]


def _write_idx(path, array, magic_dims):
    header = bytes([0, 0, 8, magic_dims]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_raw_and_gz(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (12, 5, 4)), rng.integers(0, 256, (3, 5, 4))
    _write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), train, 3)
    _write_idx(str(tmp_path / "train-labels-idx1-ubyte"), np.arange(12) % 3, 1)
    _write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), test, 3)
    _write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.arange(3), 1)
    ds = data.load(f"idx:{tmp_path}")
    _check_dataset(ds, (5, 4, 1), 3)
    np.testing.assert_allclose(ds.train_images[..., 0] * 255, train, atol=1e-4)


def test_idx_truncated_file_is_a_clear_error(tmp_path):
    path = str(tmp_path / "x-idx1-ubyte")
    _write_idx(path, np.arange(10), 1)
    with open(path, "r+b") as f:
        f.truncate(12)
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(path)


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="../shared/data/mnist not present beside the checkout")
def test_idx_real_mnist():
    ds = data.load(f"idx:{MNIST_DIR}")
    _check_dataset(ds, (28, 28, 1), 10)
    assert (len(ds.train_images), len(ds.test_images)) == (60000, 10000)
    assert abs(ds.train_images.mean() - 0.130660) < 1e-5  # the published MNIST mean
    assert list(ds.train_labels[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def _write_png_folder(root, sizes=((6, 6),), per_class=3, mode="L"):
    for c, name in enumerate(("cat", "dog")):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            size = sizes[i % len(sizes)]
            pixels = np.full((size[1], size[0]) + (() if mode == "L" else (3,)), 40 * c + i, np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")


def test_folder_source_labels_from_subfolders(tmp_path):
    _write_png_folder(tmp_path, per_class=10)
    ds = data.load(f"folder:{tmp_path}")
    _check_dataset(ds, (6, 6, 1), 2)
    assert len(ds.train_images) + len(ds.test_images) == 20 and len(ds.test_images) == 2
    labels = np.concatenate([ds.train_labels, ds.test_labels])
    assert sorted(np.bincount(labels)) == [10, 10]


def test_folder_source_rgb_with_train_test_split(tmp_path):
    _write_png_folder(tmp_path / "train", mode="RGB")
    _write_png_folder(tmp_path / "test", mode="RGB", per_class=1)
    ds = data.load(f"folder:{tmp_path}")
    _check_dataset(ds, (6, 6, 3), 2)
    assert (len(ds.train_images), len(ds.test_images)) == (6, 2)


def test_tfds_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=16):
        ds = data.load("tfds:mnist")
    _check_dataset(ds, (28, 28, 1), 10)
    assert len(ds.train_images) == 16


@pytest.mark.parametrize("make_source, message", [
    (lambda p: "mnist", "unknown data source"),
    (lambda p: "tfds:", "unknown data source"),
    (lambda p: f"folder:{p}/absent", "does not exist"),
    (lambda p: f"idx:{p}/absent", "does not exist"),
    (lambda p: f"idx:{p}", "has no train-images"),
    (lambda p: (os.makedirs(p / "a"), f"folder:{p}")[1], "no PNG or JPEG"),
    (lambda p: f"folder:{p}", "no class subfolders"),
    (lambda p: (_write_png_folder(p, sizes=((6, 6), (7, 5))), f"folder:{p}")[1], "mixed sizes"),
    (lambda p: (os.makedirs(p / "a"), open(p / "a" / "x.png", "wb").write(b"not a png"), f"folder:{p}")[2],
     "unreadable image"),
])
def test_bad_sources_raise_one_clear_line(tmp_path, make_source, message):
    with pytest.raises(DataError, match=message) as info:
        data.load(make_source(tmp_path))
    assert "\n" not in str(info.value)


def test_missing_tfds_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not available.*tfds build"):
        data.load("tfds:mnist", tfds_data_dir=str(tmp_path))


@pytest.mark.parametrize("num_examples, batch, devices, message", [
    (100, 101, 1, "larger than the training set"),
    (100, 30, 4, "not divisible by the 4 devices"),
    (100, 0, 1, "must be positive"),
])
def test_bad_batching(num_examples, batch, devices, message):
    with pytest.raises(DataError, match=message):
        data.check_batching(num_examples, batch, devices)
    assert data.check_batching(100, 32, 4) == 8


def test_batch_indices_are_epoch_permutations_and_pure():
    idx = data.batch_indices(3, 0, 10, num_examples=50, batch_size=10)
    assert idx.shape == (10, 10)
    for epoch in range(2):  # 5 steps per epoch, each epoch a permutation
        assert sorted(idx[5 * epoch: 5 * epoch + 5].ravel()) == list(range(50))
    assert not np.array_equal(idx[:5], idx[5:])
    np.testing.assert_array_equal(idx[4:9], data.batch_indices(3, 4, 5, num_examples=50, batch_size=10))
    assert not np.array_equal(idx, data.batch_indices(4, 0, 10, num_examples=50, batch_size=10))
    # the last partial batch is dropped: 53 examples -> 5 batches of 10 per epoch
    assert len(np.unique(data.batch_indices(0, 0, 5, num_examples=53, batch_size=10))) == 50


def test_preprocess_ranges_and_binarisation():
    import jax
    x = np.linspace(0, 1, 11, dtype=np.float32).reshape(1, 11, 1, 1)
    np.testing.assert_allclose(data.preprocess(x, value_range=data.SIGNED), x * 2 - 1)
    np.testing.assert_allclose(data.to_unit_range(data.preprocess(x, value_range=data.SIGNED), data.SIGNED), x, atol=1e-6)
    u = jax.random.uniform(jax.random.key(0), (2000, 11, 1, 1))
    binary = np.asarray(data.preprocess(np.broadcast_to(x, u.shape), uniform=u))
    assert set(np.unique(binary)) <= {0.0, 1.0}
    np.testing.assert_allclose(binary.mean(axis=0).ravel(), x.ravel(), atol=0.05)  # E[x_bin] = p
