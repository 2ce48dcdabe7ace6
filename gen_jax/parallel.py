"""Helpers for per-device steps that run under `jax.pmap` with a named axis, or unmapped (axis_name=None).

The same step function serves both: collectives become no-ops without an axis, so a step is usable inside a
user's own `jax.jit`.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


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


def replicate(tree, devices, axis_name: str):
    """Copies every leaf to each device along a new leading axis, laid out exactly as `jax.pmap` outputs
    (a NamedSharding over `axis_name`), so feeding a step's output back in does not retrace it."""
    sharding = NamedSharding(Mesh(np.asarray(devices), (axis_name,)), PartitionSpec(axis_name))
    return jax.tree.map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices), *np.shape(x))), sharding), tree)


def unreplicate(tree):
    """The first device's copy of a replicated tree."""
    return jax.tree.map(lambda x: x[0], tree)
