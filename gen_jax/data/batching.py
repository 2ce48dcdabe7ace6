"""Deterministic batching for the parallel step: batches are a pure function of (seed, step).

Batching never loops over examples in Python: `batch_indices` gives the global indices of a step's batch, so a
resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import DataError
from gen_jax.parallel import put_rows


def check_batching(num_examples: int, batch_size: int, num_devices: int) -> int:
    """Validates a global batch size against the data and devices; returns the per-device batch size."""
    if batch_size <= 0:
        raise DataError(f"batch size must be positive, got {batch_size}")
    if batch_size > num_examples:
        raise DataError(f"batch size {batch_size} is larger than the training set ({num_examples} examples)")
    if batch_size % num_devices:
        raise DataError(f"batch size {batch_size} is not divisible by the {num_devices} devices")
    return batch_size // num_devices


def batch_indices(seed: int, first_step: int, num_steps: int, *, num_examples: int, batch_size: int,
                  stream: int = 0) -> np.ndarray:
    """Global example indices [num_steps, batch_size] for steps first_step.., a pure function of the seed.

    Each epoch is a fresh permutation (seeded by seed, epoch and, for streams after the first, the stream
    number: two unpaired domains are shuffled independently); the last partial batch is dropped.
    """
    per_epoch = num_examples // batch_size
    steps = np.arange(first_step, first_step + num_steps)
    out = np.empty((num_steps, batch_size), np.int32)
    for epoch in np.unique(steps // per_epoch):
        perm = _epoch_order(seed, int(epoch), stream, num_examples)
        rows = steps // per_epoch == epoch
        starts = (steps[rows] % per_epoch) * batch_size
        out[rows] = perm[starts[:, None] + np.arange(batch_size)]
    return out


@functools.lru_cache(maxsize=8)
def _epoch_order(seed: int, epoch: int, stream: int, num_examples: int) -> np.ndarray:
    """The permutation of one epoch of one stream, read-only; cached, as every step of the epoch reads it (a
    streaming pipeline asks for one step at a time)."""
    perm = np.random.default_rng([seed, epoch, *([stream] if stream else [])]).permutation(num_examples)
    perm.flags.writeable = False
    return perm


def random_subset(total: int, num: int, key: jax.Array) -> np.ndarray:
    """Sorted indices of `num` of `total` examples drawn without replacement from `key` (all of them when num is
    0 or at least total): estimates on a random subset are unbiased for the whole set, unlike on its first rows."""
    if not num or num >= total:
        return np.arange(total)
    return np.sort(np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), total)[:num]))


def map_batches(fn, array, batch_size: int):
    """fn(start, array[start:start+batch_size]) over the leading axis, last partial chunk too, concatenated as
    numpy arrays (fn may return an array or a dict of them).

    For evaluating a jitted function over a whole split without holding every intermediate on the device; each
    chunk's rows are split over the local devices (`parallel.put_rows`), so the function runs data-parallel.
    """
    outputs = [jax.device_get(fn(i, put_rows(array[i:i + batch_size]))) for i in range(0, len(array), batch_size)]
    return jax.tree.map(lambda *chunks: np.concatenate([np.asarray(c) for c in chunks]), *outputs)


def map_padded_batches(fn, array, batch_size: int):
    """fn(chunk) over the leading axis of `array` in chunks of the same size, min(batch_size, N): the last one
    zero-padded to it, so fn compiles once whatever N, and its padding rows dropped. For functions of each row
    alone (feature extractors). Each chunk's rows are split over the local devices (`parallel.put_rows`); fn
    returns an array or a tuple of them, concatenated on the device (N = 0: empty arrays of fn's row shapes)."""
    if len(array) == 0:
        shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((1, *array.shape[1:]), array.dtype))
        return jax.tree.map(lambda s: jnp.zeros((0, *s.shape[1:]), s.dtype), shapes)
    size = max(1, min(batch_size, len(array)))
    outputs = []
    for start in range(0, len(array), size):
        chunk = array[start:start + size]
        rows = len(chunk)
        if rows < size:
            chunk = np.concatenate([np.asarray(chunk), np.zeros((size - rows, *chunk.shape[1:]), chunk.dtype)])
        outputs.append(jax.tree.map(lambda out, rows=rows: out[:rows], fn(put_rows(chunk))))
    return jax.tree.map(lambda *chunks: jnp.concatenate(chunks), *outputs)
