"""What bfloat16 compute (`train.compute_dtype`) costs in results: a config trained on MNIST in float32 and in
bfloat16 for the same steps and seeds, its final evaluation side by side (the conv VAE's test negative ELBO and
IWAE NLL, in nats).

    python benchmarks/precision_cost.py --config=conv_vae --steps=2000 --seeds=0,1 [--cpu=1]
    python benchmarks/precision_cost.py --report

The GAN side (FID) comes from `benchmarks/gan_recipes.py --steps=N --set train.compute_dtype="'bfloat16'"`,
whose rows live in gan_recipes_results.jsonl; --report tables both. Rows go to precision_results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import benchmarks  # noqa: E402  (no JAX: --cpu must pin the process before JAX starts)

RESULTS = os.path.join(ROOT, "benchmarks", "precision_results.jsonl")
GAN_RESULTS = os.path.join(ROOT, "benchmarks", "gan_recipes_results.jsonl")
MNIST = "idx:../shared/data/mnist"
DTYPES = ("float32", "bfloat16")
# metric -> (what it is, lower is better)
VAE_METRICS = {"neg_elbo": "test negative ELBO (nats, 10,000 images)",
               "iwae_nll": "IWAE NLL, k=1000 (nats, 200 random test images)"}
GAN_METRICS = {"fid": "FID (10,000 samples, LeNet features)", "precision": "precision", "recall": "recall"}


def run(config_name: str, dtype: str, seed: int, steps: int, cores: int) -> dict:
    """Trains configs/CONFIG.py on MNIST for `steps` steps computing in `dtype`; its final evaluation as a row."""
    import jax
    from gen_jax import config as config_lib
    from gen_jax.training.loop import train

    config = config_lib.load(os.path.join(ROOT, "configs", f"{config_name}.py"),
                             {"data.source": MNIST, "seed": seed, "train.compute_dtype": dtype,
                              "train.steps": steps, "train.progress": False})
    code, started = benchmarks.commit(), time.perf_counter()
    summary = train(config, tempfile.mkdtemp(prefix=f"precision_{config_name}_{dtype}_"))
    return {"config": config_name, "compute_dtype": dtype, "seed": seed, "steps": summary["step"],
            "cores": cores, "commit": code, "backend": jax.default_backend(), **summary["eval"],
            "wall_s": round(time.perf_counter() - started)}


def _cell(values: list) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f} ({' / '.join(f'{v:.2f}' for v in values)})"


def _table(rows: list, label: str, metrics: dict, dtype_of) -> list[str]:
    out = []
    groups: dict = {}
    for r in rows:
        groups.setdefault((label(r), r["steps"]), {}).setdefault(dtype_of(r), []).append(r)
    for (name, steps), by_dtype in groups.items():
        if set(by_dtype) != set(DTYPES):
            continue
        for metric, what in metrics.items():
            cells = [_cell([r[metric] for r in sorted(by_dtype[d], key=lambda r: r["seed"])]) for d in DTYPES]
            seeds = ", ".join(str(r["seed"]) for r in sorted(by_dtype["float32"], key=lambda r: r["seed"]))
            commits = ", ".join(sorted({r["commit"] for d in DTYPES for r in by_dtype[d]}))
            out.append(f"| {name} | {steps} | {seeds} | {what} | {cells[0]} | {cells[1]} | {commits} |")
    return out


def report() -> str:
    """Float32 against bfloat16 at equal steps: this file's rows and gan_recipes' fixed-step rows."""
    load = lambda path: [json.loads(line) for line in open(path) if line.strip()] if os.path.exists(path) else []
    gan_rows = [r for r in load(GAN_RESULTS) if r.get("fixed_steps") and
                set(r["overrides"]) <= {"train.compute_dtype"}]
    lines = ["| config | steps | seeds | metric | float32 | bfloat16 | commit |", "|---" * 7 + "|"]
    lines += _table(load(RESULTS), lambda r: r["config"], VAE_METRICS, lambda r: r["compute_dtype"])
    lines += _table(gan_rows, lambda r: r["recipe"], GAN_METRICS,
                    lambda r: r["overrides"].get("train.compute_dtype", "float32"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conv_vae")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core with one XLA thread")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report())
        return
    if args.cpu is not None:
        benchmarks.pin_to_core(args.cpu)
    for seed in map(int, args.seeds.split(",")):
        for dtype in DTYPES:  # interleaved, so a machine that slows down part-way hits both alike
            row = run(args.config, dtype, seed, args.steps, 1 if args.cpu is not None else os.cpu_count())
            print(json.dumps(row), flush=True)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
