"""The one way to open a trained run: `restore_run(workdir, which="latest" | "best")`.

A run is what `train.py --workdir=DIR` leaves: DIR/config.json, DIR/checkpoints/STEP/ and, with
eval.best_metric set, DIR/best/STEP/. Sampling, evaluation and the applications all open runs here.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from typing import Any

import jax
import ml_collections

from gen_jax import config as config_lib
from gen_jax import data, files
from gen_jax.checkpoint import Checkpointer
from gen_jax.errors import CheckpointError, ConfigError, UserError
from gen_jax.training import tasks

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
    if not os.path.isdir(workdir):
        raise CheckpointError(f"{workdir} does not exist or is not a folder: pass the --workdir of a training run")
    if not os.path.exists(os.path.join(workdir, "config.json")):
        raise CheckpointError(f"{workdir} is not a training run (no config.json): train one with "
                              f"`python train.py --workdir={workdir}`")
    config = config_lib.load_saved(workdir)
    if source:  # read as the run's task reads its source (one data set, two domains or pairs)
        config = config.copy_and_resolve_references()
        config.data.source, config.data.exclude_labels = source, ()
    dataset = tasks.load_data(config)
    task = tasks.build(config, dataset)
    folder = os.path.join(workdir, CHECKPOINT_FOLDERS[which])
    hint = " (train with --config.eval.best_metric=fid to keep one)" if which == "best" else ""
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder} holds no checkpoint{hint}")
    checkpointer = Checkpointer(folder)
    try:  # a corrupt newest step is reported on stderr and the newest good one opens instead
        state, step = checkpointer.restore_newest_good(
            state_shapes(task, config, dataset),
            report=lambda line: print(line, file=sys.stderr))
        if step is None:
            raise CheckpointError(f"{folder} holds no checkpoint{hint}")
    finally:
        checkpointer.close()
    return Run(config, dataset, task, state, step)


def state_shapes(task: tasks.Task, config, dataset: data.Dataset):
    """The train state's shapes (`jax.eval_shape`: nothing allocated or compiled). A model whose options do not
    fit together or fit the data (e.g. a generator named as a VAE's model) is a ConfigError here, before any
    compilation, rather than a traceback from inside a trace."""
    try:
        return jax.eval_shape(task.init_state, jax.random.key(config.seed))
    except UserError:
        raise
    except Exception as e:  # whatever the module raises while tracing its init
        text = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        sections = [s for s in ("model", "generator", "discriminator") if s in config]
        raise ConfigError(f"the config's {'/'.join(sections) or 'model'} cannot be built for {dataset.name}'s "
                          f"{tuple(dataset.image_shape)} images: {type(e).__name__}: {text}") from None


def _is_step_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.basename(path).isdigit()


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Checks, before anything is written or compiled, that `workdir` can hold a run and that resuming it keeps
    the result's settings: a saved config.json that differs from `config` outside train/eval is refused,
    listing the differences, unless config.train.allow_config_change. Creates the folder; writes nothing in it.

    Raises UserError (a file in the way, not writable) or ConfigError (a refused or unreadable saved config).
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"--workdir {workdir} is a file, not a folder: pass a folder path")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise UserError(f"--workdir {workdir} cannot be created or written ({e.strerror or e}): pass a writable "
                        f"folder") from None
    checkpoints = os.path.join(workdir, CHECKPOINT_FOLDERS["latest"])
    resuming = os.path.isdir(checkpoints) and any(_is_step_folder(os.path.join(checkpoints, name))
                                                   for name in os.listdir(checkpoints))
    if not resuming or not os.path.exists(os.path.join(workdir, "config.json")):
        return
    allow = config.train.get("allow_config_change", False)
    try:
        saved = config_lib.load_saved(workdir)
    except ConfigError as e:
        if allow:
            return
        raise ConfigError(f"{e}; or pass --config.train.allow_config_change=True to resume with this config "
                          f"and rewrite it") from None
    changes = config_lib.result_changes(saved, config)
    if changes and not allow:
        raise ConfigError(
            f"{workdir} was trained with another config; resuming it would change the result: "
            f"{'; '.join(changes)}. Use a fresh --workdir, rerun with the saved settings, or pass "
            f"--config.train.allow_config_change=True to resume anyway (train.* and eval.* may always change)")
    if changes:
        print(f"warning: resuming {workdir} with changed settings (train.allow_config_change): "
              f"{'; '.join(changes)}", file=sys.stderr)


def drop_metrics_after(path: str, step: int) -> None:
    """Rewrites the metrics file without rows past `step` (a resume from an earlier checkpoint would repeat
    them), and without unreadable lines (a write cut short)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        files.write_text(path, "".join(kept))
