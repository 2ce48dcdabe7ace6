"""Property tests (hypothesis, bounded examples): whatever a user passes — config overrides, command-line
arguments, image files — the result is either a working object or one of gen_jax's clear errors (UserError),
never another exception."""
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gen_jax import config as config_lib  # noqa: E402
from gen_jax.data import sources  # noqa: E402
from gen_jax.errors import UserError  # noqa: E402
from gen_jax.training import steps, tasks  # noqa: E402

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _dataset(height=8, width=8, channels=1, n=32, num_classes=10):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(n, height, width, channels)).astype(np.float32)
    labels = (np.arange(n) % num_classes).astype(np.int32)
    return sources.Dataset("synthetic", images, labels, images[:8], labels[:8], num_classes)


def _keys(config, prefix=""):
    out = []
    for key, value in config.items():
        if hasattr(value, "items"):
            out += _keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


SCHEMAS = {"vae": config_lib.vae_config, "gan": config_lib.gan_config, "autoencoder": config_lib.autoencoder_config}
RAW_VALUES = st.one_of(
    st.integers(-3, 300).map(str), st.sampled_from(["0", "-1", "1e10", "nan", "inf", "-inf", "0.5", "1.5", "-0.1"]),
    st.sampled_from(["true", "false", "", "()", "8,8", "0,4", "-1,2", "abc", "bernoulli", "gaussian", "kl", "l1",
                     "mlp_vae", "conv_vae", "skip", "stop", "digits", "mnist"]),
    st.text(max_size=6))


@st.composite
def overrides(draw, family):
    keys = [k for k in _keys(SCHEMAS[family]()) if not k.startswith(("data.source", "data.tfds", "eval.classifier"))]
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
    return [f"{key}={draw(RAW_VALUES)}" for key in chosen]


@pytest.mark.parametrize("family", sorted(SCHEMAS))
@FAST
@given(data=st.data())
def test_any_override_is_a_config_or_a_clear_error(family, data):
    """Command-line overrides -> finalize -> the task's model built and its state shaped (jax.eval_shape: no
    compilation): each stage either works or raises UserError."""
    args = data.draw(overrides(family))
    try:
        config = config_lib.finalize(config_lib.override(SCHEMAS[family](), args))
        config.data.batch_size = min(config.data.batch_size, 32)
        task = tasks.build(config, _dataset())
        jax.eval_shape(task.init_state, jax.random.key(0))
    except UserError:
        pass


@FAST
@given(assignment=st.text(max_size=30))
def test_any_command_line_assignment_parses_or_is_a_clear_error(assignment):
    try:
        config_lib.override(config_lib.vae_config(), [assignment])
    except UserError:
        pass


@pytest.fixture(scope="module")
def tiny_vae_run(tmp_path_factory):
    from gen_jax.training.loop import train
    workdir = str(tmp_path_factory.mktemp("vae"))
    train(config_lib.override(config_lib.vae_config(), {"train.steps": 2, "train.progress": False,
                                                        "model.hidden_dims": (8,), "model.latent_dim": 2}), workdir)
    return workdir


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(out=st.one_of(st.text(min_size=1, max_size=20), st.from_regex(r"[a-z]{1,8}\.npz", fullmatch=True)),
       num=st.integers(-3, 3))
@example(out="samples.npz", num=2)
def test_sample_arguments_are_checked_without_a_traceback(tiny_vae_run, out, num):
    """Against a real run: a positive --num and a plain NAME.npz sample; a non-positive --num or an --out that
    is not a .npz file name is one error (exit 2); any other raw exception fails the test."""
    from gen_jax import sample
    with tempfile.TemporaryDirectory() as tmp:
        try:
            code = sample.main([f"--workdir={tiny_vae_run}", f"--out={os.path.join(tmp, out)}", f"--num={num}"])
        except SystemExit as e:  # argparse
            code = e.code
    valid_name = out.endswith(".npz") and out[:-4].isalpha() and out.isascii()
    if num <= 0 or not out.endswith(".npz"):
        assert code == 2
    elif valid_name:
        assert code == 0
    else:  # an odd but .npz name: written or refused, never a traceback
        assert code in (0, 2)


PIL_MODES = ["L", "RGB", "RGBA", "LA", "P", "I;16", "1", "I", "F"]


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(modes=st.lists(st.sampled_from(PIL_MODES), min_size=2, max_size=4),
       size=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_any_png_folder_loads_in_range_or_is_a_data_error(modes, size, seed):
    from PIL import Image
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        for i, mode in enumerate(modes):
            folder = os.path.join(tmp, f"class{i % 2}")
            os.makedirs(folder, exist_ok=True)
            for j in range(3):
                if mode in ("I;16", "I"):
                    im = Image.fromarray(rng.integers(0, 65535, (size, size), dtype=np.uint16))
                elif mode == "F":
                    im = Image.fromarray(rng.uniform(size=(size, size)).astype(np.float32))
                else:
                    im = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).convert(mode)
                try:
                    im.save(os.path.join(folder, f"{j}.png"))
                except OSError:  # a mode PNG cannot hold
                    im.convert("RGB").save(os.path.join(folder, f"{j}.png"))
        try:
            ds = sources.load(f"folder:{tmp}")
        except UserError:
            return
    assert ds.train_images.dtype == np.float32 and ds.train_images.shape[1:3] == (size, size)
    assert ds.train_images.shape[-1] in (1, 3)
    assert 0.0 <= ds.train_images.min() and ds.train_images.max() <= 1.0


@pytest.mark.slow
@settings(max_examples=3, deadline=None, derandomize=True, database=None)
@given(latent=st.integers(1, 4), hidden=st.lists(st.integers(1, 12), min_size=1, max_size=2),
       batch=st.integers(1, 8), side=st.integers(2, 8), channels=st.sampled_from([1, 3]))
def test_small_vae_configs_init_and_step_finitely(latent, hidden, batch, side, channels):
    config = config_lib.finalize(config_lib.override(config_lib.vae_config(), {
        "model.latent_dim": latent, "model.hidden_dims": tuple(hidden), "data.batch_size": batch}))
    dataset = _dataset(side, side, channels)
    task = tasks.build(config, dataset)
    state = task.init_state(jax.random.key(0))
    step = steps.guard_nonfinite(task.train_step, mode="stop")
    batch_ = {"image": jnp.asarray(dataset.train_images[:batch]), "label": jnp.asarray(dataset.train_labels[:batch])}
    mapped = jax.jit(jax.vmap(lambda c, b: step(c, b, jax.random.key(1), 0), axis_name="batch"))  # one device
    (state, health), metrics = mapped(jax.tree.map(lambda x: x[None], (state, steps.init_health())),
                                      jax.tree.map(lambda x: x[None], batch_))
    assert bool(metrics["_ok"][0]) and int(health["first_bad_step"][0]) == -1
