"""Helpers for per-device steps that run under `jax.pmap` with a named axis, or unmapped (axis_name=None).

The same step function serves both: collectives become no-ops without an axis, so a step is usable inside a
user's own `jax.jit`.
"""
from __future__ import annotations

from typing import Callable

import jax
from jax import lax


def pmean(tree, axis_name: str | None):
    """Mean over the device axis (gradients, metrics, batch statistics); identity when unmapped."""
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def local_rows(draw: Callable, key: jax.Array, local_shape: tuple, axis_name: str | None):
    """Noise for this device's share of the global batch: `draw(key, global_shape)`, then this device's rows.

    Every device draws the global batch's noise from the same key and keeps its own disjoint rows, so no two
    devices use the same random numbers, and a run on N devices matches one device on the same global batch.
    """
    if axis_name is None:
        return draw(key, local_shape)
    num, index = lax.axis_size(axis_name), lax.axis_index(axis_name)
    rows = local_shape[0]
    full = draw(key, (rows * num, *local_shape[1:]))
    return lax.dynamic_slice_in_dim(full, index * rows, rows)
