"""What an image-to-image translation model (CycleGAN, Zhu et al. 2017; pix2pix, Isola et al. 2017) is for, as
pure functions: the discriminators' image pool (`init_pool`, `query_pool`) and translating [0, 1] images.

The networks are `models.translation`'s; they work in [-1, 1] (`data.SIGNED`), these helpers take and return
[0, 1] images. CycleGAN's objective from `losses`: discriminator_loss(kind='lsgan') is the reference's
0.5 * (MSE(D(y), 1) + MSE(D(G(x)), 0)); its generator term MSE(D(G(x)), 1) is 2 * generator_loss(kind='lsgan'),
beside 10 * cycle_consistency and 5 * identity_loss per direction.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import data


class ImagePool(NamedTuple):
    """A history of generated images (Shrivastava et al. 2017), as arrays so it can live in a jitted train state.

    images: [pool_size, H, W, C], the first `count` rows filled; count: int32 scalar, at most pool_size.
    """

    images: jax.Array
    count: jax.Array


def init_pool(pool_size: int, image_shape) -> ImagePool:
    """An empty pool of `pool_size` images of `image_shape` (CycleGAN uses 50); 0 means no pool."""
    return ImagePool(jnp.zeros((pool_size, *image_shape), jnp.float32), jnp.zeros((), jnp.int32))


def _query_one(pool: ImagePool, inputs: tuple[jax.Array, jax.Array]) -> tuple[ImagePool, jax.Array]:
    """One image through the pool: stored and returned while it fills; once full, with probability 1/2 stored in
    place of a random stored image, which is returned instead."""
    image, key = inputs
    swap_key, slot_key = jax.random.split(key)
    size = pool.images.shape[0]
    full = pool.count >= size
    swap = full & jax.random.bernoulli(swap_key)
    slot = jnp.where(full, jax.random.randint(slot_key, (), 0, size), pool.count)
    stored = pool.images[slot]
    images = pool.images.at[slot].set(jnp.where(full & ~swap, stored, image))
    return ImagePool(images, jnp.minimum(pool.count + 1, size)), jnp.where(swap, stored, image)


def query_pool(pool: ImagePool, images: jax.Array, key: jax.Array) -> tuple[ImagePool, jax.Array]:
    """(new pool, images for the discriminator) for a batch of generated images [B, H, W, C].

    CycleGAN's ImagePool.query: the discriminator sees a mix of current and earlier generator outputs, which
    damps oscillation (Shrivastava et al. 2017, sec. 2.3). Images go through one at a time in batch order, as
    the reference does, each with its own key from `key`. The images are values, not functions of the generator:
    they carry no gradient. With a pool of size 0 the images are returned as they are.
    """
    images = jax.lax.stop_gradient(images)
    if pool.images.shape[0] == 0:
        return pool, images
    return jax.lax.scan(_query_one, pool, (images, jax.random.split(key, images.shape[0])))


def translate(generator, params, images01: jax.Array) -> jax.Array:
    """Generator outputs for [0, 1] images, back in [0, 1] (inference mode: no dropout).

    `generator` is a `models.translation` generator and `params` its parameters; jit-compatible.
    """
    outputs = generator.apply({"params": params}, data.preprocess(images01, value_range=data.SIGNED))
    return data.to_unit_range(outputs, data.SIGNED)


_translate_jitted = jax.jit(translate, static_argnums=0)  # one compilation per generator (modules hash by value)


def translate_all(generator, params, images01, *, batch_size: int = 256) -> np.ndarray:
    """`translate` over a whole split (numpy [N, H, W, C] in [0, 1]) in jitted batches; returns numpy."""
    return data.map_batches(lambda _, batch: _translate_jitted(generator, params, batch),
                            np.asarray(images01, np.float32), batch_size)
