"""Optimizers from config sections: `make_optimizer(config.optim_g, num_updates)` is the whole path from a
config's `optim*` section to an optax transformation (a learning-rate schedule, an optional clip, the rule)."""
from __future__ import annotations

import optax

from gen_jax.config import OPTIMIZERS, SCHEDULES
from gen_jax.errors import ConfigError


def learning_rate(optim, num_updates: int):
    """The learning rate of an `optimizer_config` section: a number, or an optax schedule of the update count
    ('cosine' decays to 0 along a half cosine over `num_updates`; 'linear_second_half' holds it for the first
    half and decays it linearly to 0 over the second, as CycleGAN and pix2pix train)."""
    if optim.schedule == "constant":
        return optim.learning_rate
    if optim.schedule == "cosine":
        return optax.cosine_decay_schedule(optim.learning_rate, num_updates)
    if optim.schedule == "linear_second_half":
        half = num_updates // 2
        return optax.join_schedules([optax.constant_schedule(optim.learning_rate),
                                     optax.linear_schedule(optim.learning_rate, 0.0, num_updates - half)], [half])
    raise ConfigError(f"unknown learning-rate schedule {optim.schedule!r}: use {' or '.join(SCHEDULES)}")


def make_optimizer(optim, num_updates: int) -> optax.GradientTransformation:
    """The optax transformation of an `optimizer_config` section, for a run of `num_updates` updates."""
    lr = learning_rate(optim, num_updates)
    if optim.name == "adam":
        tx = optax.adam(lr, b1=optim.b1, b2=optim.b2)
    elif optim.name == "adamw":
        tx = optax.adamw(lr, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    elif optim.name == "rmsprop":
        # PyTorch's RMSprop (the WGAN reference): smoothing constant alpha = b2, eps outside the square root
        tx = optax.rmsprop(lr, decay=optim.b2, eps=1e-8, eps_in_sqrt=False)
    elif optim.name == "sgd":
        tx = optax.sgd(lr, momentum=optim.b1 or None)
    else:
        raise ConfigError(f"unknown optimizer {optim.name!r}: use {', '.join(OPTIMIZERS)}")
    if optim.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx
