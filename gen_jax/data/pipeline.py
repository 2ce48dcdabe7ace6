"""The streaming input pipeline: each step's batch read and decoded on host threads (Grain) ahead of the step.

The alternative to keeping the training set resident on the devices, for training sets larger than device (or
host) memory. Its batches are exactly the resident path's (`batching.batch_indices`), each process reading only
its own contiguous block of the global batch:

    from gen_jax import data
    ds = data.load("folder:DIR", lazy=True)
    train_data = {"examples": {"image": ds.train_images, "label": ds.train_labels}}
    if data.choose_pipeline(config.data, train_data) == "stream":
        batches = data.step_batches(train_data, seed=0, batch_size=128, first_step=0, num_steps=1000)
        batch = next(batches)  # {"image": [128, H, W, C], "label": [128]}, numpy
"""
from __future__ import annotations

import functools

import numpy as np

from gen_jax.data.batching import batch_indices, check_batching
from gen_jax.errors import DataError

PIPELINES = ("resident", "stream", "auto")


def data_bytes(train_data: dict) -> int:
    """The bytes `train_data` ({stream: {batch key: array or LazyImages [N, ...]}}) takes in memory, images as
    float32."""
    return sum(int(array.nbytes) for arrays in train_data.values() for array in arrays.values())


def materialize(train_data: dict) -> dict:
    """`train_data` with every lazy collection decoded into a numpy array (arrays unchanged): for the resident
    path. Streams keep their order, which numbers them in `batch_indices`."""
    return {stream: {key: np.asarray(array) for key, array in arrays.items()} for stream, arrays in train_data.items()}


def choose_pipeline(data_config, train_data: dict) -> str:
    """'resident' or 'stream', as a config's data section asks: data.pipeline, where 'auto' streams when
    `train_data` takes more than data.device_memory_budget_mb as arrays."""
    pipeline = data_config.pipeline
    if pipeline not in PIPELINES:
        raise DataError(f"unknown data.pipeline {pipeline!r}: use {', '.join(PIPELINES)}")
    if pipeline != "auto":
        return pipeline
    return "stream" if data_bytes(train_data) > data_config.device_memory_budget_mb * 2 ** 20 else "resident"


def _stream_size(stream: str, arrays: dict) -> int:
    sizes = {key: len(array) for key, array in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"the arrays of stream {stream!r} differ in length: {sizes}")
    return next(iter(sizes.values()))


def _read_step(train_data: dict, sizes: dict, block: slice, seed: int, batch_size: int, step: int) -> dict:
    """Rows `block` of step `step`'s global batch of every stream, as one flat dict {batch key: numpy array}."""
    batch = {}
    for i, (stream, arrays) in enumerate(train_data.items()):
        rows = batch_indices(seed, step, 1, num_examples=sizes[stream], batch_size=batch_size, stream=i)[0, block]
        batch.update({key: array[rows] for key, array in arrays.items()})
    return batch


def step_batches(train_data: dict, *, seed: int, batch_size: int, first_step: int, num_steps: int,
                 process_index: int = 0, process_count: int = 1, threads: int = 8,
                 prefetch: int = 4) -> "grain.DatasetIterator":
    """An iterator over the batches of steps first_step .. first_step + num_steps - 1, read ahead on threads.

    train_data: {stream: {batch key: array or LazyImages [N, ...]}}, the loop's `Task.train_data`; stream i (in
    dict order) is batched as `batch_indices(..., stream=i)`. Each batch is a flat numpy dict {batch key:
    [b, ...]} with b = batch_size // process_count: rows process_index * b .. (process_index + 1) * b of the
    step's global batch, so each process reads and decodes only its own block.
    threads: host threads reading batches, one batch each; prefetch: batches read ahead of the step, which also
    bounds the threads (a thread without a batch to read would idle).

    The iterator's Grain state (`get_state()`, `set_state(state)`) is {"next_index": next step}, absolute: a
    state saved at step s restores step s on any pipeline over the same data whose steps include s.
    """
    try:
        import grain  # imported here: an optional dependency, and only streaming needs it
    except ImportError:
        raise DataError("the streaming pipeline needs Grain: pip install -e '.[stream]'") from None
    if not 0 <= process_index < process_count:
        raise DataError(f"process_index {process_index} is not one of the {process_count} processes")
    sizes = {stream: _stream_size(stream, arrays) for stream, arrays in train_data.items()}
    for size in sizes.values():
        check_batching(size, batch_size, process_count)
    b = batch_size // process_count
    read = functools.partial(_read_step, train_data, sizes, slice(process_index * b, (process_index + 1) * b),
                             seed, batch_size)
    steps = grain.MapDataset.range(first_step + num_steps).map(read)
    options = grain.ReadOptions(num_threads=min(threads, prefetch), prefetch_buffer_size=prefetch)
    batches = iter(steps.to_iter_dataset(options))
    batches.set_state({"next_index": first_step})  # counts steps from 0, so a saved state names its step
    return batches
