"""Command line: `python -m gen_jax.applications TASK --workdir=DIR ...`, one picture and a JSON result each.

  reduce   --workdir=DIR [--out=PNG]            2-D scatter of the codes, AE vs PCA, linear probe
  anomaly  --config=configs/ae.py --held_out=0,1 --workdir=ROOT [--steps=N] [--score=reconstruction|code_knn]
  denoise  --workdir=DIR [--noise_factor=0.5]
  generate --workdir=DIR                        prior samples, interpolations, classes
  compress --workdir=DIR1 --workdir=DIR2 ...    PSNR against code bits
  iwae     --workdir=DIR [--samples=1000] [--images=1000]

The work is `gen_jax.applications`; bad input is one `error:` line (exit status 2).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from gen_jax import config as config_lib
from gen_jax.applications import autoencoders as apps
from gen_jax.errors import UserError


def _out(args, name: str) -> str:
    return args.out or os.path.join(args.workdir[0], "applications", f"{name}.png")


def _anomaly(args) -> dict:
    if not args.config:
        raise UserError("anomaly needs --config=configs/NAME.py (trained once per held-out class)")
    overrides = {"train.progress": False, **({"train.steps": args.steps} if args.steps else {}),
                 **({"data.source": args.source} if args.source else {})}
    config = config_lib.load(args.config, overrides)
    rows = []
    for label in (int(c) for c in args.held_out.split(",")):
        workdir = os.path.join(args.workdir[0], f"without_{label}")
        trained = apps.train_without(config, workdir, label)
        rows.append(apps.anomaly_detection(trained, label, os.path.join(workdir, f"anomaly_{args.score}.png"),
                                           score=args.score))
    return {"per_class": rows, "mean_auroc": float(np.mean([r["auroc"] for r in rows]))}


def check_args(args) -> None:
    """Raises UserError for an argument out of range, before any run is opened or trained."""
    if args.samples < 1:
        raise UserError(f"--samples must be >= 1 (importance samples per image), got {args.samples}")
    for name in ("images", "steps"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be >= 0 (0: the default), got {getattr(args, name)}")
    if args.noise_factor < 0:
        raise UserError(f"--noise_factor must be >= 0, got {args.noise_factor}")
    if not 0 <= args.mask_rate <= 1:
        raise UserError(f"--mask_rate must be in [0, 1], got {args.mask_rate}")
    try:
        [int(c) for c in args.held_out.split(",")]
    except ValueError:
        raise UserError(f"--held_out must be comma-separated class numbers (e.g. 0,1), got {args.held_out!r}") from None
    if args.out:
        if not args.out.lower().endswith(".png"):
            raise UserError(f"--out must be a .png file name, got {args.out!r}")
        folder = os.path.dirname(os.path.abspath(args.out))
        if os.path.isdir(args.out) or not os.path.isdir(folder) and os.path.exists(folder):
            raise UserError(f"--out {args.out} is a folder or lies under a file: pass a .png file path")
        if os.path.isdir(folder) and not os.access(folder, os.W_OK):
            raise UserError(f"--out {args.out} cannot be written (permission denied)")


def run(args) -> dict:
    """The chosen application's result."""
    if args.task == "anomaly":
        return _anomaly(args)
    if args.task == "compress":
        return apps.compression([apps.load_trained(w) for w in args.workdir], _out(args, "compress"))
    trained = apps.load_trained(args.workdir[0])
    if args.task == "reduce":
        return apps.reduce_dimensions(trained, _out(args, "reduce"))
    if args.task == "denoise":
        return apps.denoise(trained, _out(args, "denoise"), kind=args.corruption, noise_factor=args.noise_factor,
                            mask_rate=args.mask_rate)
    if args.task == "generate":
        return apps.generate(trained, _out(args, "generate"))
    return apps.iwae(trained, num_samples=args.samples, num_images=args.images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.applications", description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["reduce", "anomaly", "denoise", "generate", "compress", "iwae"])
    parser.add_argument("--workdir", action="append", required=True,
                        help="trained workdir (compress: repeat for each code size; anomaly: output root)")
    parser.add_argument("--out", default="", help="PNG to write (default WORKDIR/applications/TASK.png)")
    parser.add_argument("--config", default="", help="anomaly: config file to train without each held-out class")
    parser.add_argument("--held_out", default="0", help="anomaly: comma-separated classes to hold out")
    parser.add_argument("--steps", type=int, default=0, help="anomaly: override train.steps")
    parser.add_argument("--score", default="reconstruction", choices=apps.ANOMALY_SCORES,
                        help="anomaly: reconstruction error / negative ELBO, or kNN distance between codes")
    parser.add_argument("--source", default="", help="anomaly: override data.source (e.g. idx:DIR)")
    parser.add_argument("--corruption", default="gaussian", choices=["gaussian", "masking"])
    parser.add_argument("--noise_factor", type=float, default=0.3)
    parser.add_argument("--mask_rate", type=float, default=0.25)
    parser.add_argument("--samples", type=int, default=1000, help="iwae: importance samples k")
    parser.add_argument("--images", type=int, default=0, help="iwae: test images used, a random subset (0: all)")
    args = parser.parse_args(argv)
    try:
        check_args(args)
        result = run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a picture or result that cannot be written (a missing or read-only folder)
        print(f"error: cannot write {e.filename or 'the output'}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
