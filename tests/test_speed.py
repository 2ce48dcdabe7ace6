"""benchmarks/speed.py without timing anything: what it reads back from a run, the rows -> docs/speed.md
report, and that every benchmarked config loads with the benchmark's overrides."""

import json
import os
import sys

import pytest

# The benchmarks package lives at the repo root, which plain `pytest` does not put on sys.path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import speed  # noqa: E402
from gen_jax import config as config_lib  # noqa: E402

CPU = {"cpu": "Test CPU", "cores": 2, "gpu": None, "jax": "0.0", "torch": "0.0", "device_kind": "cpu"}


def _row(run, model, side, round_, ips, quick=False, machine=CPU, **extra):
    return {"run": run, "commit": "abc1234", "command": "python benchmarks/speed.py", "quick": quick,
            "machine": machine, "date": "2030-01-02T03:04:05", "kind": "throughput", "model": model, "side": side,
            "round": round_, "images_per_sec": ips, "first_step_seconds": 2.0, "peak_rss_mb": 500.0,
            "batch": 64, **extra}


def _full_run(run="20300102-030405", machine=CPU):
    rows = [{**_row(run, None, None, None, None, machine=machine), "kind": "matmul_peak",
             "matmul_flops_per_sec": 100e9}]
    for round_, (jax_ips, eager, compiled) in enumerate([(120.0, 100.0, 80.0), (150.0, 100.0, 100.0)], 1):
        rows += [_row(run, "dcgan", "gen_jax", round_, jax_ips, machine=machine, devices=2,
                      achieved_flops_per_sec=jax_ips / 64 * 40e9, matmul_flops_per_sec=100e9),
                 _row(run, "dcgan", "torch_eager", round_, eager, machine=machine),
                 _row(run, "dcgan", "torch_compile", round_, compiled, machine=machine),
                 _row(run, "cyclegan", "gen_jax", round_, 50.0, machine=machine)]
    return rows


def _line(doc, model):
    return next(line for line in doc.splitlines() if line.startswith(f"| {model} |"))


def test_parse_metrics_times_the_intervals_after_the_first_log():
    lines = [json.dumps({"step": 20, "loss": 1.0, "images_per_sec": 50.0, "startup_seconds": 9.5}),
             json.dumps({"step": 40, "loss": 0.9, "images_per_sec": 100.0}), "",
             json.dumps({"step": 60, "loss": 0.8, "images_per_sec": 300.0}),
             json.dumps({"step": 60, "eval/loss": 0.7})]
    got = speed.parse_metrics(lines)
    assert got["startup_seconds"] == 9.5
    assert got["images_per_sec"] == pytest.approx(150.0)  # 2 equal intervals: total images / total time
    assert got["images_per_sec_logged"] == [50.0, 100.0, 300.0]


def test_parse_metrics_when_the_first_call_ends_on_a_log_step():
    """Then the first row has the start-up and no throughput (its timer had just started); still the warm-up."""
    lines = [json.dumps({"step": 20, "startup_seconds": 3.0}), json.dumps({"step": 40, "images_per_sec": 80.0}),
             json.dumps({"step": 60, "images_per_sec": 80.0})]
    got = speed.parse_metrics(lines)
    assert got["startup_seconds"] == 3.0 and got["images_per_sec"] == pytest.approx(80.0)


def test_parse_metrics_needs_a_timed_interval():
    with pytest.raises(ValueError, match="images_per_sec"):
        speed.parse_metrics([json.dumps({"step": 5, "images_per_sec": 7.0, "startup_seconds": 1.0}),
                             json.dumps({"step": 5, "eval/loss": 1.0})])


def test_report_medians_spreads_and_per_round_ratios():
    doc = speed.report(_full_run())
    dcgan = _line(doc, "dcgan").split(" | ")
    assert dcgan[2:5] == ["100 [100–100]", "90 [80–100]", "135 [120–150]"]  # eager, compile, trainer
    assert dcgan[5] == "1.35x [1.20x–1.50x]"  # trainer / eager, per round
    assert dcgan[6] == "1.50x [1.50x–1.50x]"  # trainer / compile: 120/80 and 150/100
    assert "84.4 G (84%)" in dcgan[9]  # median of 75 and 93.75 GFLOP/s against a 100 GFLOP/s peak
    assert dcgan[10] == "2 |" and _line(doc, "cyclegan").endswith("| — |")  # the trainer's devices, if recorded
    cyclegan = _line(doc, "cyclegan")
    assert "| — | — | 50 [50–50] | — | — |" in cyclegan  # no PyTorch reference: empty torch columns
    assert "commit `abc1234`" in doc and "`python benchmarks/speed.py`" in doc
    assert "No GPU row exists yet" in doc


def test_report_ignores_quick_rows_and_older_runs():
    old = [_row("20290101-000000", "dcgan", "gen_jax", 1, 1.0)]
    quick = [_row("20310101-000000", "dcgan", side, 1, 9999.0, quick=True) for side in speed.SIDES]
    doc = speed.report(old + _full_run() + quick)
    assert "9,999" not in doc and "| dcgan | 64 | 100 [100–100] |" in doc
    assert "| dcgan | 64 |" not in speed.report(quick)  # quick rows alone make no table


def test_report_takes_each_models_latest_run():
    """A later run of some models replaces their lines and keeps the other models' lines of earlier runs."""
    later = [_row("20310101-000000", "dcgan", side, 1, 7000.0) for side in speed.SIDES]
    doc = speed.report(_full_run() + later)
    assert _line(doc, "dcgan").startswith("| dcgan | 64 | 7,000 ")
    assert _line(doc, "cyclegan").split("|")[5].strip() == "50 [50–50]"
    assert "dcgan: run 20310101-000000" in doc and "cyclegan: run 20300102-030405" in doc
    assert "1-2 round(s). " in doc and "2 round(s). " in speed.report(_full_run())  # per model, from its run


def test_report_has_a_table_per_machine_and_marks_failures():
    gpu = {**CPU, "gpu": "Test GPU, 999.0, 80 GiB", "device_kind": "Test GPU"}
    rows = _full_run() + _full_run("20300103-000000", gpu)
    rows.append({**_row("20300103-000000", "dcgan", "torch_compile", 3, None, machine=gpu), "error": "exit 1: boom"})
    del rows[-1]["images_per_sec"]
    doc = speed.report(rows)
    assert doc.count("| model | batch |") == 2
    assert "GPU: Test GPU, 999.0, 80 GiB" in doc and "No GPU row exists yet" not in doc
    assert "round 3 failed: exit 1: boom" in doc


def test_report_compile_cache_table_and_empty_report():
    rows = [{**_row("20300102-030405", "vae", "gen_jax", None, None), "kind": "compile_cache", "cache": start,
             "first_step_seconds": seconds} for start, seconds in (("cold", 8.0), ("warm", 2.0))]
    assert "| vae | 8.0 | 2.0 | 0.25 |" in speed.report(rows)
    assert "No full run has been committed yet" in speed.report([])


def test_report_comparison_tables_in_the_order_measured():
    rows = [{**_row("20300102-030405", "dcgan", "gen_jax", round_, ips), "kind": "cpu_devices", "cpu_devices": n,
             "first_step_seconds": float(n)} for round_, (n, ips) in enumerate([(1, 100.0), (2, 150.0), (1, 110.0),
                                                                                (2, 140.0)], 1)]
    rows += [{**_row("20300102-030405", "vae", "gen_jax", 1, ips), "kind": "precision", "compute_dtype": dtype}
             for dtype, ips in (("float32", 1000.0), ("bfloat16", 900.0))]
    doc = speed.report(rows)
    assert ("| model | 1 CPU device(s) (img/s) | 2 CPU device(s) (img/s) | 2 CPU device(s) / 1 CPU device(s) | "
            "time to first step (s): 1 CPU device(s) / 2 CPU device(s) |") in doc
    assert "| dcgan | 105 [100–110] | 145 [140–150] | 1.38x | 1.0 / 2.0 |" in doc
    assert "| vae | 1,000 | 900 | 0.90x | 2.0 / 2.0 |" in doc
    assert doc.index("Mixed precision") < doc.index("CPU devices (`train.cpu_devices`)")


def test_report_keeps_the_hand_written_part():
    doc = speed.report(_full_run(), speed.hand_written(f"old table\n{speed.HAND_WRITTEN}\n## Profile\nnotes\n"))
    assert doc.rstrip().endswith(f"{speed.HAND_WRITTEN}\n## Profile\nnotes")
    assert "old table" not in doc
    assert speed.report([]).rstrip().endswith(speed.HAND_WRITTEN)


@pytest.mark.parametrize("name", list(speed.MODELS))
def test_benchmark_overrides_load(name):
    """Every model's overrides name real config keys, and a run logs on whole compiled calls."""
    model = speed.MODELS[name]
    log_every, intervals = speed._steps(model, type("Args", (), {"quick": False, "steps": 0})())
    config = config_lib.finalize(config_lib.load(os.path.join(speed.ROOT, "configs", f"{model.config}.py"),
                                                 speed._overrides(model, speed.MNIST, log_every, intervals)))
    assert config.train.steps == log_every * (1 + intervals)
    assert log_every % config.train.steps_per_call == 0
    assert config.data.source == model.source.format(mnist="../shared/data/mnist")


def test_pinned_benchmark_keeps_one_cpu_device_whatever_the_config_asks():
    """benchmarks.pin_to_core: one core, one device, even for a config with train.cpu_devices=2."""
    import subprocess
    script = ("import benchmarks; benchmarks.pin_to_core(0)\n"
              "from gen_jax.parallel import use_cpu_devices; use_cpu_devices(2)\n"
              "import jax, os; print(jax.local_device_count(), sorted(os.sched_getaffinity(0)))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-c", script], cwd=speed.ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "[0]"]


PROFILE_SCRIPT = """
import json, sys, tempfile
from benchmarks import step_profile   # turns XLA:CPU's per-operation trace events on, before JAX starts
import jax, jax.numpy as jnp
f = jax.jit(lambda a, b: jnp.tanh(a @ b) @ b)
a = b = jnp.ones((64, 64))
f(a, b).block_until_ready()
trace = tempfile.mkdtemp()
jax.profiler.start_trace(trace)
for _ in range(20):
    f(a, b).block_until_ready()
jax.profiler.stop_trace()
print(json.dumps(step_profile.per_step_times(trace, 20)))
"""


def test_step_profile_finds_each_operation_of_a_call_once_per_call():
    import subprocess

    from benchmarks.step_profile import group
    done = subprocess.run([sys.executable, "-c", PROFILE_SCRIPT], cwd=speed.ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-2000:]
    times = json.loads(done.stdout.strip().splitlines()[-1])
    matmuls = [us for name, us in times.items() if group(name) in ("YNNPACK fusions", "dots (Eigen)")]
    assert len(matmuls) >= 2 and all(us > 0 for us in matmuls), times  # the two matmuls, each timed


def test_rows_name_the_command_without_where_their_rows_went():
    assert (speed.recorded_command(["--models=vae,gan", "--rounds=2", "--out=/somewhere/rows.jsonl"])
            == "python benchmarks/speed.py --models=vae,gan --rounds=2")
    assert speed.recorded_command(["--out", "/somewhere/rows.jsonl", "--quick"]) == "python benchmarks/speed.py --quick"
    assert speed.recorded_command([]) == "python benchmarks/speed.py"


@pytest.mark.parametrize("lhs, rhs, dims", [
    ((3, 5), (5, 4), (((1,), (0,)), ((), ()))),          # x @ w
    ((6, 5), (6, 4), (((0,), (0,)), ((), ()))),          # a weight gradient: x^T g
    ((3, 4), (5, 4), (((1,), (1,)), ((), ()))),          # an input gradient: g w^T
    ((2, 3, 5), (2, 4, 5), (((2,), (2,)), ((0,), (0,)))),  # batched
])
def test_einsum_spec_computes_the_dot_general(lhs, rhs, dims):
    import jax
    import numpy as np
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(lhs, np.float32), rng.standard_normal(rhs, np.float32)
    want = np.asarray(jax.lax.dot_general(a, b, dims))
    np.testing.assert_allclose(np.einsum(speed.einsum_spec(len(lhs), len(rhs), dims), a, b), want, rtol=1e-5)


def test_step_products_finds_every_matmul_of_a_step_with_its_repeats():
    """Dots of the backward pass, of nested jits and of a scan body (once per iteration); convolutions too."""
    import jax
    import jax.numpy as jnp

    def loss(w, x):
        h = jax.jit(jnp.tanh)(x @ w)
        h, _ = jax.lax.scan(lambda c, _: (c @ w.T @ w, None), h, None, length=3)
        return jnp.sum(jax.lax.conv(h[None, None], w[None, None], (1, 1), "SAME"))

    w, x = jnp.ones((4, 4)), jnp.ones((2, 4))
    products = list(speed.step_products(jax.make_jaxpr(jax.grad(loss))(w, x).jaxpr))
    names = [p[0] for p in products]
    assert names.count("conv_general_dilated") >= 1
    # forward: x @ w, 3 x 2 in the scan; backward: dw and dx of each of those 7 (dx of x @ w is not needed)
    assert names.count("dot_general") == 1 + 3 * 2 + 1 + 3 * 2 * 2
    assert ("dot_general", (2, 4), (4, 4), (((1,), (0,)), ((), ()))) in products


def test_report_matmul_table_sets_the_ceiling_from_the_runs_steps():
    rows = _full_run()
    run = rows[0]["run"]
    for model, convolutions in (("dcgan", 0), ("cyclegan", 4)):
        rows.append({**_row(run, model, None, None, None), "kind": "dots", "dots": 12, "convolutions": convolutions,
                     "dot_flops_per_step": 3e8, "xla_dots_seconds": 0.12, "torch_dots_seconds": 0.2,
                     "xla_updates_seconds": 0.04})
    doc = speed.report(rows)
    # eager: 64 images at 100 img/s = 0.64 s a step, over 0.12 + 0.04 s of matmuls and updates: 4x; the
    # trainer's steps 64/120 and 64/150 s: median 0.48. At the run's 100 GFLOP/s matmul peak its 0.3 GFLOP of
    # matmuls take 3 ms: 0.64 / (0.003 + 0.04) = 14.88x
    assert "| dcgan | 12 | 0.30 | 120.00 / 200.00 | 40.00 | 480.00 | 640.00 | 4.00x | 14.88x |" in doc
    assert "| cyclegan | 12 |" not in doc  # its convolutions are not in the matmuls: no ceiling
    assert "The steps' matmuls alone" not in speed.report(_full_run())


def test_dots_child_times_every_matmul_and_update_of_the_vae_step(monkeypatch):
    """The MLP VAE on the 8x8 digits (64-256-128-2x20, decoder 20-128-256-64, batch 128): its 17 dots (6
    forward, 6 weight gradients, 5 input gradients: none for the data) and its one network's update."""
    monkeypatch.setitem(speed.MODELS, "digits_vae", speed.Model("vae", "vae", 20, source="digits"))
    args = type("Args", (), {"model": "digits_vae", "data": speed.MNIST, "log_every": 20, "intervals": 1,
                             "quick": True, "threads": 1})()
    row = speed.child_dots(args)
    layers = 64 * 256 + 256 * 128 + 128 * 40 + 20 * 128 + 128 * 256 + 256 * 64
    assert (row["dots"], row["convolutions"], row["networks"]) == (17, 0, 1)
    assert row["dot_flops_per_step"] == 2 * 128 * (3 * layers - 64 * 256)
    assert row["xla_dots_seconds"] > 0 and row["xla_updates_seconds"] > 0
    import importlib.util
    assert row.get("torch_dots_seconds", 0) > 0 or importlib.util.find_spec("torch") is None
