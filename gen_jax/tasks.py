"""Tasks: what the one train loop needs from a model family, built from a config.

A `Task` bundles pure functions: create the initial state, the per-device train step, evaluation on the
held-out split, and the pictures to write. The loop (`gen_jax.loop`) knows nothing else about the family.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen_jax import data, models, steps, vae
from gen_jax.errors import ConfigError
from gen_jax.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class Task:
    """A model family's side of training.

    init_state(key) -> state (a pytree; unreplicated)
    train_step(state, batch, key) -> (state, metrics), per device, averaging over axis 'batch'
    evaluate(state, dataset, key) -> {name: float} on the held-out split
    pictures(state, dataset, key) -> {name: images [N, H, W, C] in [0, 1]} for sample grids
    """

    init_state: Callable[[jax.Array], Any]
    train_step: Callable
    evaluate: Callable[[Any, data.Dataset, jax.Array], dict]
    pictures: Callable[[Any, data.Dataset, jax.Array], dict]


def make_optimizer(optim) -> optax.GradientTransformation:
    """An optax transformation from an `optimizer_config` section."""
    if optim.name == "adam":
        tx = optax.adam(optim.learning_rate, b1=optim.b1, b2=optim.b2)
    elif optim.name == "adamw":
        tx = optax.adamw(optim.learning_rate, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    elif optim.name == "rmsprop":
        tx = optax.rmsprop(optim.learning_rate)
    elif optim.name == "sgd":
        tx = optax.sgd(optim.learning_rate, momentum=optim.b1 or None)
    else:
        raise ConfigError(f"unknown optimizer {optim.name!r}: use adam, adamw, rmsprop or sgd")
    if optim.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx


def batched(fn: Callable, array, batch_size: int) -> np.ndarray:
    """Concatenates fn(start, array[start:start+batch_size]) over the leading axis, last partial chunk too."""
    return np.concatenate([np.asarray(fn(i, array[i:i + batch_size])) for i in range(0, len(array), batch_size)])


def vae_task(config, dataset: data.Dataset) -> Task:
    """The VAE family (beta-VAE, MLP or conv) from a `vae_config`."""
    model = models.create(config.model.name, image_shape=dataset.image_shape,
                          **{k: v for k, v in config.model.items() if k != "name"})
    likelihood, binarize = config.loss.likelihood, config.data.binarize

    def init_state(key):
        params = model.init(key, jnp.zeros((1, *dataset.image_shape)), jnp.zeros((1, model.latent_dim)))
        return TrainState.create(params=params["params"], tx=make_optimizer(config.optim))

    @jax.jit
    def _scores(params, images, key):
        neg_elbo = vae.negative_elbo(model, params, images, key, likelihood=likelihood)
        sq_err = jnp.mean((vae.reconstruct(model, params, images) - images) ** 2, axis=(1, 2, 3))
        return jnp.stack([neg_elbo, sq_err], axis=1)

    def evaluate(state, dataset, key):
        images = jnp.asarray(dataset.test_images)
        binarize_key, elbo_key = jax.random.split(key)
        if binarize:  # one fixed binarisation of the test set
            images = data.preprocess(images, uniform=jax.random.uniform(binarize_key, images.shape))
        scores = batched(lambda i, x: _scores(state.params, x, jax.random.fold_in(elbo_key, i)), images,
                         config.eval.batch_size)
        return {"neg_elbo": float(scores[:, 0].mean()), "recon_mse": float(scores[:, 1].mean()),
                "num_test_images": len(images)}

    @jax.jit
    def _pictures(params, originals, key):
        recons = vae.reconstruct(model, params, originals)
        rows = jnp.stack([originals, recons]).reshape(2, 4, 8, *originals.shape[1:]).swapaxes(0, 1)
        return {"samples": vae.sample(model, params, key, 64), "reconstructions": rows.reshape(originals.shape[0] * 2, *originals.shape[1:])}

    def pictures(state, dataset, key):
        """64 prior samples, and 4 row pairs: 8 test images over their reconstructions."""
        return _pictures(state.params, jnp.asarray(dataset.test_images[:32]), key)

    return Task(init_state, steps.make_vae_step(model, beta=config.loss.beta, likelihood=likelihood,
                                               binarize=binarize), evaluate, pictures)


FAMILIES = {"vae": vae_task}


def build(config, dataset: data.Dataset) -> Task:
    """The Task for `config.task` on `dataset`."""
    if config.task not in FAMILIES:
        raise ConfigError(f"unknown task {config.task!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[config.task](config, dataset)
