"""The streaming pipeline in the train loop: on the same data and seed it trains exactly what the resident
pipeline trains, resumes to the uninterrupted result, and `auto` streams what exceeds the memory budget."""
import os

import jax
import numpy as np
import pytest
from PIL import Image

from gen_jax import config as config_lib
from gen_jax import data
from gen_jax.training.loop import train
from gen_jax.training.runs import restore_run

SMALL = {"train.steps": 30, "train.steps_per_call": 5, "train.log_every": 10, "train.sample_every": 30,
         "train.checkpoint_every": 10, "train.progress": False, "data.batch_size": 32,
         "model.hidden_dims": (32,), "model.latent_dim": 4}


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """The bundled digits written as PNGs in CLASS subfolders: an image folder the loader reads lazily."""
    root = tmp_path_factory.mktemp("digit_pngs")
    digits = data.load("digits")
    images = data.quantize(digits.train_images[:400])[..., 0]
    for i, (image, label) in enumerate(zip(images, digits.train_labels[:400])):
        os.makedirs(root / str(label), exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
    return f"folder:{root}"


def config_for(source, **overrides):
    return config_lib.override(config_lib.vae_config(), {**SMALL, "data.source": source, **overrides})


def leaves(workdir):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(restore_run(workdir).state))]


def test_stream_equals_resident_on_an_image_folder(tmp_path, digit_folder):
    resident = train(config_for(digit_folder, **{"data.pipeline": "resident"}), str(tmp_path / "resident"))
    streamed = train(config_for(digit_folder, **{"data.pipeline": "stream"}), str(tmp_path / "stream"))
    assert (resident["pipeline"], streamed["pipeline"]) == ("resident", "stream")
    for a, b in zip(leaves(str(tmp_path / "resident")), leaves(str(tmp_path / "stream"))):
        np.testing.assert_array_equal(a, b)
    assert resident["eval"] == streamed["eval"]


def test_auto_streams_what_exceeds_the_budget(tmp_path, digit_folder):
    quick = {"train.steps": 5, "train.log_every": 5, "train.checkpoint_every": 5, "train.sample_every": 5}
    over = train(config_for(digit_folder, **quick, **{"data.device_memory_budget_mb": 0}), str(tmp_path / "a"))
    under = train(config_for(digit_folder, **quick), str(tmp_path / "b"))  # 360 images: far below 2 GiB
    assert (over["pipeline"], under["pipeline"]) == ("stream", "resident")


@pytest.mark.slow
def test_streamed_run_resumes_to_the_uninterrupted_result(tmp_path, digit_folder):
    straight = str(tmp_path / "straight")
    train(config_for(digit_folder, **{"data.pipeline": "stream"}), straight)
    resumed = str(tmp_path / "resumed")
    train(config_for(digit_folder, **{"data.pipeline": "stream", "train.steps": 13}), resumed)  # mid-chunk
    summary = train(config_for(digit_folder, **{"data.pipeline": "stream"}), resumed)
    assert summary["step"] == 30
    for a, b in zip(leaves(straight), leaves(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)
