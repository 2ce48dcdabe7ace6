"""Test-wide settings: CPU only, and a persistent XLA compilation cache so repeated tiny runs compile once.

Subprocess tests inherit the cache through JAX_COMPILATION_CACHE_DIR.
"""
import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "gen_jax_test_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402  (after the environment above)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.devices()  # JAX starts here, so a config's train.cpu_devices cannot change this process's devices


import json  # noqa: E402

import pytest  # noqa: E402

# A narrow LeNet (8-16 channels, 32 features) trains in seconds on the 8x8 digits.
TINY_CLASSIFIER = {"widths": [8, 16], "feature_dim": 32, "dropout": 0.1}


@pytest.fixture(scope="session")
def digits_classifier_dir(tmp_path_factory):
    """One digits classifier for the whole session, trained and saved through `python -m gen_jax.classifier`."""
    from gen_jax import classifier
    workdir = str(tmp_path_factory.mktemp("classifier"))
    assert classifier.main(["--data=digits", f"--workdir={workdir}", "--epochs=8", "--batch_size=64",
                            "--learning_rate=5e-3", f"--options={json.dumps(TINY_CLASSIFIER)}"]) == 0
    return workdir
