"""CycleGAN on the one trainer: one step updates all four networks independently, N devices equal one, a
resumed run equals an uninterrupted one, the default pair is learned, and `python -m gen_jax.translate`
translates a folder of PNGs and reports bad input in one line."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
from PIL import Image

from gen_jax import config as config_lib
from gen_jax import translate
from gen_jax.data import domains
from gen_jax.training import tasks
from gen_jax.training.loop import train
from gen_jax.training.runs import restore_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # four networks compile in each test: minutes on 2 CPU cores
TINY = {"generator.channels": 4, "generator.num_blocks": 1, "discriminator.channels": 4,
        "cyclegan.pool_size": 4, "data.batch_size": 8, "train.steps": 6, "train.log_every": 3,
        "train.sample_every": 6, "train.checkpoint_every": 3, "train.progress": False}


def tiny_config(**overrides):
    return config_lib.override(config_lib.cyclegan_config(), {**TINY, **overrides})


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def pair():
    return domains.load("style:digits")


def test_one_step_updates_each_network_with_its_own_optimizer(pair):
    config = config_lib.finalize(tiny_config())
    task = tasks.build(config, pair)
    state = jax.jit(task.init_state)(jax.random.key(0))
    step = jax.jit(tasks.steps.make_cyclegan_step(*(task.modules[n] for n in ("g_ab", "g_ba", "d_a", "d_b")),
                                                  axis_name=None))
    batch = {"image_a": pair.train_a[:8], "image_b": pair.train_b[:8]}
    new, metrics = step(state, batch, jax.random.key(1))
    assert set(metrics) == {"g_loss", "cycle", "identity", "d_a_loss", "d_b_loss"}
    for name in ("g_ab", "g_ba", "d_a", "d_b"):
        assert int(new[name].step) == 1
        assert not all(np.array_equal(a, b) for a, b in zip(leaves(state[name].params), leaves(new[name].params)))
        counts = optax.tree_utils.tree_get_all_with_path(new[name].opt_state, "count")
        assert counts and all(int(count) == 1 for _, count in counts)
    assert int(new.pools["d_a"].count) == 4 and int(new.pools["d_b"].count) == 4  # pools filled (size 4)
    for frozen in ("g_ab", "d_b"):  # a zero learning rate freezes that network alone
        still = state.with_network(frozen, state[frozen].replace(
            tx=optax.sgd(0.0), opt_state=optax.sgd(0.0).init(state[frozen].params)))
        after, _ = jax.jit(tasks.steps.make_cyclegan_step(
            *(task.modules[n] for n in ("g_ab", "g_ba", "d_a", "d_b")), axis_name=None))(still, batch,
                                                                                         jax.random.key(1))
        for name in ("g_ab", "g_ba", "d_a", "d_b"):
            same = all(np.array_equal(a, b) for a, b in zip(leaves(still[name].params), leaves(after[name].params)))
            assert same == (name == frozen), name


_N_DEVICES = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES}"
    import jax, numpy as np
    from gen_jax import config as config_lib
    from gen_jax.data import domains
    from gen_jax.parallel import replicate
    from gen_jax.training import steps, tasks
    pair = domains.load("style:digits")
    config = config_lib.finalize(config_lib.override(config_lib.cyclegan_config(), TINY))
    task = tasks.build(config, pair)
    state = jax.jit(task.init_state)(jax.random.key(0))
    modules = [task.modules[n] for n in ("g_ab", "g_ba", "d_a", "d_b")]
    batch = {"image_a": pair.train_a[:8], "image_b": pair.train_b[:8]}
    one, m1 = jax.jit(steps.make_cyclegan_step(*modules, axis_name=None))(state, batch, jax.random.key(1))
    step = jax.pmap(steps.make_cyclegan_step(*modules, axis_name="batch"), axis_name="batch", in_axes=(0, 0, None))
    two, m2 = step(replicate(state, jax.local_devices(), "batch"),
                   {k: v.reshape(DEVICES, 8 // DEVICES, *v.shape[1:]) for k, v in batch.items()}, jax.random.key(1))
    first = lambda tree: jax.tree.map(lambda x: np.asarray(x)[0], tree)
    # each leaf's largest difference, relative to its largest value where that is above 1 (Adam's first moment
    # of a kernel reaches ~16, where float32 round-off from the order of the sums is ~1e-4 absolute)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x, float) - np.asarray(y, float)))
                                  / max(1.0, float(np.max(np.abs(np.asarray(x, float))))))
                            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(diff(one.networks, first(two.networks)), diff(one.pools, first(two.pools)), diff(m1, first(m2)))
""")


@pytest.mark.parametrize("devices", [2, 4])
def test_n_devices_equal_one_device(devices):
    """One step on 2 or 4 devices (8 images split between them) equals the step on 1 device: all four networks,
    their optimizer states and both image pools, which see the global batch of fakes on every device. (Later
    steps drift apart by round-off that instance norm over 2x2 maps amplifies, whatever the device count.)"""
    script = f"TINY = {TINY!r}\nDEVICES = {devices}\n" + _N_DEVICES
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    networks, pools, metrics = map(float, out.stdout.split())
    # float32 round-off: the sums over devices run in another order (and the CPU's kernels set how much)
    assert networks < 1e-4 and pools < 1e-5 and metrics < 1e-5, out.stdout


def test_resume_equals_uninterrupted(tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    constant = {f"optim_{n}.schedule": "constant" for n in "gd"}  # a schedule over train.steps would differ
    train(tiny_config(**constant, **{"train.steps": 4}), straight)
    train(tiny_config(**constant, **{"train.steps": 2}), resumed)
    train(tiny_config(**constant, **{"train.steps": 4}), resumed)
    for a, b in zip(leaves(restore_run(straight).state), leaves(restore_run(resumed).state)):
        np.testing.assert_array_equal(a, b)


def test_steps_per_call_equal_one_step_per_call(tmp_path):
    """Four steps scanned in one compiled call end where four calls of one step do: all four networks (their
    convolutions and transposed convolutions are loop-safe on CPU), optimizer states and image pools."""
    constant = {f"optim_{n}.schedule": "constant" for n in "gd"}
    states = []
    for steps_per_call in (1, 4):
        workdir = str(tmp_path / str(steps_per_call))
        train(tiny_config(**constant, **{"train.steps": 4, "train.steps_per_call": steps_per_call,
                                         "train.log_every": 4, "train.checkpoint_every": 4}), workdir)
        states.append(leaves(restore_run(workdir).state))
    for a, b in zip(*states, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cyclegan"))
    train(tiny_config(**{"train.steps": 6}), workdir)
    return workdir


def _write_pngs(folder, images):
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(os.path.join(folder, f"digit{i}.png"))


def test_translate_cli_writes_one_png_per_input(trained_run, pair, tmp_path, capsys):
    _write_pngs(str(tmp_path / "in"), pair.test_a[:5])
    out = str(tmp_path / "out")
    assert translate.main([f"--workdir={trained_run}", "--direction=a2b", f"--input={tmp_path / 'in'}",
                           f"--output={out}"]) == 0
    assert sorted(os.listdir(out)) == [f"digit{i}.png" for i in range(5)]
    written = np.asarray(Image.open(os.path.join(out, "digit0.png")))
    run = restore_run(trained_run)
    expected = translate.translation.translate_all(run.task.modules["g_ab"], run.state["g_ab"].params,
                                                   pair.test_a[:1].round(3))
    assert written.shape == (8, 8) and np.abs(written / 255.0 - expected[0, ..., 0]).max() < 0.02


@pytest.mark.parametrize("setup, message", [
    (lambda d: _write_pngs(d, np.zeros((2, 9, 9, 1), np.float32)), r"takes images of 8x8 with 1 channel"),
    (lambda d: os.makedirs(d), r"holds no PNG or JPEG images"),
    (lambda d: (os.makedirs(d), open(os.path.join(d, "x.png"), "wb").write(b"not a png")), r"unreadable image"),
])
def test_translate_cli_bad_input_is_one_line(trained_run, tmp_path, capsys, setup, message):
    import re
    folder = str(tmp_path / "in")
    setup(folder)
    assert translate.main([f"--workdir={trained_run}", f"--input={folder}", f"--output={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(message, err[0]), err


def test_translate_cli_rejects_a_bad_direction_and_a_missing_run(trained_run, tmp_path, capsys):
    assert translate.main([f"--workdir={trained_run}", "--direction=up", "--input=x", "--output=y"]) == 2
    assert translate.main([f"--workdir={tmp_path / 'none'}", "--input=x", "--output=y"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)


def test_evaluate_with_another_source_reads_it_as_two_domains(trained_run, capsys):
    """--data on a CycleGAN run loads two domains, as training does; a run that cannot sample says so."""
    from gen_jax import evaluate
    run = restore_run(trained_run, source="style:digits")
    assert run.dataset.shape_a == (8, 8, 1) and run.config.data.source == "style:digits"
    assert evaluate.main([f"--workdir={trained_run}", "--data=style:digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot sample" in err[0], err


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """configs/cyclegan.py, shortened to 600 steps: (its workdir, its final evaluation)."""
    workdir = str(tmp_path_factory.mktemp("default_pair"))
    config = config_lib.load(os.path.join(ROOT, "configs", "cyclegan.py"),
                             {"train.steps": 600, "train.progress": False})
    return workdir, train(config, workdir)["eval"]


def test_default_pair_is_learned(default_run):
    """A -> B translations of held-out digits land far closer to their true style than the untranslated digits,
    and cycles come back close to their inputs."""
    workdir, results = default_run
    assert results["a2b_error"] < 0.5 * results["identity_error"], results
    assert results["cycle_a_error"] < 0.5 * results["identity_error"], results
    assert json.load(open(os.path.join(workdir, "eval.json")))["a2b_error"] == results["a2b_error"]


@pytest.fixture(scope="module")
def translations_and_judges(default_run, digits_classifier_dir):
    """The default run's test translations both ways, a digits classifier and one trained on real B images
    (which must read B's test images well: B keeps the digit, so a translation can)."""
    from gen_jax import data
    from gen_jax.evaluation import domain_classifier
    from gen_jax.families import translation
    run = restore_run(default_run[0])
    pair = run.dataset
    judge_b = domain_classifier.train(data.Dataset("style half", pair.train_b, pair.train_b_labels, pair.test_b,
                                                   pair.test_labels, 10), epochs=20, progress=False)
    assert judge_b.spec["test_accuracy"] > 0.7
    b2a = translation.translate_all(run.task.modules["g_ba"], run.state["g_ba"].params, pair.test_b)
    a2b = translation.translate_all(run.task.modules["g_ab"], run.state["g_ab"].params, pair.test_a)
    return b2a, a2b, pair.test_labels, domain_classifier.load(digits_classifier_dir), judge_b


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="on the 8x8 style pair CycleGAN relabels digits (docs/translation.md)")
def test_default_pair_keeps_the_digit(translations_and_judges):
    """B -> A translations read as their digit by a digits classifier, A -> B ones by a classifier of real B
    images. Known to fail (both read below chance): strict, so a change that fixes it has to say so."""
    from gen_jax.evaluation import domain_classifier
    b2a, a2b, labels, judge_a, judge_b = translations_and_judges
    assert domain_classifier.accuracy(judge_a, b2a, labels) > 0.5
    assert domain_classifier.accuracy(judge_b, a2b, labels) > 0.5
