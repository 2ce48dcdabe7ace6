"""The one way to open a trained run: `restore_run(workdir, which="latest" | "best")`.

A run is what `train.py --workdir=DIR` leaves: DIR/config.json, DIR/checkpoints/STEP/ and, with
eval.best_metric set, DIR/best/STEP/. Sampling, evaluation and the applications all open runs here.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections

from gen_jax import config as config_lib
from gen_jax import data
from gen_jax.errors import CheckpointError
from gen_jax.training import tasks
from gen_jax.training.checkpoint import Checkpointer

CHECKPOINT_FOLDERS = {"latest": "checkpoints", "best": "best"}


@dataclasses.dataclass(frozen=True)
class Run:
    """A restored run: its config, data set, task (the family's functions), train state and step."""

    config: ml_collections.ConfigDict
    dataset: data.Dataset
    task: tasks.Task
    state: Any
    step: int


def restore_run(workdir: str, which: str = "latest", *, source: str | None = None) -> Run:
    """Restores the latest (or best) checkpoint of the run in `workdir` with its config and data set.

    `source` replaces the data source recorded in the run's config (e.g. to score another data set).
    Raises CheckpointError, naming the folder and what is missing, when `workdir` is not a restorable run.
    """
    if which not in CHECKPOINT_FOLDERS:
        raise CheckpointError(f"checkpoint must be one of {', '.join(CHECKPOINT_FOLDERS)}, got {which!r}")
    if not os.path.exists(os.path.join(workdir, "config.json")):
        raise CheckpointError(f"{workdir} is not a training run (no config.json): train one with "
                              f"`python train.py --workdir={workdir}`")
    config = config_lib.load_saved(workdir)
    dataset = data.load(source) if source else data.from_config(config.data)
    task = tasks.build(config, dataset)
    folder = os.path.join(workdir, CHECKPOINT_FOLDERS[which])
    hint = " (train with --config.eval.best_metric=fid to keep one)" if which == "best" else ""
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder} holds no checkpoint{hint}")
    checkpointer = Checkpointer(folder)
    try:
        step = checkpointer.latest_step()
        if step is None:
            raise CheckpointError(f"{folder} holds no checkpoint{hint}")
        state = checkpointer.restore(jax.eval_shape(task.init_state, jax.random.key(config.seed)), step)
    finally:
        checkpointer.close()
    return Run(config, dataset, task, state, step)
