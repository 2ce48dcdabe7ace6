"""Train-step factories. Each returns a pure per-device step `(state, batch, key) -> (state, metrics)`.

Steps see only arrays: what they need from a config is bound when the factory is called. Gradients and
metrics are averaged with `lax.pmean` over `axis_name`, so the loop can map a step over devices with
`jax.pmap`; with axis_name=None the same step runs under a plain `jax.jit`. `batch` is
{"image": float32 [B, H, W, C] in [0, 1], "label": int32 [B]}; `key` is this step's key, the same on
every device (per-device noise is cut from the global batch's draw, see `parallel.local_rows`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from gen_jax import data, vae
from gen_jax.parallel import local_rows, pmean


def make_vae_step(model, *, beta: float = 1.0, likelihood: str = "bernoulli", binarize: bool = False,
                  axis_name: str | None = "batch"):
    """The (beta-)VAE step: minimise mean(recon NLL + beta * KL) over the batch, one posterior sample each.

    Args:
      model: a `gen_jax.models.autoencoders.VAE`.
      beta: weight of the KL term (1 gives the ELBO; Higgins et al. 2017 for beta != 1).
      likelihood: 'bernoulli' (decoder logits, data in [0, 1]) or 'gaussian' (unit variance).
      binarize: dynamically binarise the batch (fresh Bernoulli draw each step).
      axis_name: the device axis to average over, or None when not mapped.
    Returns:
      step(state: TrainState, batch, key) -> (state, metrics) with metrics loss, recon, kl, neg_elbo.
    """

    def loss_fn(params, x, eps):
        recon, kl = vae.loss_terms(model, params, x, eps, likelihood=likelihood)
        loss = jnp.mean(recon + beta * kl)
        return loss, {"loss": loss, "recon": recon.mean(), "kl": kl.mean(), "neg_elbo": (recon + kl).mean()}

    def step(state, batch, key):
        binarize_key, eps_key = jax.random.split(key)
        images = batch["image"]
        uniform = local_rows(jax.random.uniform, binarize_key, images.shape, axis_name) if binarize else None
        x = data.preprocess(images, uniform=uniform)
        eps = local_rows(jax.random.normal, eps_key, (x.shape[0], model.latent_dim), axis_name)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, x, eps)
        return state.apply_gradients(pmean(grads, axis_name)), pmean(metrics, axis_name)

    return step
