"""FID InceptionV3: the 299x299 path, pytorch-fid's preprocessing, weight files and the torch-name converter."""
import numpy as np
import pytest
from flax import traverse_util

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
                   "params_from_torch_state_dict", "save_params"):
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
