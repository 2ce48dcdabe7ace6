"""FID InceptionV3: the 299x299 path, pytorch-fid's preprocessing, weight files, the torch-name converter and its
command, and `python -m gen_jax.evaluate --extractor=inception` end to end on synthetic weights."""
import json
import os

import numpy as np
import pytest
from flax import traverse_util

from gen_jax import evaluate, inception_weights
from gen_jax.evaluation import inception
from gen_jax.errors import UserError

# Flax leaf -> (torch leaf, axis order taking the Flax array back to torch's), the inverse of the converter.
_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_TORCH_AXES = {4: (3, 2, 0, 1), 2: (1, 0), 1: (0,)}


@pytest.fixture(scope="module")
def variables():
    """Random He-scaled variables in the FID layout, drawn in NumPy (Flax's init compiles for a minute on CPU)."""
    rng = np.random.default_rng(0)
    flat = {}
    for name, shape in inception.variable_shapes().items():
        if name.endswith("kernel"):
            value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name.endswith(("scale", "var")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(size=shape) * 0.1
        flat[name] = value.astype(np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def features(variables, images):
    return inception.inception_features(variables, images)


def _torch_state_dict(variables):
    """What pytorch-fid's state dict looks like for these variables: torch names, OIHW kernels, BN counters."""
    state = {}
    for (collection, *path, leaf), value in traverse_util.flatten_dict(variables).items():
        state[".".join([*path, _TO_TORCH[leaf]])] = np.transpose(value, _TORCH_AXES[value.ndim])
        if leaf == "var":
            state[".".join([*path, "num_batches_tracked"])] = np.array(0)
    return state


@pytest.mark.slow
def test_features_on_the_299_path(features):
    pool3, logits = features
    assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
    assert pool3.dtype == logits.dtype == np.float32
    assert np.all(np.isfinite(logits)) and np.all(np.asarray(pool3) >= 0)  # pool3 averages ReLU outputs
    assert not np.allclose(pool3[0], pool3[1])


def test_preprocess_matches_torch_bilinear_without_antialiasing():
    def torch_bilinear_matrix(in_size, out_size):  # F.interpolate(mode="bilinear", align_corners=False), 1-D
        src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, in_size - 1)
        weights = np.zeros((out_size, in_size))
        np.add.at(weights, (np.arange(out_size), lo), 1 - (src - lo))
        np.add.at(weights, (np.arange(out_size), hi), src - lo)
        return weights

    rng = np.random.default_rng(2)
    for height, width in ((320, 310), (32, 20)):  # downsampling (where antialiasing would differ) and upsampling
        images = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        rows, cols = torch_bilinear_matrix(height, 299), torch_bilinear_matrix(width, 299)
        want = np.einsum("yh,bhwc,xw->byxc", rows, images / 255.0, cols, optimize=True) * 2 - 1
        np.testing.assert_allclose(inception.preprocess(images), want, atol=1e-4)  # float32 sample positions


def test_preprocess_grey_and_range():
    grey = np.array([[[0, 255], [255, 0]]], dtype=np.uint8)
    rgb = inception.preprocess(np.repeat(grey[..., None], 3, axis=-1))
    assert rgb.shape == (1, 299, 299, 3) and rgb.dtype == np.float32
    np.testing.assert_array_equal(inception.preprocess(grey), rgb)
    np.testing.assert_array_equal(inception.preprocess(grey[..., None]), rgb)
    np.testing.assert_allclose(inception.preprocess(np.full((1, 3, 3), 255, np.uint8)), 1.0, atol=1e-6)
    np.testing.assert_allclose(inception.preprocess(np.zeros((1, 3, 3), np.uint8)), -1.0, atol=1e-6)
    with pytest.raises(UserError, match="uint8"):
        inception.preprocess(np.zeros((1, 3, 3), np.float32))


@pytest.mark.slow
def test_saved_weights_reproduce_features(tmp_path, variables, images, features):
    path = str(tmp_path / "inception_fid.npz")
    inception.save_params(path, variables)
    for got, want in zip(inception.inception_features(inception.load_params(path), images), features):
        np.testing.assert_array_equal(got, want)


def test_missing_weights_say_what_to_provide(tmp_path, monkeypatch):
    missing = str(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError) as error:
        inception.load_params(missing)
    assert isinstance(error.value, inception.MissingWeightsError)
    for needed in (missing, inception.WEIGHTS_ENV_VAR, "pt_inception-2015-12-05-6726825d.pth",
                   "python -m gen_jax.inception_weights --torch_weights=", "--inception_weights="):
        assert needed in str(error.value)
    monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, missing)
    with pytest.raises(inception.MissingWeightsError, match="nowhere.npz"):  # the path comes from the env var
        inception.load_params()
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR)
    with pytest.raises(inception.MissingWeightsError, match=f"{inception.WEIGHTS_ENV_VAR} is not set"):
        inception.load_params()


def test_wrong_layout_is_rejected(tmp_path, variables):
    flat = traverse_util.flatten_dict(variables, sep="/")
    del flat["params/Mixed_7c/branch_pool/conv/kernel"]
    path = str(tmp_path / "partial.npz")
    inception.save_params(path, traverse_util.unflatten_dict(flat, sep="/"))
    with pytest.raises(UserError, match="Mixed_7c/branch_pool/conv/kernel"):
        inception.load_params(path)


def test_a_file_that_is_not_an_npz_of_arrays_is_a_user_error(tmp_path):
    garbage, objects = str(tmp_path / "garbage.npz"), str(tmp_path / "objects.npz")
    with open(garbage, "wb") as f:
        f.write(b"not a zip file")
    np.savez(objects, weights=np.array([{"a": 1}], dtype=object))
    for path in (garbage, objects):
        with pytest.raises(UserError, match="not an .npz of arrays.*gen_jax.inception_weights"):
            inception.load_params(path)


def test_converter_maps_torch_names(variables):
    state = _torch_state_dict(variables)
    # Names and shapes as in pytorch-fid's checkpoint (torchvision's Inception3 with FID blocks, 1008 classes).
    assert len(state) == 94 * 6 + 2
    for name, shape in (("Conv2d_1a_3x3.conv.weight", (32, 3, 3, 3)),
                        ("Mixed_5b.branch_pool.conv.weight", (32, 192, 1, 1)),
                        ("Mixed_6e.branch7x7dbl_5.conv.weight", (192, 192, 1, 7)),
                        ("Mixed_7c.branch3x3dbl_3b.conv.weight", (384, 384, 3, 1)),
                        ("Mixed_7b.branch_pool.bn.running_var", (192,)),
                        ("fc.weight", (1008, 2048))):
        assert state[name].shape == shape
    converted = traverse_util.flatten_dict(inception.params_from_torch_state_dict(state))
    expected = traverse_util.flatten_dict(variables)
    assert converted.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(converted[key], value)
    with pytest.raises(UserError, match="AuxLogits"):  # torchvision's ImageNet Inception, not the FID one
        inception.params_from_torch_state_dict({**state, "AuxLogits.fc.weight": np.zeros((1008, 768))})
    with pytest.raises(UserError, match="Mixed_5b/branch1x1/bn/mean"):
        inception.params_from_torch_state_dict({**state, "Mixed_5b.branch1x1.bn.running_mean": np.zeros(3)})


def _write_pth(path, state):
    """pytorch-fid's file format (torch.save of the state dict); skipped where torch is not installed."""
    torch = pytest.importorskip("torch")
    torch.save({name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}, path)


@pytest.mark.parametrize("kind", ["pth", "npz"])
def test_convert_command_writes_what_load_params_reads(tmp_path, variables, capsys, kind):
    state, source = _torch_state_dict(variables), str(tmp_path / f"weights.{kind}")
    if kind == "pth":
        _write_pth(source, state)
    else:  # the same torch names in an .npz: the converter needs no torch then
        np.savez(source, **state)
    out = str(tmp_path / "converted" / "inception_fid.npz")
    assert inception_weights.main([f"--torch_weights={source}", f"--out={out}"]) == 0
    assert "--extractor=inception" in capsys.readouterr().out
    loaded = traverse_util.flatten_dict(inception.load_params(out))
    for key, value in traverse_util.flatten_dict(variables).items():
        np.testing.assert_array_equal(loaded[key], value)


def test_convert_command_missing_file_is_one_error_line(tmp_path, capsys):
    assert inception_weights.main([f"--torch_weights={tmp_path / 'nowhere.pth'}", f"--out={tmp_path / 'x.npz'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nowhere.pth" in err[0]


@pytest.fixture
def samples_file(tmp_path):
    path = str(tmp_path / "samples.npz")
    np.savez(path, images=np.random.default_rng(3).integers(0, 256, (12, 8, 8, 1), dtype=np.uint8))
    return path


def test_evaluate_inception_without_weights_is_one_error_line(samples_file, monkeypatch, capsys):
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    assert evaluate.main([f"--samples={samples_file}", "--data=digits", "--extractor=inception"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: FID Inception weights not found")


@pytest.mark.slow
def test_evaluate_with_inception_end_to_end(tmp_path, variables, samples_file, capsys):
    """Synthetic torch weights -> converter -> evaluate --extractor=inception on a few 8x8 images."""
    source, weights = str(tmp_path / "weights.npz"), str(tmp_path / "inception_fid.npz")
    np.savez(source, **_torch_state_dict(variables))
    assert inception_weights.main([f"--torch_weights={source}", f"--out={weights}"]) == 0
    out = str(tmp_path / "eval.json")
    assert evaluate.main([f"--samples={samples_file}", "--data=digits", "--num_reference=20", "--extractor=inception",
                          f"--inception_weights={weights}", f"--out={out}"]) == 0
    record = json.load(open(out))["sample_metrics"]
    assert record["extractor"].startswith("inception-fid:") and record["num_samples"] == 12
    assert record["reference"]["num_images"] == 20
    assert {"fid", "kid", "is", "precision", "recall"} <= set(record["metrics"])
    assert all(np.isfinite(entry["value"]) for entry in record["metrics"].values())
    assert record["metrics"]["fid"]["value"] > 0 and 1.0 <= record["metrics"]["is"]["value"] <= 1008
    assert os.listdir(tmp_path / "reference_stats")  # reference statistics cached next to the weights
    assert "inception-fid:" in capsys.readouterr().out
