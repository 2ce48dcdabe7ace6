"""TensorBoard event files for a run, written with tensorboardX (no TensorFlow needed).

The loop writes WORKDIR/tensorboard/: the resolved config as text at the start, every metrics.jsonl row's
numbers as scalars at its step (eval rows under `eval/...`), and each sample grid as an image when its PNG is
written. metrics.jsonl stays the machine-readable record; this is for `tensorboard --logdir=WORKDIR`.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np

from gen_jax import images

SUBDIR = "tensorboard"


def _numbers(row: dict) -> dict[str, float]:
    """The finite int/float entries of a metrics row, without its step."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Writer:
    """One run's event writer. A resumed run (`start_step` > 0) drops events a killed run wrote after that step.

    Args:
      workdir: the run's directory; events go to workdir/tensorboard/.
      start_step: the step training (re)starts from.
      flush_secs: how often pending events reach disk while training.
    """

    def __init__(self, workdir: str, *, start_step: int = 0, flush_secs: int = 10):
        self.logdir = os.path.join(workdir, SUBDIR)
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # a base dependency; an environment installed before it was added trains on
            warnings.warn("tensorboardX is not installed, so this run writes no TensorBoard events: "
                          "pip install tensorboardX", stacklevel=2)
            self._writer = None
            return
        self._writer = SummaryWriter(self.logdir, purge_step=start_step + 1 if start_step else None,
                                     flush_secs=flush_secs)

    def config(self, config, step: int = 0) -> None:
        """The resolved config as a text summary (JSON shown as a code block)."""
        if self._writer is None:
            return
        text = config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort") else str(config)
        self._writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), step)

    def scalars(self, step: int, row: dict) -> None:
        """Every finite number of a metrics row (the same dict metrics.jsonl gets) as a scalar at `step`."""
        if self._writer is None:
            return
        for name, value in _numbers(row).items():
            self._writer.add_scalar(name, value, step)

    def pictures(self, step: int, pictures: dict) -> None:
        """Each {name: images [N, H, W, C] in [0, 1]} as one grid image tagged `samples/name`."""
        if self._writer is None:
            return
        for name, pics in pictures.items():
            self._writer.add_image(f"samples/{name}", images.enlarged_grid(np.asarray(pics), min_cell=32), step, dataformats="HWC")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
