"""Multi-process training through the real `train.py` entry point: 2 processes on localhost (jax.distributed,
CPU collectives over gloo) equal 1 process on the same global batch, and a run whose processes are killed
resumes to the same parameters as an uninterrupted one.

Each process is a subprocess with its own forced CPU devices; every wait is bounded, and a test that fails
kills what it started.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gen_jax import config as config_lib
from gen_jax.training.loop import train
from gen_jax.training.runs import restore_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600  # generous: a loaded 2-core machine runs the 2-process runs several times slower
COMMON = {"train.steps": 30, "train.steps_per_call": 5, "train.log_every": 10, "train.sample_every": 30,
          "train.checkpoint_every": 20, "train.progress": False}
CONFIGS = {
    "vae": ("configs/vae.py", {"data.batch_size": 64, "model.hidden_dims": (32,), "model.latent_dim": 4}),
    "gan": ("configs/gan.py", {"data.batch_size": 32, "generator.hidden_dims": (32,),
                               "discriminator.hidden_dims": (32,), "generator.latent_dim": 8}),
}
CONFIGS["vae_streamed"] = (CONFIGS["vae"][0], {**CONFIGS["vae"][1], "data.pipeline": "stream"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(workdir, config, overrides, process_id=None, num_processes=1, port=None):
    args = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in overrides.items()]
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--config={os.path.join(ROOT, config)}",
           f"--workdir={workdir}", *args]
    if process_id is not None:
        cmd += [f"--coordinator=127.0.0.1:{port}", f"--num_processes={num_processes}", f"--process_id={process_id}"]
    return cmd


def launch(workdir, config, overrides, *, num_processes, devices_per_process=1, log_dir):
    """Starts the processes of one run; returns their Popen objects (stdout+stderr to log_dir/p<i>.log)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
    port, procs = free_port(), []
    for p in range(num_processes):
        log = open(os.path.join(log_dir, f"{os.path.basename(workdir)}_p{p}.log"), "w")
        cmd = command(workdir, config, overrides, p if num_processes > 1 else None, num_processes, port)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs, timeout=TIMEOUT_S):
    deadline = time.time() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.time())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def train_run(tmp_path, name, config, overrides, num_processes, devices_per_process=1):
    workdir = str(tmp_path / name)
    procs = launch(workdir, config, overrides, num_processes=num_processes,
                   devices_per_process=devices_per_process, log_dir=str(tmp_path))
    codes = wait_all(procs)
    logs = [open(tmp_path / f"{name}_p{p}.log").read()[-3000:] for p in range(num_processes)]
    assert codes == [0] * num_processes, logs
    return workdir


def train_here(tmp_path, name, config, overrides):
    """The one-process reference, trained in this process (one CPU device)."""
    workdir = str(tmp_path / name)
    train(config_lib.load(os.path.join(ROOT, config), overrides), workdir)
    return workdir


def final_leaves(workdir):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(restore_run(workdir).state))]


def assert_same_state(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vae", "gan", "vae_streamed"])
def test_two_processes_equal_one_process(tmp_path, family):
    """Global batch split over 2 processes x 2 devices: the whole train state (parameters, optimizer states, EMA,
    BatchNorm) matches one process with one device, and only process 0 wrote the run's files."""
    config, small = CONFIGS[family]
    overrides = {**COMMON, **small}
    one = train_here(tmp_path, "one", config, overrides)
    two = train_run(tmp_path, "two", config, overrides, num_processes=2, devices_per_process=2)
    assert_same_state(final_leaves(one), final_leaves(two))
    rows = open(os.path.join(two, "metrics.jsonl")).read().splitlines()
    assert len(rows) == len(open(os.path.join(one, "metrics.jsonl")).read().splitlines())  # written once
    assert json.loads(rows[0])["devices"] == 4  # 2 processes x 2 devices, one global batch
    assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == ["20", "30"]
    assert "done: step 30" in open(tmp_path / "two_p0.log").read()  # the CLI's last line, from process 0 only
    assert "done:" not in open(tmp_path / "two_p1.log").read()


@pytest.mark.slow
def test_killed_processes_resume_to_the_uninterrupted_result(tmp_path):
    """SIGKILL one process of a 2-process run after its first checkpoint (the other, stuck in a collective,
    is killed as a scheduler would), relaunch both: the final state equals an uninterrupted run's."""
    config, small = CONFIGS["vae"]
    overrides = {**COMMON, **small, "train.steps": 400, "train.steps_per_call": 1, "train.checkpoint_every": 50,
                 "train.sample_every": 1000}
    straight = train_here(tmp_path, "straight", config, overrides)

    workdir = str(tmp_path / "killed")
    procs = launch(workdir, config, overrides, num_processes=2, log_dir=str(tmp_path))
    try:
        deadline = time.time() + TIMEOUT_S
        checkpoints = os.path.join(workdir, "checkpoints")
        while not (os.path.isdir(checkpoints) and any(n.isdigit() for n in os.listdir(checkpoints))):
            assert time.time() < deadline and all(p.poll() is None for p in procs), "no checkpoint was written"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)
        time.sleep(0.5)
        procs[0].send_signal(signal.SIGKILL)
    finally:
        wait_all(procs, timeout=30)
    steps_saved = sorted(int(n) for n in os.listdir(checkpoints) if n.isdigit())
    assert steps_saved and max(steps_saved) < 400, steps_saved

    resumed = train_run(tmp_path, "killed", config, overrides, num_processes=2)
    assert_same_state(final_leaves(straight), final_leaves(resumed))
