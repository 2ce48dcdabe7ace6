"""Data: sources (`load`, `Dataset`), lazy image collections, deterministic batching, the streaming pipeline,
model-side transforms, corruptions, and k-means pseudo-classes (`clusters`).

    from gen_jax import data
    ds = data.load("digits")                 # float32 NHWC images in [0, 1], int32 labels
    x = data.preprocess(images, value_range=data.SIGNED)
"""
from gen_jax.data import clusters
from gen_jax.data.batching import batch_indices, check_batching, map_batches, map_padded_batches, random_subset
from gen_jax.data.lazy import LazyImages
from gen_jax.data.pipeline import PIPELINES, choose_pipeline, data_bytes, materialize, step_batches
from gen_jax.data.sources import Dataset, from_config, load, read_idx, without_labels
from gen_jax.data.transforms import SIGNED, UNIT, preprocess, quantize, to_unit_range
