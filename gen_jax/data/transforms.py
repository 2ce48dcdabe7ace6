"""Model-side image transforms: value ranges, dynamic binarisation, and uint8 quantisation.

Data sets hold images in [0, 1] (`UNIT`); tanh generators work in [-1, 1] (`SIGNED`). A value range is an
explicit (low, high) pair; `preprocess` maps [0, 1] images into it on the device, inside the step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

UNIT = (0.0, 1.0)     # images as stored, Bernoulli means, sigmoid decoders
SIGNED = (-1.0, 1.0)  # tanh generators and the discriminators that judge them


def preprocess(images: jax.Array, *, value_range: tuple[float, float] = UNIT,
               uniform: jax.Array | None = None) -> jax.Array:
    """Maps [0, 1] images to what a model expects: optional dynamic binarisation, then `value_range`.

    With `uniform` (U[0, 1) noise of the images' shape) pixels are binarised as 1[u < p], a fresh
    Bernoulli draw each step as in the VAE literature, so the Bernoulli likelihood is a true likelihood.
    """
    if uniform is not None:
        images = (uniform < images).astype(images.dtype)
    low, high = value_range
    return images if (low, high) == UNIT else low + images * (high - low)


def to_unit_range(images: jax.Array, value_range: tuple[float, float]) -> jax.Array:
    """Inverse of `preprocess`'s range map: model-space images back to [0, 1] (clipped) for display."""
    low, high = value_range
    images = images if (low, high) == UNIT else (images - low) / (high - low)
    return jnp.clip(images, 0.0, 1.0)


def quantize(images) -> np.ndarray:
    """[0, 1] float images -> uint8 0..255 (round to nearest, clipped), as a saved PNG holds them."""
    return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
