"""Sampling and scoring run data-parallel over all local devices and give what one device gives.

A tiny GAN and VAE are trained here on one device; a subprocess with 4 forced CPU devices (and one with 1)
samples from them and scores the samples with the domain classifier, and the two must agree.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gen_jax import config as config_lib
from gen_jax.training.loop import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"train.steps": 20, "train.log_every": 10, "train.sample_every": 20, "train.checkpoint_every": 20,
        "train.progress": False}

SCRIPT = textwrap.dedent("""
    import sys, jax, numpy as np
    from gen_jax import parallel
    from gen_jax.evaluation import domain_classifier
    from gen_jax.training.runs import restore_run
    runs, classifier_dir, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    spread = jax.jit(lambda k: parallel.spread_rows(jax.random.normal(k, (500, 3))))(jax.random.key(0))
    result = {"devices": jax.local_device_count(), "spread_over": len(spread.sharding.device_set)}
    classifier = domain_classifier.load(classifier_dir)
    for i, workdir in enumerate(runs):
        run = restore_run(workdir)
        images, _ = run.task.sample(run.state, jax.random.key(1), 1000)
        features, probs = domain_classifier.features_and_probs(classifier, images)
        result[f"images{i}"], result[f"features{i}"] = images, np.asarray(features)
        result[f"features_over{i}"] = len(features.sharding.device_set)  # where scoring left its rows
    np.savez(out, **result)
""")


def run_script(runs, classifier_dir, out, devices):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(runs), classifier_dir, out], env=env,
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


@pytest.mark.slow
def test_sampling_and_scoring_on_four_devices_equal_one(tmp_path, digits_classifier_dir):
    gan = config_lib.override(config_lib.gan_config(), {**TINY, "generator.hidden_dims": (32,),
                                                        "discriminator.hidden_dims": (32,)})
    vae = config_lib.override(config_lib.vae_config(), {**TINY, "model.hidden_dims": (32,)})
    runs = [str(tmp_path / "gan"), str(tmp_path / "vae")]
    train(gan, runs[0])
    train(vae, runs[1])
    one = run_script(runs, digits_classifier_dir, str(tmp_path / "one.npz"), devices=1)
    four = run_script(runs, digits_classifier_dir, str(tmp_path / "four.npz"), devices=4)
    assert int(four["devices"]) == 4 and int(four["spread_over"]) == 4  # the rows really were split
    assert int(one["spread_over"]) == 1
    for name in ("features_over0", "features_over1"):  # the classifier's own batches, split over the devices
        assert (int(one[name]), int(four[name])) == (1, 4), name
    for name in ("images0", "images1", "features0", "features1"):
        assert one[name].shape == four[name].shape
        np.testing.assert_allclose(one[name], four[name], atol=1e-5, rtol=1e-5)
    assert np.std(one["images0"]) > 0.01  # real samples, not a constant
