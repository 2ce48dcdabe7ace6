"""The domain classifier: it learns, its features are batched exactly, it saves and reloads as the same
extractor, and its name changes whenever its parameters do."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import data
from gen_jax.evaluation import domain_classifier as classifier
from gen_jax.errors import UserError



@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def trained_dir(digits_classifier_dir):
    """The session's classifier, trained and saved through the command line (`python -m gen_jax.classifier`)."""
    return digits_classifier_dir


@pytest.fixture(scope="module")
def trained(trained_dir):
    return classifier.load(trained_dir)


@pytest.mark.slow
def test_learns_digits(trained, digits):
    # Chance is 10%; a linear classifier on these 64 pixels reaches ~95%. 90% on the 297 held-out digits leaves
    # room for seeds and platforms while failing any broken training (wrong labels, no updates, bad input range).
    assert classifier.accuracy(trained, digits.test_images, digits.test_labels) >= 0.90
    assert trained.spec["test_accuracy"] == pytest.approx(
        classifier.accuracy(trained, digits.test_images, digits.test_labels))


def test_saved_spec_rebuilds_the_same_extractor(trained_dir, trained, digits):
    with open(os.path.join(trained_dir, classifier.SPEC_FILE)) as f:
        spec = json.load(f)
    assert spec["arch"] == "lenet" and spec["image_shape"] == [8, 8, 1] and spec["num_classes"] == 10
    assert spec["options"]["widths"] == [8, 16] and spec["data"] == "digits"
    assert spec["extractor"] == trained.name and trained.name.startswith("lenet:")
    again = classifier.load(trained_dir)
    assert again.name == trained.name
    np.testing.assert_array_equal(again.features_and_probs(digits.test_images)[0],
                                  trained.features_and_probs(digits.test_images)[0])


def test_features_shape_dtype_and_partial_last_batch(trained, digits):
    images = (digits.test_images[:37] * 255).round().astype(np.uint8)
    features, probs = trained.features_and_probs(images, batch_size=16)  # 16 + 16 + a partial 5
    assert features.shape == (37, 32) and features.dtype == jnp.float32
    assert probs.shape == (37, 10) and probs.dtype == jnp.float32
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(features) >= 0)  # post-ReLU
    whole_f, whole_p = trained.features_and_probs(images, batch_size=37)  # one unbatched call
    np.testing.assert_allclose(features, whole_f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, whole_p, rtol=1e-5, atol=1e-6)
    # uint8 input means value / 255: the same as the float [0, 1] image
    float_f, _ = trained.features_and_probs(images.astype(np.float32) / 255, batch_size=16)
    np.testing.assert_allclose(features, float_f, rtol=1e-5, atol=1e-6)
    grey = classifier.features_and_probs(trained, images[..., 0], batch_size=16)[0]  # [N, H, W] is grey
    np.testing.assert_allclose(grey, features, rtol=1e-6)


def test_name_changes_with_any_parameter(trained):
    params = jax.tree.map(np.array, trained.params)
    leaf = jax.tree.leaves(params)[-1]
    leaf.flat[0] += 1e-3
    assert classifier.Classifier(trained.spec, params).name != trained.name
    assert classifier.Classifier(trained.spec, trained.params).name == trained.name


def test_resnet_for_colour_shapes_and_save_load(tmp_path):
    spec = {"arch": classifier.default_arch((32, 32, 3)), "options": {"widths": [8, 16], "feature_dim": 24},
            "image_shape": [32, 32, 3], "num_classes": 7}
    assert spec["arch"] == "resnet"
    module = classifier.build_module(spec["arch"], 7, spec["options"])
    # random parameters of the right shapes, without compiling Flax's initialisers (slow on XLA:CPU)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    model = classifier.Classifier(spec, params)
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    features, probs = model.features_and_probs(images, batch_size=4)
    assert features.shape == (5, 24) and probs.shape == (5, 7)
    classifier.save(model, str(tmp_path))
    again = classifier.load(str(tmp_path))
    assert again.name == model.name
    np.testing.assert_array_equal(again.features_and_probs(images, batch_size=4)[0], features)


def test_errors_say_what_to_do(tmp_path, trained):
    with pytest.raises(UserError, match="python -m gen_jax.classifier"):
        classifier.load(str(tmp_path / "nothing"))
    with pytest.raises(UserError, match=r"\[N, 8, 8, 1\]"):
        trained.features_and_probs(np.zeros((4, 28, 28, 1), np.uint8))
    with pytest.raises(UserError, match="unknown classifier architecture"):
        classifier.build_module("vgg", 10)


def test_cli_options_must_be_a_json_object(tmp_path, capsys):
    from gen_jax import classifier as classifier_cli
    for options, message in (("[16, 32]", "must be a JSON object"), ("{widths", "is not JSON")):
        assert classifier_cli.main(["--data=digits", f"--workdir={tmp_path}", f"--options={options}"]) == 2
        assert message in capsys.readouterr().err
