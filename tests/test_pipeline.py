"""Lazy image collections and the streaming pipeline: the same data and the same batches as the resident path."""
import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gen_jax import data
from gen_jax.config import base_config
from gen_jax.data import domains
from gen_jax.errors import DataError

CLASSES = ("ant", "bee", "cat")


def _write_folder(root, per_class, *, size=(5, 4), seed=0, modes=("L",)):
    """Random images, one subfolder per class, cycling through PIL `modes`; returns {path: (pixels [H, W, C]
    in [0, 1] as the test expects them decoded, label)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for label, cls in enumerate(CLASSES):
        os.makedirs(root / cls, exist_ok=True)
        for i in range(per_class):
            mode = modes[i % len(modes)]
            pixels = rng.integers(0, 256, (*size, 3) if mode == "RGB" else size, dtype=np.uint8)
            path = str(root / cls / f"{i:03d}.png")
            Image.fromarray(pixels, mode).save(path)
            written[path] = (pixels.reshape(*size, -1) / np.float32(255), label)
    return written


def _expected_folder_split(written):
    """The folder source's split, rebuilt here: files in class then name order, a fixed 10% held out by a
    permutation seeded 0; colour wins when the folder mixes gray and RGB."""
    paths = sorted(written, key=lambda p: (written[p][1], p))
    channels = max(written[p][0].shape[-1] for p in paths)
    images = np.stack([np.broadcast_to(written[p][0], (*written[p][0].shape[:2], channels)) for p in paths])
    labels = np.array([written[p][1] for p in paths])
    order = np.random.default_rng(0).permutation(len(paths))
    n_test = max(1, len(paths) // 10)
    return (images[order[n_test:]], labels[order[n_test:]]), (images[order[:n_test]], labels[order[:n_test]])


@pytest.mark.parametrize("modes", [("L",), ("L", "RGB")])
def test_lazy_folder_matches_the_files_and_the_eager_load(tmp_path, modes):
    written = _write_folder(tmp_path, per_class=7, modes=modes)
    lazy = data.load(f"folder:{tmp_path}", lazy=True)
    eager = data.load(f"folder:{tmp_path}")
    assert isinstance(lazy.train_images, data.LazyImages) and isinstance(eager.train_images, np.ndarray)
    (train_x, train_y), (test_x, test_y) = _expected_folder_split(written)
    assert lazy.train_images.shape == train_x.shape and lazy.train_images.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(lazy.train_images), train_x)
    np.testing.assert_array_equal(np.stack([lazy.train_images[i] for i in range(len(train_x))]), train_x)
    np.testing.assert_array_equal(eager.train_images, train_x)
    np.testing.assert_array_equal(lazy.train_labels, train_y)
    np.testing.assert_array_equal(lazy.test_images, test_x)
    np.testing.assert_array_equal(lazy.test_labels, test_y)
    assert lazy.num_classes == eager.num_classes == 3


def test_lazy_folder_with_train_and_test_subfolders(tmp_path):
    train = _write_folder(tmp_path / "train", per_class=3, modes=("RGB",))
    _write_folder(tmp_path / "test", per_class=1, seed=1, modes=("RGB",))
    lazy = data.load(f"folder:{tmp_path}", lazy=True)
    expected = np.stack([train[p][0] for p in sorted(train, key=lambda p: (train[p][1], p))])
    np.testing.assert_array_equal(np.asarray(lazy.train_images), expected)
    assert lazy.test_images.shape == (3, 5, 4, 3)


def test_lazy_images_index_like_the_array(tmp_path):
    _write_folder(tmp_path, per_class=4)
    images = data.load(f"folder:{tmp_path}", lazy=True).train_images
    array = np.asarray(images)
    rows = np.array([5, 0, 5, -1])
    assert len(images) == len(array) == 11 and images.shape == array.shape and images.ndim == 4
    assert images.nbytes == array.nbytes == 11 * 5 * 4 * 4
    np.testing.assert_array_equal(images[3], array[3])
    np.testing.assert_array_equal(images[rows], array[rows])
    np.testing.assert_array_equal(images[2:6], array[2:6])
    subset = images.take(rows).take(np.array([3, 1]))
    assert isinstance(subset, data.LazyImages) and subset.shape == (2, 5, 4, 1)
    np.testing.assert_array_equal(np.asarray(subset), array[[-1, 0]])


def test_lazy_tfds_matches_the_records():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        lazy = data.load("tfds:mnist", lazy=True)
        eager = data.load("tfds:mnist")
        source = tfds.data_source("mnist", split="train")
        expected = np.stack([source[i]["image"] for i in range(len(source))]) / np.float32(255)
        labels = [int(source[i]["label"]) for i in range(len(source))]
        assert isinstance(lazy.train_images, data.LazyImages) and lazy.train_images.shape == (12, 28, 28, 1)
        np.testing.assert_array_equal(np.asarray(lazy.train_images), expected)
    np.testing.assert_array_equal(eager.train_images, expected)
    np.testing.assert_array_equal(lazy.train_labels, labels)
    np.testing.assert_array_equal(lazy.test_images, eager.test_images)


def test_exclude_labels_on_lazy_data(tmp_path):
    _write_folder(tmp_path, per_class=7)
    config = base_config().data
    config.source, config.exclude_labels = f"folder:{tmp_path}", (1,)
    lazy, eager = data.from_config(config, lazy=True), data.load(f"folder:{tmp_path}")
    keep = eager.train_labels != 1
    assert isinstance(lazy.train_images, data.LazyImages) and 1 not in lazy.train_labels
    np.testing.assert_array_equal(np.asarray(lazy.train_images), eager.train_images[keep])
    np.testing.assert_array_equal(lazy.train_labels, eager.train_labels[keep])


def test_lazy_two_folder_domains(tmp_path):
    _write_folder(tmp_path / "a", per_class=4)
    _write_folder(tmp_path / "b", per_class=5, seed=1, modes=("RGB",))
    source = f"folders:{tmp_path / 'a'},{tmp_path / 'b'}"
    lazy, eager = domains.load(source, lazy=True), domains.load(source)
    assert isinstance(lazy.train_b, data.LazyImages) and lazy.shape_b == (5, 4, 3)
    np.testing.assert_array_equal(np.asarray(lazy.train_a), eager.train_a)
    np.testing.assert_array_equal(np.asarray(lazy.train_b), eager.train_b)


def test_lazy_two_domain_tfds():
    tfds = pytest.importorskip("tensorflow_datasets")

    def splits(builder, split, **kwargs):  # as in test_translation: 4 mock 16x16 photographs a split
        rng = np.random.default_rng(len(split))
        return [{"image": rng.integers(0, 256, (16, 16, 3), np.uint8), "label": 0} for _ in range(4)]

    with tfds.testing.mock_data(as_data_source_fn=splits):
        lazy, eager = domains.load("tfds:cycle_gan/horse2zebra", lazy=True), domains.load("tfds:cycle_gan/horse2zebra")
    assert isinstance(lazy.train_a, data.LazyImages) and isinstance(lazy.test_a, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy.train_b), eager.train_b)


def _counting(images):
    """`images` with a reader that records which records it decodes."""
    records, lock = [], threading.Lock()

    def read(record):
        with lock:
            records.append(record)
        return images.read(record)

    return data.LazyImages(read, images.rows, images.image_shape), records


def _synthetic(num, shape=(2, 3, 1), seed=0):
    """A LazyImages over `num` random images kept in an array (its reader), and that array."""
    array = np.random.default_rng(seed).random((num, *shape), dtype=np.float32)
    return data.LazyImages(lambda record: array[record], np.arange(num), shape), array


def _resident_batch(train_data, seed, step, batch_size):
    """The global batch of `step` as the resident path gathers it from arrays."""
    batch = {}
    for i, arrays in enumerate(train_data.values()):
        n = len(next(iter(arrays.values())))
        rows = data.batch_indices(seed, step, 1, num_examples=n, batch_size=batch_size, stream=i)[0]
        batch.update({key: np.asarray(array)[rows] for key, array in arrays.items()})
    return batch


def _one_stream():
    images, _ = _synthetic(10)
    return {"examples": {"image": images, "label": np.arange(10, dtype=np.int32) * 7}}


def _two_streams():
    return {"a": {"image_a": _synthetic(10)[0]}, "b": {"image_b": _synthetic(13, shape=(2, 2, 3), seed=1)[1]}}


@pytest.mark.parametrize("make_data", [_one_stream, _two_streams])
@pytest.mark.parametrize("process_count", [1, 2])
def test_step_batches_equal_the_resident_gather(make_data, process_count):
    train_data, batch_size, first, num = make_data(), 4, 1, 6  # 2 steps an epoch: steps 1..6 cross 3 epochs
    per_process = [list(data.step_batches(train_data, seed=3, batch_size=batch_size, first_step=first,
                                          num_steps=num, process_index=p, process_count=process_count,
                                          threads=2, prefetch=2))
                   for p in range(process_count)]
    assert all(len(batches) == num for batches in per_process)
    for j, step in enumerate(range(first, first + num)):
        expected = _resident_batch(train_data, 3, step, batch_size)
        assert sorted(per_process[0][j]) == sorted(expected)
        for key, rows in expected.items():
            assert per_process[0][j][key].shape == (batch_size // process_count, *rows.shape[1:])
            np.testing.assert_array_equal(np.concatenate([batches[j][key] for batches in per_process]), rows)


def test_a_restored_iterator_continues_where_the_saved_one_stopped():
    train_data = _two_streams()
    kwargs = dict(seed=5, batch_size=4, num_steps=9, threads=2, prefetch=3)
    batches = data.step_batches(train_data, first_step=0, **kwargs)
    for _ in range(4):
        next(batches)
    state = batches.get_state()
    assert state == {"next_index": 4}
    following = [next(batches) for _ in range(3)]
    for first_step in (0, 2):  # the state names the next step, whatever step the new pipeline starts at
        resumed = data.step_batches(train_data, first_step=first_step, **kwargs)
        resumed.set_state(state)
        for expected in following:
            got = next(resumed)
            for key in expected:
                np.testing.assert_array_equal(got[key], expected[key])
    np.testing.assert_array_equal(following[0]["image_a"], _resident_batch(train_data, 5, 4, 4)["image_a"])


@pytest.mark.parametrize("process_count", [1, 2])
def test_the_pipeline_decodes_only_its_own_rows(process_count):
    images, records = _counting(_synthetic(12)[0])
    batches = data.step_batches({"examples": {"image": images}}, seed=0, batch_size=4, first_step=2,
                                num_steps=2, process_index=process_count - 1, process_count=process_count)
    list(batches)
    block = slice((process_count - 1) * 4 // process_count, 4)
    wanted = data.batch_indices(0, 2, 2, num_examples=12, batch_size=4)[:, block]
    assert sorted(records) == sorted(wanted.ravel())


def test_a_lazy_folder_opens_without_decoding_and_a_bad_file_names_itself_when_read(tmp_path):
    _write_folder(tmp_path / "train", per_class=4, size=(32, 32))
    _write_folder(tmp_path / "test", per_class=1, size=(32, 32))
    broken = tmp_path / "train" / CLASSES[1] / "002.png"
    broken.write_bytes(broken.read_bytes()[:200])  # the header survives, the pixels do not
    dataset = data.load(f"folder:{tmp_path}", lazy=True)
    train_data = {"examples": {"image": dataset.train_images}}
    with pytest.raises(DataError, match=f"unreadable image {broken}"):
        list(data.step_batches(train_data, seed=0, batch_size=12, first_step=0, num_steps=1))


def test_size_and_materialize():
    train_data = _two_streams()
    assert data.data_bytes(train_data) == 10 * 2 * 3 * 1 * 4 + 13 * 2 * 2 * 3 * 4
    resident = data.materialize(train_data)
    assert list(resident) == ["a", "b"] and isinstance(resident["a"]["image_a"], np.ndarray)
    np.testing.assert_array_equal(resident["a"]["image_a"], np.asarray(train_data["a"]["image_a"]))


def test_auto_streams_data_over_the_device_memory_budget():
    never_read = data.LazyImages(None, np.arange(1024), (16, 16, 1))  # 1 MiB as float32
    images_only = {"examples": {"image": never_read}}
    with_labels = {"examples": {"image": never_read, "label": np.zeros(1024, np.int32)}}
    config = base_config().data
    config.device_memory_budget_mb = 1
    assert data.choose_pipeline(config, images_only) == "resident"
    assert data.choose_pipeline(config, with_labels) == "stream"
    config.pipeline = "resident"
    assert data.choose_pipeline(config, with_labels) == "resident"
    config.pipeline, config.device_memory_budget_mb = "stream", 2
    assert data.choose_pipeline(config, images_only) == "stream"


@pytest.mark.parametrize("call, message", [
    (lambda d: data.choose_pipeline(SimpleNamespace(pipeline="disk", device_memory_budget_mb=1), d),
     "unknown data.pipeline 'disk'"),
    (lambda d: data.step_batches(d, seed=0, batch_size=12, first_step=0, num_steps=1), "larger than the training"),
    (lambda d: data.step_batches(d, seed=0, batch_size=4, first_step=0, num_steps=1, process_count=3),
     "not divisible"),
    (lambda d: data.step_batches(d, seed=0, batch_size=4, first_step=0, num_steps=1, process_index=2,
                                 process_count=2), "process_index 2"),
    (lambda d: data.step_batches({"x": {"image": d["examples"]["image"], "label": np.zeros(3)}}, seed=0,
                                 batch_size=2, first_step=0, num_steps=1), "differ in length"),
])
def test_bad_pipeline_input_is_a_data_error(call, message):
    with pytest.raises(DataError, match=message):
        call(_one_stream())
