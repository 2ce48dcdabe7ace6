"""Paired translation (pix2pix): the step's two losses are the ones defined, L1 alone leaves the discriminator
untouched, super-resolution data is what it says, and the default config beats bicubic upscaling."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import config as config_lib
from gen_jax import data, losses
from gen_jax.data import domains
from gen_jax.errors import ConfigError
from gen_jax.training import hooks, steps, tasks
from gen_jax.training.loop import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"generator.channels": 4, "discriminator.channels": 4, "data.batch_size": 8}


@pytest.fixture(scope="module")
def pairs():
    return domains.load_pairs("superres:digits")


def test_super_resolution_pairs_hold_box_downsampled_inputs(pairs):
    ds = data.load("digits")
    np.testing.assert_array_equal(pairs.train_targets, ds.train_images)
    block = ds.test_images[0, :4, :4, 0].mean()  # one 4x4 block of the first test digit, shown 4x4 times
    np.testing.assert_allclose(pairs.test_inputs[0, :4, :4, 0], np.full((4, 4), block), rtol=1e-6)
    assert pairs.test_baseline.shape == pairs.test_targets.shape
    assert 0.0 <= pairs.test_baseline.min() and pairs.test_baseline.max() <= 1.0


@pytest.mark.slow
def test_step_losses_are_the_defined_ones(pairs):
    config = config_lib.finalize(config_lib.override(config_lib.pix2pix_config(), TINY))
    task = tasks.build(config, pairs)
    state = jax.jit(task.init_state)(jax.random.key(0))
    g, d = task.modules["generator"], task.modules["discriminator"]
    batch = {"input": pairs.train_inputs[:8], "target": pairs.train_targets[:8]}
    key = jax.random.key(1)
    new, metrics = jax.jit(steps.make_pix2pix_step(g, d, axis_name=None))(state, batch, key)
    x, y = batch["input"] * 2 - 1, batch["target"] * 2 - 1
    fake = g.apply({"params": state["generator"].params}, x)  # no dropout: the step's forward pass
    real_logits = d.apply({"params": state["discriminator"].params}, y, x)
    fake_logits = d.apply({"params": state["discriminator"].params}, fake, x)
    expected_d = 0.5 * np.mean(losses.discriminator_loss(real_logits=real_logits, fake_logits=fake_logits))
    np.testing.assert_allclose(metrics["d_loss"], expected_d, rtol=1e-5)
    np.testing.assert_allclose(metrics["l1"], np.mean(np.abs(fake - y)), rtol=1e-5)
    # the generator's adversarial term is judged by the discriminator just updated in the same step
    updated_logits = d.apply({"params": new["discriminator"].params}, fake, x)
    np.testing.assert_allclose(metrics["g_loss"], np.mean(losses.generator_loss(fake_logits=updated_logits)),
                               rtol=1e-5)
    l1_only, metrics = jax.jit(steps.make_pix2pix_step(g, d, adversarial_weight=0.0, axis_name=None))(
        state, batch, key)
    assert set(metrics) == {"g_loss", "l1"}
    for a, b in zip(jax.tree.leaves(state["discriminator"].params), jax.tree.leaves(l1_only["discriminator"].params)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(jax.tree.leaves(state["generator"].params)[0],
                              jax.tree.leaves(l1_only["generator"].params)[0])


def test_classifier_dir_scores_outputs_in_evaluation_not_samples(pairs, digits_classifier_dir):
    """pix2pix reads eval.classifier_dir in its own evaluation; a family that neither samples nor scores its
    outputs (CycleGAN) rejects it."""
    config = config_lib.finalize(config_lib.override(config_lib.pix2pix_config(),
                                                     {**TINY, "eval.classifier_dir": digits_classifier_dir}))
    assert hooks.sample_scorer(config, pairs, tasks.build(config, pairs)) is None
    cyclegan = config_lib.finalize(config_lib.override(config_lib.cyclegan_config(),
                                                       {"eval.classifier_dir": digits_classifier_dir}))
    domains_ab = domains.load(cyclegan.data.source)
    with pytest.raises(ConfigError, match="cannot sample"):
        hooks.sample_scorer(cyclegan, domains_ab, tasks.build(cyclegan, domains_ab))


@pytest.mark.slow
def test_upscaling_beats_bicubic(tmp_path, digits_classifier_dir):
    config = config_lib.load(os.path.join(ROOT, "configs", "superres.py"),
                             {"train.steps": 400, "train.progress": False, "pix2pix.adversarial_weight": 0.0,
                              "eval.classifier_dir": digits_classifier_dir})
    results = train(config, str(tmp_path / "run"))["eval"]
    assert results["psnr"] > results["baseline_psnr"] + 1.0, results
    assert jnp.isfinite(results["l1_error"]) and results["l1_error"] < results["baseline_l1_error"], results
    assert results["output_accuracy"] > results["baseline_accuracy"], results
    assert results["baseline_edge_strength"] < results["edge_strength"] < results["target_edge_strength"], results


def test_translate_cli_runs_a_pix2pix_generator(pairs, tmp_path, capsys):
    """`python -m gen_jax.translate` on a pix2pix run: one PNG per input, the generator's outputs; b2a refused."""
    from PIL import Image

    from gen_jax import translate
    from gen_jax.training.runs import restore_run
    config = config_lib.finalize(config_lib.override(config_lib.pix2pix_config(),
                                                     {**TINY, "train.steps": 2, "train.progress": False}))
    workdir = str(tmp_path / "run")
    train(config, workdir)
    inputs = data.quantize(pairs.test_inputs[:3])
    np.savez(tmp_path / "in.npz", images=inputs)
    out = str(tmp_path / "out")
    assert translate.main([f"--workdir={workdir}", f"--input={tmp_path / 'in.npz'}", f"--output={out}"]) == 0
    assert sorted(os.listdir(out)) == ["000000.png", "000001.png", "000002.png"]
    run = restore_run(workdir)
    expected = translate.translation.translate_all(run.task.modules["generator"], run.state["generator"].params,
                                                   inputs / np.float32(255))
    written = np.asarray(Image.open(os.path.join(out, "000002.png"))) / 255.0
    assert np.abs(written - expected[2, ..., 0]).max() <= 1 / 255 + 1e-6
    assert translate.main([f"--workdir={workdir}", "--direction=b2a", f"--input={tmp_path / 'in.npz'}",
                           f"--output={out}"]) == 2
    assert "translates one way" in capsys.readouterr().err
