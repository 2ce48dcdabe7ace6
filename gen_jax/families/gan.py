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
