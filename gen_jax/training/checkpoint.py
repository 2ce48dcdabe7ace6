"""Checkpoints: orbax, one unreplicated copy of the train state per saved step, the last few kept."""
from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from gen_jax.errors import CheckpointError


def _check_same_layout(restored, template) -> None:
    """Raises ValueError unless both trees have the same structure, shapes and dtypes."""
    if jax.tree.structure(restored) != jax.tree.structure(template):
        raise ValueError("the saved state has a different structure")
    for path, (a, b) in zip(jax.tree_util.tree_flatten_with_path(template)[0],
                            zip(jax.tree.leaves(restored), jax.tree.leaves(template))):
        if np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.asarray(b).dtype:
            raise ValueError(f"{jax.tree_util.keystr(path[0])} is saved as {np.shape(a)} "
                             f"{np.asarray(a).dtype}, the model wants {np.shape(b)} {np.asarray(b).dtype}")


class Checkpointer:
    """Saves and restores train states under `directory` (steps as subfolders); keeps the last `keep`."""

    def __init__(self, directory: str, *, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state) -> None:
        """Saves a host copy of `state` (unreplicated) at `step`, and waits so nothing is lost on exit."""
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)))
        self._manager.wait_until_finished()

    def restore(self, template, step: int | None = None):
        """Restores the state saved at `step` (default: latest) into the structure of `template`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), x.dtype), template)  # arrays or jax.eval_shape's
        try:
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            _check_same_layout(restored, abstract)
            return restored
        except Exception as e:  # orbax raises many types for truncated files, mismatched trees, bad metadata
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} cannot be restored into this config's model "
                f"({type(e).__name__}: {first[:200]}); use a fresh --workdir, or move that step folder "
                f"away to resume from an earlier one") from None

    def close(self) -> None:
        self._manager.close()
