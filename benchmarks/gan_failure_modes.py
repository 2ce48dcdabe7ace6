"""The seed's GAN failure modes, made visible on the MLP GAN (configs/gan.py, spectral norm off) on MNIST.

  python benchmarks/gan_failure_modes.py [--steps=3000] [--runs="NAME|..."]   # then docs/images/gan_failure_modes.png

- Vanishing generator gradients: the minimax (saturating) generator loss log(1 - D(G(z))) against the
  non-saturating -log D(G(z)), same everything else, with the config's D and with a strong D (10x its learning
  rate): the generator's gradient norm and D's accuracy on fakes over training (logged every 100 steps as
  g_grad_norm, d_fake_accuracy).
- Mode collapse: the classes the LeNet judge finds among 2,000 samples (eval.classifier_dir, every 250 steps),
  with Adam's b1 at PyTorch's default 0.9 against the config's 0.5.
Rows (one per run, the curves included) go to benchmarks/gan_failure_modes_results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import benchmarks  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "gan_failure_modes_results.jsonl")
PICTURE = os.path.join(ROOT, "docs", "images", "gan_failure_modes.png")
RUNS = {  # name: overrides of configs/gan.py (besides spectral norm off)
    "non-saturating (b1 0.5)": {},
    "saturating (b1 0.5)": {"gan.saturating": True},
    "non-saturating, strong D (lr x10)": {"optim_d.learning_rate": 2e-3},
    "saturating, strong D (lr x10)": {"gan.saturating": True, "optim_d.learning_rate": 2e-3},
    "non-saturating, Adam b1 0.9": {"optim_g.b1": 0.9, "optim_d.b1": 0.9},
}
CURVES = ("g_grad_norm", "d_grad_norm", "d_fake_accuracy", "d_real_accuracy", "eval/classes_covered", "eval/fid")


def train_run(name: str, steps: int, classifier_dir: str) -> dict:
    from gen_jax import config as config_lib
    from gen_jax.training.loop import train
    from benchmarks.gan_mnist import MNIST
    overrides = {"discriminator.spectral_norm": False, **RUNS[name], "data.source": f"idx:{MNIST}",
                 "train.steps": steps, "train.log_every": 100, "train.eval_every": 250, "train.sample_every": steps,
                 "train.checkpoint_every": steps, "train.progress": False, "eval.classifier_dir": classifier_dir,
                 "eval.num_samples": 2000}
    workdir = tempfile.mkdtemp(prefix="gan_failure_mode_")
    train(config_lib.load(os.path.join(ROOT, "configs", "gan.py"), overrides), workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    curves = {key: [[r["step"], r[key]] for r in rows if key in r] for key in CURVES}
    return {"run": name, "overrides": {k: v for k, v in overrides.items() if k in RUNS[name] or k.startswith("disc")},
            "steps": steps, "commit": benchmarks.commit(), "curves": curves}


def plot(rows: list[dict], out: str) -> None:
    from matplotlib.figure import Figure
    panels = (("g_grad_norm", "generator gradient norm (log)", True), ("d_fake_accuracy", "D accuracy on fakes", False),
              ("eval/classes_covered", "classes covered (LeNet judge, 2k samples)", False))
    fig = Figure(figsize=(13, 3.4))
    for ax, (key, title, log) in zip(fig.subplots(1, 3), panels):
        for row in rows:
            xs, ys = zip(*row["curves"][key]) if row["curves"][key] else ((), ())
            ax.plot(xs, ys, label=row["run"])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generator step", fontsize=9)
        if log:
            ax.set_yscale("log")
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--classifier", default=os.path.join(ROOT, "runs", "classifier_mnist"))
    parser.add_argument("--runs", default="|".join(RUNS), help="which of the runs (names separated by |)")
    parser.add_argument("--plot_only", action="store_true", help="redraw the picture from the committed rows")
    args = parser.parse_args()
    if not args.plot_only:
        from benchmarks.gan_mnist import MNIST, Judge
        from gen_jax import data
        Judge(args.classifier, data.load(f"idx:{MNIST}"))  # trains the classifier on first use
        for name in args.runs.split("|"):
            row = train_run(name, args.steps, args.classifier)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "curves"}), flush=True)
    with open(RESULTS) as f:
        rows = {r["run"]: r for r in map(json.loads, f)}  # the latest row of each run
    plot(list(rows.values()), PICTURE)
    print(f"-> {PICTURE}")


if __name__ == "__main__":
    main()
