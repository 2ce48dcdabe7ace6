"""What a trained VAE is for: encode, decode, reconstruct, sample, interpolate, score. Pure functions.

Each takes the module and its params first, so `jax.jit(functools.partial(vae.sample, model))` works;
images are float32 NHWC in [0, 1] (Bernoulli means), keys are explicit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from gen_jax import losses


def encode(model, params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior parameters (mean, logvar), each [B, latent_dim]."""
    return model.apply({"params": params}, images, method=model.encode)


def decode(model, params, z: jax.Array) -> jax.Array:
    """Decoder means in [0, 1] for latents z [B, latent_dim]: images [B, H, W, C]."""
    return jax.nn.sigmoid(model.apply({"params": params}, z, method=model.decode))


def reconstruct(model, params, images: jax.Array) -> jax.Array:
    """Deterministic reconstruction: decode the posterior mean."""
    mean, _ = encode(model, params, images)
    return decode(model, params, mean)


def sample(model, params, key: jax.Array, num: int) -> jax.Array:
    """`num` images decoded from prior draws z ~ N(0, I)."""
    return decode(model, params, jax.random.normal(key, (num, model.latent_dim)))


def interpolate(model, params, start: jax.Array, end: jax.Array, num: int = 8) -> jax.Array:
    """Images along the straight line between the posterior means of `start` and `end` [B, ...].

    Returns [B, num, H, W, C]: row b walks from start[b] to end[b].
    """
    z0, _ = encode(model, params, start)
    z1, _ = encode(model, params, end)
    t = jnp.linspace(0.0, 1.0, num)[None, :, None]
    z = (1 - t) * z0[:, None] + t * z1[:, None]
    out = decode(model, params, z.reshape(-1, z.shape[-1]))
    return out.reshape(start.shape[0], num, *out.shape[1:])


def loss_terms(model, params, images: jax.Array, eps: jax.Array, *, likelihood: str = "bernoulli"):
    """(reconstruction NLL, KL) per example [B] for given standard-normal noise eps [B, latent_dim]."""
    decoded, mean, logvar = model.apply({"params": params}, images, eps)
    return losses.vae_terms(decoded=decoded, targets=images, mean=mean, logvar=logvar, likelihood=likelihood)


def negative_elbo(model, params, images: jax.Array, key: jax.Array, *, likelihood: str = "bernoulli"):
    """Per-example negative ELBO in nats [B], from one posterior sample drawn with `key`."""
    recon, kl = loss_terms(model, params, images, jax.random.normal(key, (images.shape[0], model.latent_dim)),
                           likelihood=likelihood)
    return recon + kl
