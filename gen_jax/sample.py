"""Command line: samples of a trained run into a .npz file.

    python -m gen_jax.sample --workdir=DIR --num=N --out=FILE.npz [--checkpoint=latest|best] [--seed=S]

Saves images: uint8 [N, H, W, C] (0..255); labels: int32 [N] for conditional models, balanced over the classes
(0, 1, ..., 0, 1, ...); step: the checkpoint's step. GANs sample with their EMA generator weights. The run
opens through `training.runs.restore_run`; bad input is one `error:` line (exit status 2).
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

from gen_jax import data
from gen_jax.errors import UserError
from gen_jax.training.runs import restore_run


def write_samples(workdir: str, num: int, out: str, *, seed: int = 0, checkpoint: str = "latest") -> dict:
    """Samples `num` images from the run in `workdir` into the .npz file `out`; returns what was saved."""
    if num <= 0:
        raise UserError(f"--num must be positive, got {num}")
    check_out(out)
    run = restore_run(workdir, checkpoint)
    if run.task.sample is None:
        raise UserError(f"task {run.config.task!r} cannot sample")
    images, labels = run.task.sample(run.state, jax.random.key(seed), num)
    saved = {"images": data.quantize(images), "step": np.int64(run.step)}
    if labels is not None:
        saved["labels"] = np.asarray(labels, np.int32)
    try:
        np.savez(out, **saved)
    except OSError as e:
        raise UserError(f"cannot write --out {out}: {e.strerror or e}") from None
    return saved


def check_out(out: str) -> None:
    """Raises UserError unless `out` names a .npz file that can be written (its folder is created)."""
    if not out.endswith(".npz"):
        raise UserError(f"--out must be a .npz file name (e.g. samples.npz), got {out!r}")
    if os.path.isdir(out):
        raise UserError(f"--out {out} is a folder: pass a file name such as {os.path.join(out, 'samples.npz')}")
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder of --out {out}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK) or (os.path.exists(out) and not os.access(out, os.W_OK)):
        raise UserError(f"--out {out} cannot be written (permission denied)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a training run's directory (train.py --workdir)")
    parser.add_argument("--num", type=int, default=1000, help="how many samples")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    parser.add_argument("--checkpoint", default="latest", choices=("latest", "best"))
    args = parser.parse_args(argv)
    try:
        saved = write_samples(args.workdir, args.num, args.out, seed=args.seed, checkpoint=args.checkpoint)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = f", labels {np.bincount(saved['labels']).tolist()}" if "labels" in saved else ""
    print(f"wrote {saved['images'].shape} uint8 images from step {int(saved['step'])}{labels} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
