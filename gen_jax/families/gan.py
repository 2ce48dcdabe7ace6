"""What a GAN is for, as pure functions: run either network with its collections, sample (EMA weights), and
score batches with the discriminator. Used by the GAN step (`training.steps.make_gan_step`), task and sampler.

Generators output images in [-1, 1]; `sample` maps them to [0, 1] for pictures and files. Keys are explicit.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gen_jax import data
from gen_jax.parallel import local_rows


def apply(module, params, model_state: dict, *args, rngs=None, **kwargs):
    """module.apply with the non-trainable collections mutable: returns (output, updated model_state).

    Whether the updates are kept (BatchNorm running statistics, spectral norm's u) is the caller's choice.
    """
    variables = {"params": params, **model_state}
    if not model_state:
        return module.apply(variables, *args, rngs=rngs, **kwargs), model_state
    out, updates = module.apply(variables, *args, rngs=rngs, mutable=list(model_state), **kwargs)
    return out, {**model_state, **updates}


def balanced_labels(num: int, num_classes: int) -> jax.Array:
    """0, 1, ..., num_classes - 1, 0, 1, ...: `num` labels as evenly spread over the classes as possible."""
    return jnp.arange(num, dtype=jnp.int32) % num_classes


class UpdateKeys(NamedTuple):
    """The keys of one network update inside a GAN step (`update_keys`).

    noise: the generator's inputs (`generator_inputs`); first_pass / second_pass: dropout in the discriminator's
    first and second pass over a batch (a critic update scores real then fake, the generator update fake then
    real); penalty: dropout in the gradient penalty's pass; interpolation: the penalty's interpolation weights.
    """

    noise: jax.Array
    first_pass: jax.Array
    second_pass: jax.Array
    penalty: jax.Array
    interpolation: jax.Array


def update_keys(step_key: jax.Array, update: int) -> UpdateKeys:
    """The keys of update `update` of a GAN step whose key is `step_key`: critic updates are 0..n_critic-1 and
    the generator update is n_critic. Every device derives the same keys (per-device noise is cut from the
    global draw), so this is the whole of a step's randomness."""
    return UpdateKeys(*jax.random.split(jax.random.fold_in(step_key, update), 5))


def generator_inputs(key: jax.Array, rows: int, *, latent_dim: int, num_classes: int = 0,
                     axis_name: str | None = None) -> tuple[jax.Array, jax.Array | None]:
    """This device's rows of the generator's inputs for one update: z ~ N(0, I) [rows, latent_dim] and, for a
    conditional generator, labels uniform over the classes [rows] (else None).

    z and the labels come from `key`'s two halves; under a device axis each is cut from the global batch's
    draw (`parallel.local_rows`), so N devices draw what one device draws for the same global batch.
    """
    z_key, label_key = jax.random.split(key)
    z = local_rows(jax.random.normal, z_key, (rows, latent_dim), axis_name)
    if not num_classes:
        return z, None
    draw_labels = lambda k, shape: jax.random.randint(k, shape, 0, num_classes)
    return z, local_rows(draw_labels, label_key, (rows,), axis_name)


def generate(generator, params, model_state, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Generator images in [-1, 1] in inference mode (BatchNorm running statistics)."""
    return generator.apply({"params": params, **model_state}, z, labels, train=False)


def sample(generator, state, key: jax.Array, num: int, labels: jax.Array | None = None) -> jax.Array:
    """`num` images in [0, 1] from z ~ N(0, I) drawn with `key`, using the EMA generator weights.

    Conditional generators take `labels` [num] (default: balanced over the classes).
    """
    if generator.num_classes and labels is None:
        labels = balanced_labels(num, generator.num_classes)
    z = jax.random.normal(key, (num, generator.latent_dim))
    images = generate(generator, state.ema_params["generator"], state["generator"].model_state, z, labels)
    return data.to_unit_range(images, data.SIGNED)


def interpolate_latents(z0: jax.Array, z1: jax.Array, num: int, *, spherical: bool = False) -> jax.Array:
    """`num` latents from z0 to z1 [..., D], both ends included: [num, ..., D].

    Linear, or spherical (slerp along the great circle, White 2016), which keeps the path at the norm typical
    of N(0, I) draws instead of cutting through the low-density middle of the Gaussian.
    """
    t = jnp.linspace(0.0, 1.0, num).reshape(num, *([1] * z0.ndim))
    if not spherical:
        return (1 - t) * z0 + t * z1
    cos = jnp.sum(z0 * z1, -1, keepdims=True) / (jnp.linalg.norm(z0, axis=-1, keepdims=True)
                                                  * jnp.linalg.norm(z1, axis=-1, keepdims=True))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    sin = jnp.sin(omega)
    slerp = (jnp.sin((1 - t) * omega) * z0 + jnp.sin(t * omega) * z1) / jnp.where(sin > 1e-6, sin, 1.0)
    return jnp.where(sin > 1e-6, slerp, (1 - t) * z0 + t * z1)  # (anti)parallel ends: the straight line


def latent_walks(generator, state, key: jax.Array, *, rows: int, num: int, spherical: bool = False) -> jax.Array:
    """Images [rows, num, H, W, C] in [0, 1]: row r walks from one draw z ~ N(0, I) to another in `num` steps
    (EMA weights; a conditional generator keeps one class per row, class r mod num_classes)."""
    start_key, end_key = jax.random.split(key)
    z0, z1 = (jax.random.normal(k, (rows, generator.latent_dim)) for k in (start_key, end_key))
    z = interpolate_latents(z0, z1, num, spherical=spherical).swapaxes(0, 1).reshape(rows * num, -1)
    labels = jnp.repeat(balanced_labels(rows, generator.num_classes), num) if generator.num_classes else None
    images = generate(generator, state.ema_params["generator"], state["generator"].model_state, z, labels)
    return data.to_unit_range(images, data.SIGNED).reshape(rows, num, *images.shape[1:])


def class_grid(generator, state, key: jax.Array, *, per_class: int) -> jax.Array:
    """A conditional generator's images [num_classes, per_class, H, W, C] in [0, 1]: row c is class c, and
    column j uses the same z in every row, so a column holds the style fixed while the class changes."""
    z = jnp.tile(jax.random.normal(key, (per_class, generator.latent_dim)), (generator.num_classes, 1))
    labels = jnp.repeat(jnp.arange(generator.num_classes), per_class)
    images = generate(generator, state.ema_params["generator"], state["generator"].model_state, z, labels)
    return data.to_unit_range(images, data.SIGNED).reshape(generator.num_classes, per_class, *images.shape[1:])


def discriminate(discriminator, state, images01: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Discriminator scores (logits) [B] of [0, 1] images, inference mode."""
    variables = state["discriminator"].variables()
    logits, _ = discriminator.apply(variables, data.preprocess(images01, value_range=data.SIGNED), labels, train=False)
    return logits


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
    """The decay used at update `step` (1-based): min(decay, (1 + step) / (10 + step)).

    The warm-up (as TensorFlow's ExponentialMovingAverage with num_updates) keeps early EMA weights from
    being dominated by the random initialisation when runs are short.
    """
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema_params, params, decay: float, step: jax.Array):
    """ema <- d * ema + (1 - d) * params with d = ema_decay(decay, step) (decay 0: the EMA is the params)."""
    return optax.incremental_update(params, ema_params, 1.0 - ema_decay(decay, step))


def running_mean(average, params, count: jax.Array):
    """The mean of `count` + 1 values given the mean of the first `count` and the next value: historical
    averaging's (1/t) sum_i theta_i, updated in place of storing the history."""
    return jax.tree.map(lambda a, p: a + (p - a) / (count + 1).astype(a.dtype), average, params)
