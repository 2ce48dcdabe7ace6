"""Command line: samples of a trained run into a .npz file, or a GAN's latent pictures into a PNG.

    python -m gen_jax.sample --workdir=DIR --num=N --out=FILE.npz [--checkpoint=latest|best] [--seed=S]
    python -m gen_jax.sample --workdir=GAN_RUN --picture=linear|spherical|classes --out=FILE.png

Saves images: uint8 [N, H, W, C] (0..255); labels: int32 [N] for conditional models, balanced over the classes
(0, 1, ..., 0, 1, ...); step: the checkpoint's step. GANs sample with their EMA generator weights. --picture:
8 rows of latent walks between two random draws in 10 steps (straight or spherical), or a conditional GAN's
class grid (row c: class c; a column shares its z). The run opens through `training.runs.restore_run`; bad
input is one `error:` line (exit status 2).
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

from gen_jax import data, images
from gen_jax.errors import UserError
from gen_jax.families import gan
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


PICTURES = ("linear", "spherical", "classes")


def write_picture(workdir: str, kind: str, out: str, *, seed: int = 0, checkpoint: str = "latest") -> np.ndarray:
    """A GAN run's latent walks ('linear' | 'spherical') or class grid ('classes') as a PNG `out`; returns the
    images [rows, columns, H, W, C] in [0, 1]."""
    if kind not in PICTURES:
        raise UserError(f"--picture must be one of {', '.join(PICTURES)}, got {kind!r}")
    check_out(out, ".png")
    run = restore_run(workdir, checkpoint)
    generator = run.task.modules.get("generator")
    if run.config.task != "gan":
        raise UserError(f"--picture needs a GAN run; {workdir} holds a {run.config.task!r} run")
    key = jax.random.key(seed)
    if kind == "classes":
        if not generator.num_classes:
            raise UserError(f"--picture=classes needs a conditional GAN; {workdir}'s generator is unconditional")
        pictures = gan.class_grid(generator, run.state, key, per_class=10)
    else:
        pictures = gan.latent_walks(generator, run.state, key, rows=8, num=10, spherical=kind == "spherical")
    pictures = np.asarray(pictures)
    images.save_grid(out, pictures.reshape(-1, *pictures.shape[2:]), ncols=pictures.shape[1])
    return pictures


def check_out(out: str, suffix: str = ".npz") -> None:
    """Raises UserError unless `out` names a `suffix` file that can be written (its folder is created)."""
    if not out.endswith(suffix):
        raise UserError(f"--out must be a {suffix} file name (e.g. samples{suffix}), got {out!r}")
    if os.path.isdir(out):
        raise UserError(f"--out {out} is a folder: pass a file name such as {os.path.join(out, 'samples' + suffix)}")
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
    parser.add_argument("--picture", default="", help=f"a GAN's latent picture instead of samples: "
                        f"{' | '.join(PICTURES)} (--out FILE.png)")
    args = parser.parse_args(argv)
    try:
        if args.picture:
            pictures = write_picture(args.workdir, args.picture, args.out, seed=args.seed, checkpoint=args.checkpoint)
            print(f"wrote a {pictures.shape[0]}x{pictures.shape[1]} {args.picture} grid -> {args.out}")
            return 0
        saved = write_samples(args.workdir, args.num, args.out, seed=args.seed, checkpoint=args.checkpoint)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = f", labels {np.bincount(saved['labels']).tolist()}" if "labels" in saved else ""
    print(f"wrote {saved['images'].shape} uint8 images from step {int(saved['step'])}{labels} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
