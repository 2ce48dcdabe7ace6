"""Input corruptions for denoising autoencoders (Vincent et al. 2008), as explicit, keyed pure functions.

Each corruption is a pure map (images, noise) -> images in [0, 1]; `corrupt(key, images, ...)` draws the
noise from `key`. Inside a parallel step pass the device axis: the noise is then cut from the global batch's
draw (`parallel.local_rows`), so N devices corrupt exactly as one device does on the same global batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from gen_jax.parallel import local_rows

KINDS = ("none", "gaussian", "masking")


def gaussian_noise(images: jax.Array, noise: jax.Array, *, noise_factor: float = 0.3) -> jax.Array:
    """The seed's add_noise: images + noise_factor * noise (noise ~ N(0, 1)), clipped back to [0, 1]."""
    return jnp.clip(images + noise_factor * noise, 0.0, 1.0)


def masking_noise(images: jax.Array, uniform: jax.Array, *, rate: float = 0.25) -> jax.Array:
    """Masking noise: each pixel is set to 0 where uniform < rate (U[0, 1) noise), so a fraction `rate` is lost."""
    return jnp.where(uniform < rate, jnp.zeros_like(images), images)


def corrupt(key: jax.Array, images: jax.Array, *, kind: str, noise_factor: float = 0.3, mask_rate: float = 0.25,
            axis_name: str | None = None) -> jax.Array:
    """Corrupts a batch [B, H, W, C] in [0, 1] with noise drawn from `key`.

    Args:
      kind: 'none' (identity), 'gaussian' (additive, clipped; `noise_factor` is its std) or 'masking'
        (a fraction `mask_rate` of pixels zeroed).
      axis_name: the device axis inside a pmapped step (None when unmapped): noise for the global batch is
        drawn and this device keeps its rows.
    Returns:
      corrupted images, same shape, in [0, 1].
    """
    if kind == "none":
        return images
    if kind == "gaussian":
        return gaussian_noise(images, local_rows(jax.random.normal, key, images.shape, axis_name),
                              noise_factor=noise_factor)
    if kind == "masking":
        return masking_noise(images, local_rows(jax.random.uniform, key, images.shape, axis_name), rate=mask_rate)
    raise ValueError(f"corruption must be one of {', '.join(KINDS)}, got {kind!r}")
