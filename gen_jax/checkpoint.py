"""Checkpoints: orbax, one unreplicated copy of the train state per saved step, the last few kept.

A checkpoint that cannot be read back (a truncated or garbled file, missing metadata, an empty step folder,
non-finite values) is *corrupt* (`CorruptCheckpointError`); one whose tree, shapes or dtypes differ from the
model's holds *another model* (`CheckpointError`). `restore_newest_good` falls back over corrupt ones.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from gen_jax import distributed
from gen_jax.errors import CheckpointError


class CorruptCheckpointError(CheckpointError):
    """A checkpoint folder whose files cannot be read back (as opposed to one that holds another model)."""


def _names(path) -> tuple[str, ...]:
    """A pytree key path as plain names, so flax structs, dicts and orbax's metadata trees compare equal."""
    out = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                out.append(str(getattr(key, attr)))
                break
        else:
            out.append(str(key))
    return tuple(out)


def _layout(tree) -> dict:
    """{leaf path as names: (shape, dtype name)} of a tree of arrays, ShapeDtypeStructs or orbax metadata."""
    return {_names(path): (tuple(np.shape(leaf)), np.dtype(leaf.dtype).name)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _layout_difference(saved: dict, wanted: dict) -> str | None:
    """The first difference between two `_layout`s, in words, or None when they agree."""
    for names in sorted(set(saved) | set(wanted), key=lambda n: ("params" not in n, n)):  # parameters first
        where = ".".join(names)
        if names not in saved:
            return f"{where} is missing from the checkpoint"
        if names not in wanted:
            return f"the checkpoint has {where}, which this model lacks"
        if saved[names] != wanted[names]:
            return f"{where} is saved as {saved[names][0]} {saved[names][1]}, the model wants " \
                   f"{wanted[names][0]} {wanted[names][1]}"
    return None


def all_finite(tree) -> bool:
    """Whether every floating-point leaf of a host tree is finite (no NaN, no inf)."""
    return all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(leaf).dtype, np.inexact))


def _quiet_closed_loop_noise() -> None:
    """After a failed orbax read, tensorstore callbacks hit asyncio's closed loop and print 'Event loop is
    closed' tracebacks through sys.unraisablehook; they say nothing the CorruptCheckpointError does not."""
    previous = sys.unraisablehook
    if getattr(previous, "_gen_jax_quiet", False):
        return

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
            return
        previous(unraisable)

    hook._gen_jax_quiet = True
    sys.unraisablehook = hook


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"


class Checkpointer:
    """Saves and restores train states under `directory` (steps as subfolders); keeps the last `keep`."""

    def __init__(self, directory: str, *, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self._keep = keep
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True))

    def _reopen(self) -> None:
        """A fresh manager: after a failed read, orbax's manager can carry the bad step's item layout over."""
        self._manager.close()
        self._manager = self._open()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        """Saves a host copy of `state` (unreplicated) at `step`, and waits so nothing is lost on exit.

        Raises CheckpointError rather than save a state with a NaN or inf in it: with `keep`, saving one would
        rotate a good checkpoint out.
        """
        if step in self._manager.all_steps():
            return
        host = jax.device_get(state)
        if not all_finite(host):
            raise CheckpointError(f"refusing to save a non-finite train state at step {step} in {self.directory}; "
                                  f"the checkpoints there are left as they were")
        self._manager.save(step, args=ocp.args.StandardSave(host))
        self._manager.wait_until_finished()

    def _saved_layout(self, step: int) -> dict | None:
        """The saved tree's layout read from the checkpoint's metadata, or None when that cannot be read."""
        try:
            with ocp.StandardCheckpointer() as reader:
                metadata = reader.metadata(os.path.join(self.directory, str(step), "default"))
            tree = getattr(metadata, "item_metadata", metadata)
            layout = _layout(tree)
        except Exception:  # unreadable metadata is corruption, judged by the caller
            return None
        return layout or None

    def restore(self, template, step: int | None = None):
        """Restores the state saved at `step` (default: latest) into the structure of `template`.

        Raises CorruptCheckpointError when the step's files cannot be read back or hold NaN/inf, and
        CheckpointError when they hold another model (a different tree, shape or dtype).
        """
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), x.dtype), template)  # arrays or jax.eval_shape's
        where = f"{self.directory}/{step}"
        if not os.path.isdir(os.path.join(self.directory, str(step), "default")):
            raise CorruptCheckpointError(f"checkpoint {where} is corrupt (no saved state in it: an empty or "
                                         f"partly written step folder)")
        try:
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            failure = _layout_difference(_layout(restored), _layout(abstract))
        except Exception as e:  # orbax raises many types for truncated files, mismatched trees, bad metadata
            _quiet_closed_loop_noise()
            self._reopen()
            saved = self._saved_layout(step)
            failure = _layout_difference(saved, _layout(abstract)) if saved else None
            if failure is None:  # the metadata is unreadable, or agrees with the model: the files are damaged
                raise CorruptCheckpointError(f"checkpoint {where} is corrupt ({_first_line(e)})") from None
        if failure is not None:
            raise CheckpointError(
                f"checkpoint {where} holds another model and cannot be restored into this config's model "
                f"({failure}); use a fresh --workdir, or the config that trained it") from None
        if not all_finite(restored):
            raise CorruptCheckpointError(f"checkpoint {where} is corrupt (it holds NaN or inf values)")
        return restored

    def restore_newest_good(self, template, *, report: Callable[[str], None], set_aside: bool = False):
        """(state, step) from the newest checkpoint that restores, falling back over corrupt ones.

        Each corrupt step is reported in one line through `report`; with `set_aside`, once a good step is found,
        the corrupt newer folders move to DIRECTORY.corrupt/STEP (kept, out of the rotation and out of the way of
        the steps to be saved again). Returns (None, None) when there is no checkpoint. Raises CheckpointError for
        a checkpoint of another model, or when every checkpoint is corrupt (then nothing is moved).
        """
        steps, corrupt = self.all_steps(), []
        for step in reversed(steps):
            try:
                state = self.restore(template, step)
            except CorruptCheckpointError as e:
                corrupt.append((step, str(e)))
                continue
            for bad, message in corrupt:  # one line each
                moved = f"moved to {self._set_aside(bad)}; " if set_aside and distributed.is_primary() else ""
                report(f"warning: {message}; {moved}using step {step}, the newest good checkpoint")
            if corrupt and set_aside:  # the other processes see the folders process 0 moved
                distributed.barrier("corrupt_checkpoints_set_aside")
                self._manager.reload()
            return state, step
        if steps:
            raise CheckpointError(f"every checkpoint in {self.directory} is corrupt: {corrupt[0][1]} (steps "
                                  f"{', '.join(map(str, steps))}); use a fresh --workdir, or move {self.directory} "
                                  f"away to start over")
        return None, None

    def _set_aside(self, step: int) -> str:
        """Moves a corrupt step folder to DIRECTORY.corrupt/STEP (never deleted); returns where it went."""
        target = os.path.join(self.directory + ".corrupt", str(step))
        if os.path.exists(target):
            target = f"{target}.{len(os.listdir(os.path.dirname(target)))}"
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.close()
