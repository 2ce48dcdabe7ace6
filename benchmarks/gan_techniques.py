"""The seed's GAN training techniques, each switched on alone on the same base, several seeds each.

  python benchmarks/gan_techniques.py --seeds=0,1,2 [--techniques=base,feature_matching,...] [--steps=3000]
  python benchmarks/gan_techniques.py --report          # the markdown table of docs/gans.md

Base: configs/gan.py with the discriminator's spectral norm off, i.e. the seed's MLP GAN exactly (Adam 2e-4,
b1 0.5, batch 64, BCE with the non-saturating generator loss, the EMA generator for sampling), trained on MNIST
for --steps generator steps. Each run's 10,000 samples are scored by benchmarks/gan_mnist.py's judge (the LeNet
classifier's feature space against the MNIST test set). Rows go to benchmarks/gan_techniques_results.jsonl.
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

import benchmarks  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "gan_techniques_results.jsonl")
BASE = {"discriminator.spectral_norm": False}
TECHNIQUES = {  # the seed's list ("which techniques improve GAN training?"), one switch each
    "base": {},
    "feature_matching": {"gan.feature_matching": True},
    "minibatch_discrimination": {"discriminator.minibatch_discrimination": 32},
    "historical_averaging": {"gan.historical_averaging": 1e-3},
    "label_smoothing": {"gan.real_label": 0.9},
    "spectral_norm": {"discriminator.spectral_norm": True},
}
METRICS = ("fid", "precision", "recall", "classes_covered", "class_kl")


def run(technique: str, seed: int, steps: int, judge) -> dict:
    from benchmarks import gan_mnist
    overrides = {**BASE, **TECHNIQUES[technique], "seed": seed}
    started = time.perf_counter()
    config = gan_mnist._config("gan", overrides.items())
    images, labels, ips = gan_mnist.run_jax(config, steps, tempfile.mkdtemp(prefix=f"gan_technique_{technique}_"))
    return {"technique": technique, "seed": seed, "steps": steps, "overrides": overrides,
            "commit": benchmarks.commit(), "images_per_sec": round(ips, 1),
            "wall_s": round(time.perf_counter() - started), **judge.score(images, labels)}


def report(path: str = RESULTS) -> str:
    """Mean and sample std over seeds per technique, with each seed's FID, in the order of TECHNIQUES."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = ["| technique (alone, on the seed's MLP GAN) | seeds | FID mean +- std (each seed) | precision | recall | "
           "classes covered | class KL | commit |", "|---" * 8 + "|"]
    for technique in TECHNIQUES:
        mine = sorted((r for r in rows if r["technique"] == technique), key=lambda r: r["seed"])
        if not mine:
            continue

        def stat(key, fmt):
            values = [r[key] for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{format(statistics.mean(values), fmt)} +- {format(spread, fmt)}"

        each = " / ".join(f"{r['fid']:.1f}" for r in mine)
        commits = ", ".join(sorted({r["commit"] for r in mine}))
        out.append(f"| {technique} | {', '.join(str(r['seed']) for r in mine)} | {stat('fid', '.1f')} ({each}) | "
                   f"{stat('precision', '.3f')} | {stat('recall', '.3f')} | {stat('classes_covered', '.1f')} | "
                   f"{stat('class_kl', '.3f')} | {commits} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--techniques", default=",".join(TECHNIQUES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--classifier", default=os.path.join(ROOT, "runs", "classifier_mnist"))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report())
        return
    from benchmarks import gan_mnist
    from gen_jax import data
    judge = gan_mnist.Judge(args.classifier, data.load(f"idx:{gan_mnist.MNIST}"))
    for seed in map(int, args.seeds.split(",")):
        for technique in args.techniques.split(","):
            row = run(technique, seed, args.steps, judge)
            print(json.dumps(row), flush=True)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
