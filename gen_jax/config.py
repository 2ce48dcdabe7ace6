"""Config schemas: the sections every run has, and each model family's defaults. Config files in configs/
start from one of these and override fields; the result is locked, so a misspelt key is an error, not a
silently ignored setting.
"""
from __future__ import annotations

import ml_collections

from gen_jax.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
    """Sections shared by every family: seed, data, train loop, evaluation."""
    config = ml_collections.ConfigDict()
    config.task = ""
    config.seed = 0
    config.data = ml_collections.ConfigDict(dict(
        source="digits",      # digits | idx:DIR | folder:DIR | tfds:NAME
        batch_size=128,       # global batch, split over all local devices
        binarize=False,       # dynamic binarisation (VAE likelihoods on MNIST)
        tfds_data_dir="",     # where prepared tfds data sets live ('' = tfds default)
    ))
    config.train = ml_collections.ConfigDict(dict(
        steps=3000,
        steps_per_call=1,     # >1 runs that many steps per compiled call (lax.scan); pays for MLPs, not convs on CPU
        log_every=100,
        sample_every=1000,    # write sample grids every K steps (and at the end)
        checkpoint_every=1000,
        keep_checkpoints=3,
        eval_every=0,         # 0: evaluate at the end only
        progress=True,        # show a progress bar
    ))
    config.eval = ml_collections.ConfigDict(dict(batch_size=500))
    return config


def optimizer_config(learning_rate: float, b1: float = 0.9, b2: float = 0.999) -> ml_collections.ConfigDict:
    """One optimizer's settings: name (adam | adamw | rmsprop | sgd), learning rate, moments, decay, clipping."""
    return ml_collections.ConfigDict(dict(name="adam", learning_rate=learning_rate, b1=b1, b2=b2,
                                          weight_decay=0.0, grad_clip_norm=0.0))


def vae_config() -> ml_collections.ConfigDict:
    """The VAE family: the seed's MLP VAE on digits, Adam 1e-3."""
    config = base_config()
    config.task = "vae"
    config.model = ml_collections.ConfigDict(dict(name="mlp_vae", latent_dim=20, hidden_dims=(256, 128)))
    config.loss = ml_collections.ConfigDict(dict(beta=1.0, likelihood="bernoulli"))
    config.optim = optimizer_config(1e-3)
    config.eval.iwae_samples = 0  # >0: also estimate the test NLL with that many importance samples
    config.lock()
    return config


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks values that a schema cannot, and locks the config against new keys."""
    if config.train.steps <= 0:
        raise ConfigError(f"train.steps must be positive, got {config.train.steps}")
    for key in ("steps_per_call", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
        if config.train[key] <= 0:
            raise ConfigError(f"train.{key} must be positive, got {config.train[key]}")
    config.lock()
    return config
