"""Train states: pytrees holding everything a step updates. Keys are not stored: they derive from (seed, step).

`TrainState` is one network with its own optax state; `GANState` holds two of them (generator and
discriminator each with its own optimizer, learning rate and optax state) plus the generator's EMA weights.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """One network: parameters, optimizer state, and non-trainable collections (e.g. batch_stats)."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, *, params, tx: optax.GradientTransformation, model_state=None) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   model_state={} if model_state is None else model_state, tx=tx)

    def variables(self) -> dict:
        """The Flax variables dict ({'params': ..., **model_state}) to pass to `module.apply`."""
        return {"params": self.params, **self.model_state}

    def apply_gradients(self, grads, model_state=None) -> "TrainState":
        """One optimizer update; `model_state` replaces the non-trainable collections when given."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            opt_state=opt_state,
                            model_state=self.model_state if model_state is None else model_state)


class GANState(struct.PyTreeNode):
    """A GAN: generator and discriminator, each a TrainState with its own optimizer and optax state.

    ema_params: exponential moving average of the generator's params (used for sampling and evaluation; with
      decay 0 it equals the params). averages: running means of both networks' params for historical
      averaging ({'generator': ..., 'discriminator': ...}), or None when that penalty is off.
    Spectral norm's power-iteration vectors live in the discriminator's model_state ('spectral' collection).
    """

    generator: TrainState
    discriminator: TrainState
    ema_params: Any
    averages: Any = None

    @property
    def step(self) -> jax.Array:
        """Generator updates so far."""
        return self.generator.step

    @classmethod
    def create(cls, *, generator: TrainState, discriminator: TrainState, historical_averaging: bool = False):
        averages = ({"generator": generator.params, "discriminator": discriminator.params}
                    if historical_averaging else None)
        return cls(generator=generator, discriminator=discriminator, ema_params=generator.params, averages=averages)
