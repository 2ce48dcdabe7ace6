"""What a trained deterministic autoencoder (vanilla, sparse, denoising) is for: code, decode, reconstruct,
score. Pure functions with the same names and arguments as `families.vae`'s, so applications use either.

Each takes the module (`models.autoencoders.Autoencoder`) and its params first; images are float32 NHWC in
[0, 1]. Autoencoders are unconditional: `labels` must be None (it is there to match the VAE's signature).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _unconditional(labels) -> None:
    if labels is not None:
        raise ValueError("a deterministic autoencoder takes no labels")


def code(model, params, images: jax.Array, *, labels=None) -> jax.Array:
    """Codes [B, code_dim]: activation(encoder(x))."""
    _unconditional(labels)
    return model.apply({"params": params}, images, method=model.encode)


def decode(model, params, codes: jax.Array, *, labels=None) -> jax.Array:
    """Images in [0, 1] (sigmoid of the decoder's logits) for codes [B, code_dim]."""
    _unconditional(labels)
    return jax.nn.sigmoid(model.apply({"params": params}, codes, method=model.decode))


def reconstruct(model, params, images: jax.Array, *, labels=None) -> jax.Array:
    """decode(code(x)): reconstructions in [0, 1]."""
    return decode(model, params, code(model, params, images, labels=labels))


def anomaly_score(model, params, images: jax.Array, key: jax.Array | None = None, *, labels=None,
                  likelihood: str = "") -> jax.Array:
    """Per-image anomaly score [B]: the squared reconstruction error summed over pixels (no noise: `key` and
    `likelihood` are unused, there to match the VAE's signature)."""
    return jnp.sum((reconstruct(model, params, images, labels=labels) - images) ** 2, axis=(1, 2, 3))
