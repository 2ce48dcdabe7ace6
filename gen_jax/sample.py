"""Writes samples from a trained run: `python -m gen_jax.sample --workdir=DIR --num=N --out=FILE.npz`.

Rebuilds the run's task from DIR/config.json, restores the latest checkpoint and saves
  images: uint8 [N, H, W, C] (0..255)
  labels: int32 [N] for conditional models, balanced over the classes (0, 1, ..., 0, 1, ...)
  step:   the checkpoint's step
GANs sample with their EMA generator weights. Bad input is reported as one line (exit status 2).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def load_run(workdir: str):
    """(config, dataset, task, state, step) of the latest checkpoint in `workdir`."""
    import jax

    from gen_jax import config as config_lib
    from gen_jax import data, tasks
    from gen_jax.checkpoint import Checkpointer
    from gen_jax.errors import CheckpointError

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{workdir} is not a training run (no config.json)")
    config = config_lib.load_saved(workdir)
    dataset = data.from_config(config.data)
    task = tasks.build(config, dataset)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    step = checkpointer.latest_step()
    if step is None:
        raise CheckpointError(f"{workdir}/checkpoints holds no checkpoint")
    state = checkpointer.restore(task.init_state(jax.random.key(config.seed)), step)
    checkpointer.close()
    return config, dataset, task, state, step


def write_samples(workdir: str, num: int, out: str, *, seed: int = 0) -> dict:
    """Samples `num` images from the run in `workdir` into the .npz file `out`; returns what was saved."""
    import jax

    from gen_jax.errors import UserError

    if num <= 0:
        raise UserError(f"--num must be positive, got {num}")
    config, _, task, state, step = load_run(workdir)
    if task.sample is None:
        raise UserError(f"task {config.task!r} cannot sample")
    images, labels = task.sample(state, jax.random.key(seed), num)
    saved = {"images": np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8), "step": np.int64(step)}
    if labels is not None:
        saved["labels"] = np.asarray(labels, np.int32)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez(out, **saved)
    return saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a training run's directory (train.py --workdir)")
    parser.add_argument("--num", type=int, default=1000, help="how many samples")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    args = parser.parse_args(argv)
    from gen_jax.errors import UserError
    try:
        saved = write_samples(args.workdir, args.num, args.out, seed=args.seed)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = f", labels {np.bincount(saved['labels']).tolist()}" if "labels" in saved else ""
    print(f"wrote {saved['images'].shape} uint8 images from step {int(saved['step'])}{labels} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
