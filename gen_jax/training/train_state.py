"""Train states: pytrees holding everything a step updates. Keys are not stored: they derive from (seed, step).

`TrainState` is one network with its own optax state; `AdversarialState` is a named collection of them (a GAN's
generator and discriminator, CycleGAN's four networks) plus EMA weights, historical averages and image pools.
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


class AdversarialState(struct.PyTreeNode):
    """Networks trained against each other: a GAN's generator and discriminator, CycleGAN's two of each.

    networks: name -> TrainState, each with its own params, model state and optax state (its own optimizer
      and learning rate).
    ema_params: name -> exponential moving average of that generator's params (GANs sample with it; {} if none).
    averages: name -> running mean of that network's params for historical averaging, or None when off.
    pools: name -> image pool of generated images shown to that discriminator (CycleGAN; {} if none).
    Spectral norm's power-iteration vectors live in a network's model_state ('spectral' collection).
    """

    networks: dict
    ema_params: dict
    averages: Any = None
    pools: Any = None

    def __getitem__(self, name: str) -> TrainState:
        return self.networks[name]

    def with_network(self, name: str, network: TrainState) -> "AdversarialState":
        """This state with network `name` replaced."""
        return self.replace(networks={**self.networks, name: network})

    @classmethod
    def create(cls, networks: dict, *, ema: tuple = (), historical_averaging: bool = False,
               pools: dict | None = None) -> "AdversarialState":
        """The initial state: EMA copies of the networks named in `ema`, historical averages of every network
        when `historical_averaging`, and the given image pools."""
        averages = {name: network.params for name, network in networks.items()} if historical_averaging else None
        return cls(networks=dict(networks), ema_params={name: networks[name].params for name in ema},
                   averages=averages, pools={} if pools is None else pools)
