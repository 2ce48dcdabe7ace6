"""Where the trainer's step time goes on XLA:CPU: every compiled operation's time per training step.

Trains configs/NAME.py (with benchmarks/speed.py's MNIST overrides for that model) under the JAX profiler with
XLA:CPU's per-operation trace events on, then sums each operation's time over the run and divides by the steps.
Operations that run once per step are grouped: dots (XLA's own, Eigen), YNNPACK fusions (XLA:CPU hands it
most dots, some with their bias-gradient reductions), collectives, copies, and XLA's other fusions (element-
wise work: activations, losses, the optimizer, the non-finite guard). Profiling slows the run; the split, not
the total, is the result. Two CPU threads can run independent operations at once, so the sum can exceed the
wall time per step.

  python benchmarks/step_profile.py --model=vae            # prints the table, appends a row to the results file
  python benchmarks/step_profile.py --model=gan --steps=1000
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import sys
import tempfile

# per-operation trace events must be on before JAX starts
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join("benchmarks", "step_profile_results.jsonl")
GROUPS = ("YNNPACK fusions", "dots (Eigen)", "collectives", "copies", "other fusions")


def group(name: str) -> str:
    """The group of an XLA:CPU operation, from its name in the trace."""
    if name.startswith("ynn_fusion"):
        return "YNNPACK fusions"
    if name.startswith("dot"):
        return "dots (Eigen)"
    if name.startswith(("all-reduce", "all-gather", "reduce-scatter", "collective")):
        return "collectives"
    if name.startswith("copy"):
        return "copies"
    return "other fusions"


def per_step_times(trace_dir: str, steps: int) -> dict:
    """{operation: microseconds per step} of the operations that ran once per step (within 10%) in a trace."""
    from jax._src.lib import _profile_data
    path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
    total, count = collections.Counter(), collections.Counter()
    for plane in _profile_data.ProfileData.from_file(path).planes:
        for line in plane.lines:
            if line.name == "python":  # Python frames, not compiled operations
                continue
            for event in line.events:
                total[event.name] += event.duration_ns
                count[event.name] += 1
    return {name: total[name] / 1e3 / steps for name in total
            if steps <= count[name] <= 1.1 * steps and not name.startswith(("while", "Thunk", "$"))
            and "::" not in name}  # C++ scopes (the compiler's passes) are not operations


def profile(model_name: str, steps: int, data_dir: str) -> dict:
    import jax

    from benchmarks import commit, speed
    from gen_jax import config as config_lib
    from gen_jax.training.loop import train
    model = speed.MODELS[model_name]
    log_every = steps // 2
    config = config_lib.load(os.path.join(ROOT, "configs", f"{model.config}.py"),
                             speed._overrides(model, data_dir, log_every, 1))
    workdir, trace_dir = tempfile.mkdtemp(prefix="profile_run_"), tempfile.mkdtemp(prefix="profile_trace_")
    try:
        jax.profiler.start_trace(trace_dir)
        train(config, workdir)
        jax.profiler.stop_trace()
        times = per_step_times(trace_dir, 2 * log_every)
    finally:
        shutil.rmtree(workdir, ignore_errors=True), shutil.rmtree(trace_dir, ignore_errors=True)
    groups = collections.Counter()
    for name, us in times.items():
        groups[group(name)] += us
    top = sorted(times.items(), key=lambda kv: -kv[1])[:15]
    return {"model": model_name, "steps": 2 * log_every, "batch": config.data.batch_size, "commit": commit(),
            "jax": jax.__version__, "devices": jax.local_device_count(),
            "us_per_step": round(sum(times.values()), 1),
            "groups_us": {g: round(groups[g], 1) for g in GROUPS},
            "top_us": {name: round(us, 1) for name, us in top}}


def table(row: dict) -> str:
    total = row["us_per_step"]
    lines = [f"{row['model']} (batch {row['batch']}, {row['steps']} steps, commit {row['commit']}): "
             f"{total / 1e3:.2f} ms of operations per step", "| group | us/step | share |", "|---|---:|---:|"]
    lines += [f"| {g} | {us:,.0f} | {us / total:.0%} |" for g, us in row["groups_us"].items()]
    lines += ["", "| operation | us/step |", "|---|---:|"]
    lines += [f"| {name} | {us:,.0f} |" for name, us in row["top_us"].items()]
    return "\n".join(lines)


def main(argv=None):
    from benchmarks import speed
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae", choices=sorted(speed.MODELS))
    parser.add_argument("--steps", type=int, default=2000, help="steps traced (the first call's compile aside)")
    parser.add_argument("--data", default=speed.MNIST, help="MNIST IDX folder, relative to the repository root")
    parser.add_argument("--out", default=RESULTS, help="append the row here ('' : print only)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    row = profile(args.model, args.steps, args.data)
    print(table(row))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
