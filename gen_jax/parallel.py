"""Helpers for per-device steps that run under `jax.pmap` with a named axis, or unmapped (axis_name=None), and
for spreading batched inference (sampling, scoring, translating) over all local devices.

The same step function serves both: collectives become no-ops without an axis, so a step is usable inside a
user's own `jax.jit`. Inference is data-parallel through sharding instead: a batch whose rows are split over the
devices makes XLA partition the jitted computation by rows, with the same numbers as on one device.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import jax
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def pmean(tree, axis_name: str | None):
    """Mean over the device axis (gradients, metrics, batch statistics); identity when unmapped or when the axis
    has one device, where XLA would still compile an all-reduce that copies every gradient on each step."""
    if axis_name is None or lax.axis_size(axis_name) == 1:
        return tree
    return lax.pmean(tree, axis_name)


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
    """The first local device's copy of a replicated tree, as host arrays read from that device alone.

    Indexing the whole array would run a program over every device (on CPU such programs queued behind
    collectives can hang), and an array committed to one device could not feed a computation spread over all
    of them (`spread_rows`); host arrays go wherever they are used.
    """
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0] if isinstance(x, jax.Array) else x[0], tree)


def use_cpu_devices(count: int) -> None:
    """Splits the CPU into `count` JAX devices, so the loop's pmap runs one program per device on its share of
    each batch: on CPU, convolutions use the cores better that way than as one program on all of them (see
    docs/speed.md). A speed setting only: N devices compute what one does. It must come before JAX starts
    (a later call that asks for another count changes nothing; the caller checks `jax.local_device_count()`),
    yields to a count set in XLA_FLAGS or JAX_NUM_CPU_DEVICES, and leaves GPU and TPU devices alone."""
    if count == 0 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") \
            or "JAX_NUM_CPU_DEVICES" in os.environ:
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX has started: its device count stays
        pass


# XLA:CPU hands matmuls, convolutions and reductions to YNNPACK; these options keep its matmuls and reductions and
# leave convolutions to XLA's own kernels, whose gradients are faster for wider convolutions (docs/speed.md).
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def cpu_compiler_options(convolutions: str) -> dict:
    """XLA compiler options for the train step, from `train.cpu_convolutions`: CPU_COMPILER_OPTIONS for 'xla' on
    the CPU backend when this jaxlib knows them; {} for 'ynnpack' (XLA:CPU's default), on GPU and TPU, or with an
    older jaxlib."""
    if convolutions != "xla" or jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: x @ x).lower(np.eye(2, dtype=np.float32)).compile(CPU_COMPILER_OPTIONS)
    except jax.errors.JaxRuntimeError:  # an older XLA without the option: INVALID_ARGUMENT
        return {}
    return dict(CPU_COMPILER_OPTIONS)


def compiled_per_shapes(mapped: Callable, compiler_options: dict) -> Callable:
    """`mapped` (a `jax.pmap`ped function) compiled ahead of time with XLA `compiler_options`, once per distinct
    input shapes, and called like `mapped`; `mapped` itself when there are no options, or in a multi-process
    run (a pmap compiled ahead of time there expects every process's devices in its arguments' leading axis)."""
    if not compiler_options or jax.process_count() > 1:
        return mapped
    executables = {}

    def call(*args):
        leaves, tree = jax.tree.flatten(args)
        shapes = (tree, tuple((np.shape(x), x.dtype) for x in leaves))
        if shapes not in executables:
            executables[shapes] = mapped.lower(*args).compile(compiler_options)
        return executables[shapes](*args)

    return call


def rows_sharding(num_rows: int) -> NamedSharding | None:
    """A sharding that splits a leading axis of `num_rows` evenly over the local devices, or None when there is
    one device or the rows do not divide."""
    devices = jax.local_devices()
    if len(devices) == 1 or num_rows % len(devices):
        return None
    return NamedSharding(Mesh(np.asarray(devices), ("rows",)), PartitionSpec("rows"))


def put_rows(array):
    """`array` on the devices with its rows split over them (`rows_sharding`), or as it is when they do not
    divide: jitted functions of it then run data-parallel."""
    sharding = rows_sharding(len(array))
    return array if sharding is None else jax.device_put(array, sharding)


def spread_rows(array: jax.Array) -> jax.Array:
    """Inside `jax.jit`: asks XLA to split `array`'s rows over the local devices (when they divide), which
    partitions the computation producing it, e.g. a sampler that draws its own noise from a key."""
    sharding = rows_sharding(array.shape[0])
    return array if sharding is None else jax.lax.with_sharding_constraint(array, sharding)
