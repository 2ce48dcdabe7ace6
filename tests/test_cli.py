"""The command line: bad input is one clear line (exit 2, no traceback), and the README's snippet runs."""
import os
import re

import pytest

from test_loop import ROOT, SMALL, run_cli


def assert_one_line_error(result, pattern):
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(pattern, last), last


@pytest.mark.parametrize("overrides, pattern", [
    ({"train.stpes": 5}, r"stpes.*Did you mean \"steps\""),
    ({"model.latnt_dim": 3}, r"latnt_dim"),
    ({"train.steps": "abc"}, r"train.steps=abc"),
    ({"data.source": "idx:no-such-folder/mnist"}, r"IDX folder no-such-folder/mnist does not exist"),
    ({"data.source": "mnist"}, r"unknown data source 'mnist'"),
    ({"data.batch_size": 5000}, r"batch size 5000 is larger than the training set \(1500 examples\)"),
    ({"model.name": "mlp_vea"}, r"unknown model 'mlp_vea'"),
    ({"train.steps": 0}, r"train.steps must be positive"),
    ({"train.cpu_devices": -1}, r"train.cpu_devices must be 0 \(JAX's CPU devices as they are\) or a device"),
])
@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path, overrides, pattern):
    assert_one_line_error(run_cli(str(tmp_path), {**SMALL, **overrides}), pattern)


def test_missing_config_file(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path}",
                             "--config=configs/nope.py"], capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, r"config file configs/nope.py: No such file")


def test_critic_shares_must_divide_each_devices_batch(tmp_path):
    """Batch 20 splits into 4 critic shares, but each of 2 devices holds 10: refused before compiling."""
    import subprocess
    import sys
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path}",
                             "--config=configs/wgan.py", "--config.data.batch_size=20", "--config.gan.n_critic=4"],
                            capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert_one_line_error(result, r"per-device batch 10 .* must split into 4 equal shares \(gan.n_critic=4")


def test_batch_not_divisible_by_devices(tmp_path):
    assert_one_line_error(run_cli(str(tmp_path), {**SMALL, "data.batch_size": 63}, devices=2),
                          r"batch size 63 is not divisible by the 2 devices")


def test_batch_not_divisible_by_cpu_devices_names_the_setting(tmp_path):
    assert_one_line_error(run_cli(str(tmp_path), {**SMALL, "data.batch_size": 63, "train.cpu_devices": 2},
                                  devices=None),
                          r"batch size 63 is not divisible by the 2 devices \(train.cpu_devices=2: set it to a "
                          r"divisor of the batch size, or 0\)")


@pytest.mark.slow
def test_corrupt_checkpoint_is_reported_and_kept(tmp_path):
    assert run_cli(str(tmp_path), {**SMALL, "train.steps": 10}).returncode == 0
    step_dir = tmp_path / "checkpoints" / "10"
    corrupted = []
    for dirpath, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "wb") as f:
                f.write(b"\x00garbage")
            corrupted.append(path)
    result = run_cli(str(tmp_path), {**SMALL, "train.steps": 20})  # no good checkpoint to fall back to
    assert_one_line_error(result, r"every checkpoint in .*/checkpoints is corrupt: checkpoint .*/checkpoints/10 is "
                                  r"corrupt")
    assert "another model" not in result.stderr
    assert all(os.path.exists(p) for p in corrupted)  # nothing deleted or moved


@pytest.mark.slow
def test_model_mismatch_with_checkpoint_is_reported(tmp_path):
    assert run_cli(str(tmp_path), {**SMALL, "train.steps": 10}).returncode == 0
    assert_one_line_error(run_cli(str(tmp_path), {**SMALL, "train.steps": 20, "model.latent_dim": 5}),
                          r"resuming it would change the result: model.latent_dim: 4 -> 5")
    assert_one_line_error(run_cli(str(tmp_path), {**SMALL, "train.steps": 20, "model.latent_dim": 5,
                                                  "train.allow_config_change": True}),
                          r"holds another model and cannot be restored into this config's model")


@pytest.mark.slow
def test_readme_snippet_runs():
    """The README's 'use it from your own JAX code' snippet, executed as written."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    snippet = readme.split("<!-- snippet: pure-functions -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "README.md", "exec"), {})
