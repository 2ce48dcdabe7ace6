"""The recommended GAN recipes on MNIST within a time budget, several seeds, and each recipe with one component
removed in turn (the ablation).

  python benchmarks/gan_recipes.py --recipes=gan_recommended,cgan_recommended --seeds=0,1,2 --minutes=30
  python benchmarks/gan_recipes.py --recipes=gan_recommended --ablate --minutes=10
  python benchmarks/gan_recipes.py --report          # the markdown tables of docs/gans.md

Each run trains configs/RECIPE.py on MNIST through train.py's loop with `train.time_budget=MINUTES`, then draws
10,000 samples from its EMA generator and scores them with benchmarks/gan_mnist.py's judge (the LeNet
classifier's feature space against the MNIST test set); conditional recipes also get the classification
accuracy score with --cas (the judge's architecture trained on 60,000 samples, tested on real MNIST test
images). Every row also scores the raw generator weights.

--ablate trains the full recipe and each variant of ABLATIONS (one component removed) for the same budget, first
seed only; the EMA's row is the full recipe's run scored with its raw generator weights (the EMA never feeds
back into training, so that is exactly the run without it). `--cpu=N` pins the run to core N with one XLA
thread, so two runs can share the 2-core box without either getting more than one core (the row says so).
Rows go to benchmarks/gan_recipes_results.jsonl.
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

RESULTS = os.path.join(ROOT, "benchmarks", "gan_recipes_results.jsonl")
ABLATIONS = {  # each recipe component, removed alone: what the recipe falls back to
    "gan_recommended": {
        "no clusters (unconditional networks)": {"gan.clusters": 0, "discriminator.conditioning": "concat"},
        "seed's DCGAN networks (wider, BatchNorm eps 0.8 in D, dropout)": {
            "generator.base": 128, "generator.channels": (128, 64), "generator.bn_eps": 0.8,
            "discriminator.channels": (16, 32, 64, 128), "discriminator.norm": "batch",
            "discriminator.bn_eps": 0.8, "discriminator.dropout": 0.25},
        "no spectral norm": {"discriminator.spectral_norm": False},
        "bce (non-saturating) instead of hinge": {"gan.loss": "bce"},
        "Adam b1 0.9 (the default) instead of 0.5": {"optim_g.b1": 0.9, "optim_d.b1": 0.9},
    },
    "cgan_recommended": {
        "concatenated labels instead of projection": {"discriminator.conditioning": "concat"},
        "no spectral norm": {"discriminator.spectral_norm": False},
        "bce (non-saturating) instead of hinge": {"gan.loss": "bce"},
    },
}
NO_EMA = "no EMA generator (the full recipe's run, its raw weights)"  # the EMA does not feed back into training
SCORES = ("fid", "kid", "precision", "recall", "classes_covered", "class_kl", "label_accuracy", "cas")


def run(recipe: str, seed: int, minutes: float, overrides: dict, judge, cpu: int | None, eval_every: int,
        cas: bool, steps: int = 0) -> dict:
    """Trains configs/RECIPE.py with `overrides` for `minutes` (or exactly `steps` steps) on MNIST and scores its
    samples (a result row)."""
    import jax
    from benchmarks import commit, gan_mnist
    from gen_jax import config as config_lib, data
    from gen_jax.evaluation import sample_quality
    from gen_jax.training.loop import train

    config = config_lib.load(os.path.join(ROOT, "configs", f"{recipe}.py"), {**overrides, "seed": seed})
    config.data.source = f"idx:{gan_mnist.MNIST}"
    config.train.update(steps=steps or 10**7, time_budget=0.0 if steps else minutes, sample_every=10**7,
                        checkpoint_every=10**7, progress=False)
    config.eval.num_samples = 1000
    if eval_every:  # the FID curve: 1,000 samples in the judge's space every eval_every steps (metrics.jsonl)
        config.train.eval_every = eval_every
        config.eval.classifier_dir = judge.classifier_dir
    workdir, code = tempfile.mkdtemp(prefix=f"gan_recipe_{recipe}_"), commit()  # the code as it was at launch
    started = time.perf_counter()
    summary = train(config, workdir)
    images, labels, ips, _ = gan_mnist.jax_samples(workdir)
    raw_images, raw_labels, _, _ = gan_mnist.jax_samples(workdir, raw_weights=True)
    row = {"recipe": recipe, "seed": seed, "minutes": None if steps else minutes, "fixed_steps": steps,
           "overrides": overrides, "steps": summary["step"],
           "images_per_sec": round(ips, 1), "cores": 1 if cpu is not None else os.cpu_count(),
           "commit": code, "backend": jax.default_backend(), **judge.score(images, labels),
           "raw_weights": judge.score(raw_images, raw_labels)}
    if eval_every:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            evals = [r for r in map(json.loads, f) if "eval/fid" in r]
        row["fid_curve_1k"] = [[r["step"], round(r["eval/fid"], 2)] for r in evals]
    if cas and labels is not None:  # the classification accuracy score, on 60,000 samples as gen_jax.evaluate --cas
        from gen_jax.training.runs import restore_run
        restored = restore_run(workdir)
        many, many_labels = restored.task.sample(restored.state, jax.random.key(seed + 2), 60_000)
        spec = judge.classifier.spec
        settings = {k: v for k, v in spec.get("train", {}).items() if k in ("epochs", "batch_size", "learning_rate")}
        row.update(sample_quality.classification_accuracy_score(
            data.quantize(many), many_labels, judge.dataset, arch=spec.get("arch"), options=spec.get("options"),
            seed=seed, with_real=False, **settings))
    row["wall_s"] = round(time.perf_counter() - started)
    return row


def report(path: str = RESULTS) -> str:
    """Per recipe: the full recipe's seeds (mean +- std) and each ablation row, from the JSON lines in `path`."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = []
    for recipe in ABLATIONS:
        mine = [r for r in rows if r["recipe"] == recipe]
        if not mine:
            continue
        out += [f"\n**{recipe}**\n", "| variant | minutes x cores | seeds | steps | FID | KID | precision | recall | "
                "classes | class KL | label acc. | CAS | images/s | commit |", "|---" * 14 + "|"]
        groups: dict = {}
        for r in list(mine):
            if "ablation" in r and r["ablation"] == "full recipe":
                mine.append({**r, **r["raw_weights"], "ablation": NO_EMA})
        for r in mine:
            name = (r.get("ablation") or r.get("variant")
                    or (", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "full recipe"))
            budget = f"{r['minutes']:g}" if r["minutes"] else f"{r['fixed_steps']} steps"
            groups.setdefault((name, budget), []).append(r)  # seeds pinned to one core join a 2-core seed
        for (name, budget), group in groups.items():
            group.sort(key=lambda r: r["seed"])

            def stat(key, fmt):
                values = [r[key] for r in group if key in r]
                if not values:
                    return "-"
                if len(values) == 1:
                    return format(values[0], fmt)
                return f"{format(statistics.mean(values), fmt)} +- {format(statistics.stdev(values), fmt)}"

            each = " / ".join(f"{r['fid']:.1f}" for r in group)
            cores = "/".join(str(r["cores"]) for r in group)
            out.append(f"| {name} | {budget} x {cores} | {', '.join(str(r['seed']) for r in group)} | "
                       f"{stat('steps', '.0f')} | {stat('fid', '.2f')}{f' ({each})' if len(group) > 1 else ''} | "
                       f"{stat('kid', '.2f')} | {stat('precision', '.3f')} | {stat('recall', '.3f')} | "
                       f"{stat('classes_covered', '.0f')} | {stat('class_kl', '.4f')} | "
                       f"{stat('label_accuracy', '.3f')} | {stat('cas', '.4f')} | {stat('images_per_sec', '.0f')} | "
                       f"{', '.join(sorted({r['commit'] for r in group}))} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="gan_recommended")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--minutes", type=float, default=30.0, help="train.time_budget of each run")
    parser.add_argument("--steps", type=int, default=0, help=">0: train exactly this many steps instead (equal-step "
                        "comparisons, e.g. --set train.compute_dtype=\"'bfloat16'\")")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override (Python literal) for every run, e.g. --set gan.clusters=20; "
                             "such rows are variants, reported under their overrides")
    parser.add_argument("--ablate", action="store_true", help="each component removed in turn (first seed only)")
    parser.add_argument("--only", default="", help="--ablate: only the variants whose names contain one of these "
                        "comma-separated words ('full' for the full recipe), to split an ablation across cores")
    parser.add_argument("--eval_every", type=int, default=0, help=">0: FID of 1,000 samples every that many steps")
    parser.add_argument("--cas", action="store_true", help="conditional recipes: the classification accuracy score")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core with one XLA thread")
    parser.add_argument("--classifier", default=os.path.join(ROOT, "runs", "classifier_mnist"))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report())
        return
    if args.cpu is not None:
        benchmarks.pin_to_core(args.cpu)
    from benchmarks import gan_mnist
    from gen_jax import data
    judge = gan_mnist.Judge(args.classifier, data.load(f"idx:{gan_mnist.MNIST}"))
    import ast
    extra = {k: ast.literal_eval(v) for k, _, v in (item.partition("=") for item in args.set)}
    for recipe in args.recipes.split(","):
        variants = {"full recipe": {}}
        if args.ablate:
            variants = {"full recipe": {}, **ABLATIONS[recipe]}
            if args.only:
                variants = {name: o for name, o in variants.items() if any(w in name for w in args.only.split(","))}
        for seed in map(int, args.seeds.split(",")[:1] if args.ablate else args.seeds.split(",")):
            for name, overrides in variants.items():
                row = run(recipe, seed, args.minutes, {**extra, **overrides}, judge, args.cpu, args.eval_every,
                          args.cas, args.steps)
                if args.ablate:
                    row["ablation"] = name
                print(json.dumps(row), flush=True)
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
