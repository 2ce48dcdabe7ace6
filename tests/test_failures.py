"""Nothing lost, nothing silent: NaN never reaches a checkpoint, corrupt checkpoints fall back, resumes keep their
config, and every bad input is one clear error (issue 15). The wide sweep is benchmarks/bad_inputs.py."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gen_jax import config as config_lib
from gen_jax.data import sources
from gen_jax.errors import CheckpointError, ConfigError, DataError, UserError
from gen_jax.training import runs, steps
from gen_jax.checkpoint import Checkpointer, CorruptCheckpointError
from gen_jax.training.loop import NonFiniteError, device_steps, train
from gen_jax.training.train_state import TrainState
from test_cli import assert_one_line_error
from test_loop import ROOT, SMALL, run_cli, small_config


def restored(workdir):
    run = runs.restore_run(str(workdir))
    return run.step, jax.tree.leaves(jax.device_get(run.state))


def all_finite(leaves):
    return all(np.isfinite(x).all() for x in leaves if np.issubdtype(np.asarray(x).dtype, np.inexact))


def metric_steps(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r["step"] for r in rows if "eval/kl" not in r and "eval/neg_elbo" not in r]


# ------------------------------------------------------------------------------------------- non-finite values
def _toy_step(state, batch, key):
    """A step whose loss is NaN when batch['poison'] is set."""
    def loss_fn(params):
        loss = jnp.sum((params["w"] - batch["x"]) ** 2) * jnp.where(batch["poison"], jnp.nan, 1.0)
        return loss, {"loss": loss}
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads), metrics


def _toy_state():
    return TrainState.create(params={"w": jnp.ones((3,))}, tx=optax.adam(0.1))


def test_guard_is_exact_when_finite_and_rejects_nonfinite_updates():
    state, batch = _toy_state(), {"x": jnp.arange(3.0), "poison": jnp.array(False)}
    plain, _ = jax.jit(_toy_step)(state, batch, None)
    for mode in ("stop", "skip"):
        guarded = jax.jit(steps.guard_nonfinite(_toy_step, mode=mode))
        (good, health), metrics = guarded((state, steps.init_health()), batch, None, 0)
        assert bool(metrics["_ok"]) and int(health["first_bad_step"]) == -1
        for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(good)):
            np.testing.assert_array_equal(a, b)  # bit for bit
        poisoned = {**batch, "poison": jnp.array(True)}
        (after, health), metrics = guarded((good, health), poisoned, None, 7)
        assert not bool(metrics["_ok"])
        for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(after)):
            np.testing.assert_array_equal(a, b)  # the old state is kept
        assert int(health["first_bad_step"]) == 7 and int(health["rejected"]) == 1
        assert steps.nonfinite_names(int(health["what"]), ["loss"])[0] == "loss"
        (later, health), metrics = guarded((after, health), batch, None, 8)
        assert bool(metrics["_ok"]) == (mode == "skip")  # stop freezes the state until the host stops
        assert int(health["first_bad_step"]) == 7


@pytest.mark.parametrize("poisoned", [(), (2,), (0, 3)])
@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_steps_of_a_call_equal_the_guarded_steps_one_by_one(mode, poisoned):
    """device_steps guards k steps once per call, falling back to guarding each step when one is not finite:
    state, health and averaged metrics equal those of the guarded steps run one at a time, bit for bit."""
    k, first, key = 4, 10, jax.random.key(0)
    batches = {"x": jnp.arange(3.0 * k).reshape(k, 3) / 7, "poison": jnp.isin(jnp.arange(k), jnp.array(poisoned))}
    carry = (_toy_state(), steps.init_health())
    (state, health), metrics = jax.jit(lambda c, b: device_steps(_toy_step, c, b, first, key=key,
                                                                 on_nonfinite=mode))(carry, batches)
    guarded, losses = jax.jit(steps.guard_nonfinite(_toy_step, mode=mode)), []
    for i in range(k):
        carry, m = guarded(carry, jax.tree.map(lambda b: b[i], batches), jax.random.fold_in(key, first + i), first + i)
        losses += [float(m["loss"])] if bool(m["_ok"]) else []
    for a, b in zip(jax.tree.leaves((state, health)), jax.tree.leaves(carry)):
        np.testing.assert_array_equal(a, b)
    assert int(health["first_bad_step"]) == (first + poisoned[0] if poisoned else -1)
    np.testing.assert_allclose(float(metrics["loss"]), np.mean(losses) if losses else np.nan, rtol=1e-6)


@pytest.mark.slow
def test_nan_sequence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """Finish a run, resume it with a learning rate of 1e10: training stops naming the step; the checkpoints
    are the finite ones, and the run restores."""
    workdir = str(tmp_path / "run")
    train(small_config(), workdir)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    with pytest.raises(NonFiniteError, match=r"non-finite .* at step 3\d: .*last good checkpoint is step 30"):
        train(small_config(**{"train.steps": 60, "optim.learning_rate": 1e10, "train.allow_config_change": True}),
              workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
    step, leaves = restored(workdir)
    assert step == 30 and all_finite(leaves)
    assert max(metric_steps(workdir)) == 30


@pytest.mark.slow
def test_skip_mode_skips_and_counts(tmp_path):
    workdir = str(tmp_path / "run")
    train(small_config(), workdir)
    summary = train(small_config(**{"train.steps": 50, "optim.learning_rate": 1e10, "train.allow_config_change": True,
                                    "train.on_nonfinite": "skip"}), workdir)
    assert summary["step"] == 50 and summary["skipped_nonfinite"] > 0
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    skipped = [r["skipped_steps"] for r in rows if "skipped_steps" in r]
    assert sum(skipped) == summary["skipped_nonfinite"]
    step, leaves = restored(workdir)
    assert step == 50 and all_finite(leaves)


@pytest.mark.slow
def test_nan_sequence_on_the_command_line(tmp_path):
    assert run_cli(str(tmp_path), SMALL).returncode == 0
    result = run_cli(str(tmp_path), {**SMALL, "train.steps": 60, "optim.learning_rate": 1e10,
                                     "train.allow_config_change": True})
    assert_one_line_error(result, r"non-finite .* at step \d+: .*last good checkpoint is step 30")
    step, leaves = restored(tmp_path)
    assert step == 30 and all_finite(leaves)


def test_checkpointer_refuses_nonfinite_state(tmp_path):
    checkpointer = Checkpointer(str(tmp_path / "ckpt"))
    checkpointer.save(1, {"w": np.ones(3, np.float32)})
    with pytest.raises(CheckpointError, match="non-finite"):
        checkpointer.save(2, {"w": np.array([1.0, np.nan, 2.0], np.float32)})
    assert checkpointer.all_steps() == [1]
    checkpointer.close()


# ------------------------------------------------------------------------------------------------ checkpoints
def _step_dir(root, step):
    return os.path.join(root, str(step))


def _files(directory):
    return [os.path.join(d, f) for d, _, files in os.walk(directory) for f in files]


def _garble(directory):
    for path in _files(directory):
        with open(path, "wb") as f:
            f.write(b"\x00garbage")


def _truncate(directory):
    for path in _files(directory):
        if f"{os.sep}d{os.sep}" in path:
            os.truncate(path, os.path.getsize(path) // 2)


def _flip(directory):
    for path in _files(directory):
        if f"{os.sep}d{os.sep}" in path:
            data = bytearray(open(path, "rb").read())
            for i in range(len(data) // 3, min(len(data), len(data) // 3 + 64)):
                data[i] ^= 0xFF
            open(path, "wb").write(bytes(data))


def _drop_metadata(directory):
    os.remove(os.path.join(directory, "default", "_METADATA"))


PARAMS = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.ones(4, np.float32)}}
STATE = jax.device_get(TrainState.create(params=PARAMS, tx=optax.adam(0.1)))  # a train state, as the loop saves


def _shift(state, value):
    return jax.tree.map(lambda x: np.full_like(x, value) if np.issubdtype(x.dtype, np.floating) else x, state)


@pytest.mark.parametrize("corrupt", [_garble, _truncate, _flip, _drop_metadata, "empty", "non-finite"])
def test_corrupt_latest_checkpoint_falls_back(tmp_path, corrupt):
    root = str(tmp_path / "checkpoints")
    checkpointer = Checkpointer(root)
    checkpointer.save(10, STATE)
    if corrupt == "non-finite":  # written by an older version that saved NaN
        import orbax.checkpoint as ocp
        bad = _shift(STATE, np.nan)
        checkpointer._manager.save(20, args=ocp.args.StandardSave(bad))
        checkpointer._manager.wait_until_finished()
    else:
        checkpointer.save(20, _shift(STATE, 2.0))
    checkpointer.close()
    if corrupt == "empty":
        os.makedirs(_step_dir(root, 30))
    elif callable(corrupt):
        corrupt(_step_dir(root, 20))
    lines = []
    checkpointer = Checkpointer(root)
    state, step = checkpointer.restore_newest_good(STATE, report=lines.append, set_aside=True)
    good_step, good_state = (20, _shift(STATE, 2.0)) if corrupt == "empty" else (10, STATE)
    assert step == good_step
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(good_state)))
    assert len(lines) == 1 and "corrupt" in lines[0] and "another model" not in lines[0], lines
    assert checkpointer.all_steps()[-1] == good_step  # the corrupt step moved aside, kept
    assert os.listdir(root + ".corrupt")
    checkpointer.close()


def test_another_model_is_not_called_corrupt(tmp_path):
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"))
    checkpointer.save(10, STATE)
    other = jax.device_get(TrainState.create(params={**PARAMS, "a": np.zeros((2, 5), np.float32)}, tx=optax.adam(0.1)))
    with pytest.raises(CheckpointError, match=r"another model .*params.a is saved as \(2, 3\)") as info:
        checkpointer.restore_newest_good(other, report=print)
    assert not isinstance(info.value, CorruptCheckpointError)
    renamed = jax.device_get(TrainState.create(params={"x": PARAMS["a"], "b": PARAMS["b"]}, tx=optax.adam(0.1)))
    with pytest.raises(CheckpointError, match="another model"):
        checkpointer.restore(renamed, 10)
    checkpointer.close()


def test_every_checkpoint_corrupt_is_an_error_and_nothing_moves(tmp_path):
    root = str(tmp_path / "checkpoints")
    checkpointer = Checkpointer(root)
    checkpointer.save(10, STATE)
    _garble(_step_dir(root, 10))
    with pytest.raises(CheckpointError, match="every checkpoint .* is corrupt"):
        checkpointer.restore_newest_good(STATE, report=print, set_aside=True)
    assert os.path.isdir(_step_dir(root, 10)) and not os.path.exists(root + ".corrupt")
    checkpointer.close()


@pytest.mark.slow
def test_resume_over_a_corrupt_checkpoint_equals_an_uninterrupted_run(tmp_path, capsys):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    every10 = {"train.checkpoint_every": 10}
    train(small_config(**every10, **{"train.steps": 40}), straight)
    train(small_config(**every10), resumed)
    _garble(_step_dir(os.path.join(resumed, "checkpoints"), 30))
    capsys.readouterr()
    train(small_config(**every10, **{"train.steps": 40}), resumed)
    err = capsys.readouterr().err
    assert "corrupt" in err and "using step 20" in err, err
    assert metric_steps(resumed) == [10, 20, 30, 40]  # rows past step 20 were dropped, then rewritten once
    assert os.path.isdir(os.path.join(resumed, "checkpoints.corrupt", "30"))
    for a, b in zip(restored(straight)[1], restored(resumed)[1]):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_metrics_rows_past_the_restored_step_are_dropped(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    with open(path, "w") as f:
        f.write('{"step": 10, "loss": 1}\n{"step": 20, "loss": 2}\n{"step": 20, "eval/x": 1}\n{"step": 30, "lo')
    runs.drop_metrics_after(path, 20)
    assert [json.loads(line)["step"] for line in open(path)] == [10, 20, 20]


# ---------------------------------------------------------------------------------------- config on resume
@pytest.mark.slow
def test_resume_refuses_a_changed_config_and_writes_nothing(tmp_path):
    workdir = str(tmp_path / "run")
    train(small_config(**{"train.steps": 10}), workdir)
    saved = {name: open(os.path.join(workdir, name), "rb").read() for name in ("config.json", "metrics.jsonl")}
    for overrides, pattern in [({"optim.learning_rate": 1e-2}, r"optim.learning_rate: 0.001 -> 0.01"),
                               ({"seed": 3}, r"seed: 0 -> 3"),
                               ({"data.source": "folder:/x"}, r"data.source: 'digits' -> 'folder:/x'"),
                               ({"model.latent_dim": 5, "loss.beta": 2.0}, r"loss.beta.*; model.latent_dim: 4 -> 5")]:
        with pytest.raises(ConfigError, match=pattern + r".*allow_config_change"):
            train(small_config(**{"train.steps": 20, **overrides}), workdir)
        for name, content in saved.items():
            assert open(os.path.join(workdir, name), "rb").read() == content
    summary = train(small_config(**{"train.steps": 20, "train.log_every": 5, "eval.batch_size": 100}), workdir)
    assert summary["step"] == 20  # train.* and eval.* may change


def test_result_changes_lists_only_result_settings():
    saved = small_config()
    assert config_lib.result_changes(saved, small_config(**{"train.steps": 99, "eval.batch_size": 7})) == []
    changes = config_lib.result_changes(saved, small_config(**{"optim.b1": 0.5, "model.hidden_dims": (8, 8)}))
    assert changes == ["model.hidden_dims: (32,) -> (8, 8)", "optim.b1: 0.9 -> 0.5"]


def test_corrupt_config_json_is_one_error(tmp_path):
    workdir = str(tmp_path / "run")
    train(small_config(**{"train.steps": 10}), workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write('{"task": "vae", "seed"')
    with pytest.raises(ConfigError, match="config.json is corrupt"):
        runs.restore_run(workdir)
    with pytest.raises(ConfigError, match="config.json is corrupt.*allow_config_change"):
        train(small_config(**{"train.steps": 20}), workdir)


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("overrides, pattern", [
    ({"optim.learning_rate": 0.0}, "optim.learning_rate must be a positive"),
    ({"optim.learning_rate": -1e-3}, "optim.learning_rate must be a positive"),
    ({"optim.learning_rate": float("nan")}, "optim.learning_rate must be a positive"),
    ({"model.latent_dim": 0}, "model.latent_dim must be a positive integer"),
    ({"model.latent_dim": -2}, "model.latent_dim must be a positive integer"),
    ({"model.hidden_dims": (32, 0)}, "model.hidden_dims must be positive integers"),
    ({"loss.likelihood": "poisson"}, "loss.likelihood must be one of bernoulli, gaussian"),
    ({"train.on_nonfinite": "ignore"}, "train.on_nonfinite must be one of stop, skip"),
    ({"train.cpu_convolutions": "onednn"}, "train.cpu_convolutions must be one of xla, ynnpack"),
    ({"optim.name": "adagrad"}, "optim.name must be one of"),
    ({"loss.beta": -1.0}, "loss.beta must be >= 0"),
    ({"eval.batch_size": 0}, "eval.batch_size must be positive"),
    ({"task": "gan"}, "task 'gan' needs"),
])
def test_finalize_rejects_bad_values(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_lib.finalize(small_config(**overrides))


def test_gan_and_autoencoder_values():
    for schema, overrides, pattern in [
        (config_lib.gan_config, {"optim_d.learning_rate": 0.0}, "optim_d.learning_rate"),
        (config_lib.gan_config, {"generator.latent_dim": 0}, "generator.latent_dim"),
        (config_lib.gan_config, {"gan.loss": "foo"}, "gan.loss must be one of"),
        (config_lib.autoencoder_config, {"model.code_dim": 0}, "model.code_dim"),
        (config_lib.autoencoder_config, {"loss.corruption": "salt"}, "loss.corruption must be one of"),
        (config_lib.gan_config, {"gan.clusters": 1}, "gan.clusters must be 0 .off. or at least 2"),
        (config_lib.vae_config, {"eval.iwae_samples": -5}, "eval.iwae_samples must be >= 0"),
        (config_lib.cyclegan_config, {"data.exclude_labels": (3,)}, "data.exclude_labels applies to one-domain"),
        (config_lib.pix2pix_config, {"data.exclude_labels": (3,)}, "data.exclude_labels applies to one-domain"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            config_lib.finalize(config_lib.override(schema(), overrides))


@pytest.mark.parametrize("text, pattern", [
    ("def get_config(:\n", r"failed to load: SyntaxError"),
    ("raise RuntimeError('boom')\n", r"failed to load: RuntimeError: boom"),
])
def test_config_file_errors_through_train_py(tmp_path, text, pattern):
    path = tmp_path / "bad.py"
    path.write_text(text)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path / 'run'}",
                             f"--config={path}"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert_one_line_error(result, pattern)
    assert not (tmp_path / "run").exists()


def _write_idx_dir(directory, n=60):
    os.makedirs(directory, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 255, (n, 8, 8), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            with gzip.open(os.path.join(directory, f"{prefix}-{kind}.gz"), "wb") as f:
                f.write(header + array.tobytes())


def test_truncated_gz_idx_is_a_data_error(tmp_path):
    _write_idx_dir(str(tmp_path))
    assert sources.load(f"idx:{tmp_path}").train_images.shape == (60, 8, 8, 1)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="cannot read IDX file .*train-images"):
        sources.load(f"idx:{tmp_path}")


def _png(path, array):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_splits_must_have_the_same_classes(tmp_path):
    pixels = np.zeros((8, 8), np.uint8)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _png(str(tmp_path / split / cls / "0.png"), pixels)
    assert sources.load(f"folder:{tmp_path}").num_classes == 2
    os.rename(tmp_path / "test" / "b", tmp_path / "b_moved")
    with pytest.raises(DataError, match="test lacks b"):
        sources.load(f"folder:{tmp_path}")
    os.rename(tmp_path / "b_moved", tmp_path / "test" / "b")
    _png(str(tmp_path / "test" / "c" / "0.png"), pixels)
    with pytest.raises(DataError, match="test has extra c"):
        sources.load(f"folder:{tmp_path}")


def test_16_bit_pngs_keep_their_values(tmp_path):
    values = np.array([[0, 1000, 30000, 65535]], np.uint16).repeat(4, axis=0)
    for i in range(10):
        _png(str(tmp_path / "x" / f"{i}.png"), values)
        _png(str(tmp_path / "y" / f"{i}.png"), values // 2)
    ds = sources.load(f"folder:{tmp_path}")
    image = ds.train_images[ds.train_labels == 0][0, ..., 0]
    np.testing.assert_allclose(image[0], values[0] / 65535, atol=1e-6)   # not clipped to white
    assert ds.train_images.max() <= 1.0 and 0 < image[0, 1] < 0.02


def test_unusable_workdir(tmp_path):
    (tmp_path / "f").write_text("x")
    for workdir, pattern in [(tmp_path / "f", "is a file"), (tmp_path / "f" / "w", "cannot be created"),
                             ("/proc/gen_jax_run", "cannot be created or written")]:
        with pytest.raises(UserError, match=pattern):
            runs.prepare_workdir(str(workdir), small_config())


def test_sample_out_is_checked_before_the_run_opens(tmp_path, capsys):
    from gen_jax import sample
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "file").write_text("x")
    for out, pattern in [(tmp_path / "dir.npz", "is a folder"), (tmp_path / "samples", "must be a .npz"),
                         (tmp_path / "file" / "s.npz", "cannot create the folder")]:
        assert sample.main([f"--workdir={tmp_path / 'nope'}", f"--out={out}"]) == 2
        assert pattern in capsys.readouterr().err


def test_evaluate_num_not_positive_and_applications_missing_workdir(tmp_path, capsys):
    from gen_jax import evaluate
    from gen_jax.applications import __main__ as applications
    for num in ("-1", "0"):
        assert evaluate.main([f"--workdir={tmp_path}", f"--num={num}"]) == 2
        assert "--num must be positive" in capsys.readouterr().err
    assert applications.main(["reduce", f"--workdir={tmp_path / 'nope'}"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_small_image_folder_trains_evaluates_and_draws(tmp_path):
    from sklearn.datasets import load_digits
    digits = load_digits()
    for i in range(40):
        _png(str(tmp_path / "data" / str(digits.target[i] % 2) / f"{i}.png"),
             (digits.images[i] / 16 * 255).astype(np.uint8))
    workdir = str(tmp_path / "run")
    summary = train(small_config(**{"data.source": f"folder:{tmp_path / 'data'}", "data.batch_size": 16,
                                    "train.steps": 10}), workdir)
    assert summary["eval"]["num_test_images"] == 4
    assert os.path.exists(os.path.join(workdir, "eval.json"))
    assert {"reconstructions_000010.png", "samples_000010.png", "interpolations_000010.png"} <= set(
        os.listdir(os.path.join(workdir, "samples")))


def test_sigint_during_start_up_is_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path}",
                             "--config.train.progress=False"], env={**os.environ, "JAX_PLATFORMS": "cpu"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # past train.py's first lines (its handler), still importing JAX: long before the loop
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr[-2000:]
    assert proc.returncode == 128 + signal.SIGINT, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted before training started"), stderr[-2000:]
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))  # the loop never ran
