"""The train loop: reproducibility, resume equals an uninterrupted run, N devices equal one, signals.

Multi-device runs use `XLA_FLAGS=--xla_force_host_platform_device_count=N` in a subprocess (the flag must be
set before JAX starts), so they never share this process's single CPU device.
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gen_jax import config as config_lib
from gen_jax.config import gan_config, load_saved, vae_config
from gen_jax.errors import ConfigError
from gen_jax.checkpoint import Checkpointer
from gen_jax.training.loop import train
from gen_jax.training.runs import restore_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"train.steps": 30, "train.steps_per_call": 5, "train.log_every": 10, "train.sample_every": 30,
         "train.checkpoint_every": 20, "data.batch_size": 64, "train.progress": False,
         "model.hidden_dims": (32,), "model.latent_dim": 4}


def small_config(**overrides):
    return config_lib.override(vae_config(), {**SMALL, **overrides})


def final_params(workdir):
    """The parameters of the latest checkpoint in workdir, as numpy leaves."""
    return jax.tree.leaves(jax.device_get(restore_run(workdir).state.params))


def run_cli(workdir, overrides, devices=1, **kwargs):
    """train.py in a subprocess on `devices` forced CPU devices (None: as many as train.cpu_devices makes)."""
    env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    args = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in overrides.items()]
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def assert_trees_close(a, b, atol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4)


@pytest.mark.slow
def test_same_seed_same_result_other_seed_differs(tmp_path):
    runs = [train(small_config(**{"seed": seed}), str(tmp_path / f"run{i}"))
            for i, seed in enumerate((0, 0, 1))]
    params = [final_params(str(tmp_path / f"run{i}")) for i in range(3)]
    for x, y in zip(params[0], params[1]):
        np.testing.assert_array_equal(x, y)
    assert runs[0]["eval"] == runs[1]["eval"]
    assert not all(np.array_equal(x, y) for x, y in zip(params[0], params[2]))


def test_outputs_written(tmp_path):
    train(small_config(), str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [10, 20, 30]
    assert all(r["images_per_sec"] > 0 for r in train_rows[1:])
    assert "eval/neg_elbo" in rows[-1]
    assert json.load(open(tmp_path / "eval.json"))["step"] == 30
    assert {"reconstructions_000030.png", "samples_000030.png"} <= set(os.listdir(tmp_path / "samples"))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "30"]
    assert json.load(open(tmp_path / "config.json"))["model"]["latent_dim"] == 4
    assert os.path.getsize(tmp_path / "curves.png") > 0


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path):
    train(small_config(), str(tmp_path / "straight"))
    train(small_config(**{"train.steps": 13}), str(tmp_path / "resumed"))  # stops mid-chunk
    assert Checkpointer(str(tmp_path / "resumed" / "checkpoints")).latest_step() == 13
    summary = train(small_config(), str(tmp_path / "resumed"))
    assert summary["step"] == 30
    assert_trees_close(final_params(str(tmp_path / "straight")),
                       final_params(str(tmp_path / "resumed")), atol=1e-6)


@pytest.mark.slow
def test_convolutional_steps_per_call_equal_one_step_per_call(tmp_path):
    """A conv VAE scanned 5 steps per compiled call ends where one step per call does (on CPU its convolutions'
    gradients inside the scan are `layers.conv_loop_safe`'s)."""
    def run(name, steps_per_call):
        overrides = ["train.steps=10", f"train.steps_per_call={steps_per_call}", "train.log_every=10",
                     "train.sample_every=10", "train.checkpoint_every=10", "train.progress=False",
                     "train.cpu_devices=0", "model.channels=4,8", "model.hidden=16", "model.latent_dim=4",
                     "eval.iwae_samples=0"]
        train(config_lib.load(os.path.join(ROOT, "configs", "conv_vae.py"), overrides), str(tmp_path / name))
        return final_params(str(tmp_path / name))

    assert_trees_close(run("one", 1), run("five", 5), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("devices", [2, 4])
def test_multi_device_equals_one_device(tmp_path, devices):
    """Same global batch of 64 split over N devices: gradients are pmean'd, noise is cut from one draw."""
    train(small_config(), str(tmp_path / "one"))
    result = run_cli(str(tmp_path / "many"), SMALL, devices=devices)
    assert result.returncode == 0, result.stderr[-2000:]
    assert first_row(tmp_path / "one")["devices"] == 1 and first_row(tmp_path / "many")["devices"] == devices
    assert_trees_close(final_params(str(tmp_path / "one")),
                       final_params(str(tmp_path / "many")), atol=1e-5)


def first_row(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return json.loads(f.readline())


@pytest.mark.slow
def test_cpu_devices_split_each_batch_and_equal_one_device(tmp_path):
    """train.cpu_devices=2 with nothing forcing a count: the CLI's run has two CPU devices and the same result."""
    train(small_config(), str(tmp_path / "one"))
    result = run_cli(str(tmp_path / "split"), {**SMALL, "train.cpu_devices": 2}, devices=None)
    assert result.returncode == 0, result.stderr[-2000:]
    assert first_row(tmp_path / "one")["devices"] == 1 and first_row(tmp_path / "split")["devices"] == 2
    assert_trees_close(final_params(str(tmp_path / "one")),
                       final_params(str(tmp_path / "split")), atol=1e-5)


def test_cpu_devices_after_jax_started_warns_and_trains_on_its_devices(tmp_path, capsys):
    assert jax.device_count() == 1  # starts JAX here (with one CPU device), if no earlier test did
    summary = train(small_config(**{"train.cpu_devices": 3, "train.steps": 10}), str(tmp_path))
    assert summary["devices"] == 1 and summary["step"] == 10
    assert "warning: train.cpu_devices=3 not applied: JAX has 1 CPU device(s)" in capsys.readouterr().err


@pytest.mark.slow
def test_sigint_saves_then_resume_matches_uninterrupted(tmp_path):
    overrides = {**SMALL, "train.steps": 1500, "train.steps_per_call": 1, "train.log_every": 1,
                 "train.checkpoint_every": 100000, "train.sample_every": 100000}
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in overrides.items()]
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path / 'run'}",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.stat().st_size) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr[-2000:]
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    stopped_at = Checkpointer(str(tmp_path / "run" / "checkpoints")).latest_step()
    assert 0 < stopped_at < 1500, stopped_at
    assert not (tmp_path / "run" / "eval.json").exists()
    assert run_cli(str(tmp_path / "run"), overrides).returncode == 0
    config = small_config(**{k: v for k, v in overrides.items() if k.startswith("train.")})
    train(config, str(tmp_path / "straight"))
    assert_trees_close(final_params(str(tmp_path / "straight")),
                       final_params(str(tmp_path / "run")), atol=1e-5)


def test_a_run_saved_before_a_setting_existed_loads_with_its_default(tmp_path):
    saved = gan_config().to_dict()
    del saved["optim_d"]["schedule"]                       # written before optimizers had a schedule
    saved["optim_d"]["learning_rate"] = 1e-4
    saved["generator"] = {"name": "dcgan_generator", "latent_dim": 100}   # model sections are kept whole
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = load_saved(str(tmp_path))
    assert config.optim_d.schedule == "constant" and config.optim_d.learning_rate == 1e-4
    assert config.generator.to_dict() == {"name": "dcgan_generator", "latent_dim": 100}
    assert config.discriminator.hidden_dims == (512, 256, 128)   # JSON lists come back as tuples
    (tmp_path / "config.json").write_text(json.dumps({**saved, "task": "diffusion"}))
    with pytest.raises(ConfigError, match="no known task"):
        load_saved(str(tmp_path))


CACHE_EVENTS = """
import collections, sys, jax
from gen_jax import config as config_lib
from gen_jax.training.loop import train
events = collections.Counter()
jax.monitoring.register_event_listener(lambda name, **kw: events.update([name]))
train(config_lib.load(sys.argv[1], sys.argv[3:]), sys.argv[2])
print("HITS", events["/jax/compilation_cache/cache_hits"], "MISSES", events["/jax/compilation_cache/cache_misses"])
"""


@pytest.mark.slow
def test_compile_cache_is_filled_then_reused(tmp_path):
    """train.compile_cache: the first run compiles and writes its programs there; a second run of the same model
    reads them back (cache hits, no misses)."""
    cache = tmp_path / "xla_cache"
    overrides = {**SMALL, "train.compile_cache": str(cache)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    args = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in overrides.items()]
    counts = []
    for name in ("first", "second"):
        result = subprocess.run([sys.executable, "-c", CACHE_EVENTS, os.path.join(ROOT, "configs", "vae.py"),
                                 str(tmp_path / name), *args], env={**env, "JAX_PLATFORMS": "cpu"},
                                capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        _, hits, _, misses = result.stdout.split("HITS")[-1].join(["HITS", ""]).split()
        counts.append((int(hits), int(misses)))
    (first_hits, first_misses), (second_hits, second_misses) = counts
    assert first_misses > 0 and os.listdir(cache)
    assert second_hits >= first_misses and second_misses == 0, counts
