"""Mixed precision at a module's boundary: compute in bfloat16, keep parameters and optimizer state in float32.

`compute_in("bfloat16", module)` is the same module (same variables, same init) whose `apply` casts its
parameters and floating inputs to bfloat16, runs every layer in bfloat16, and returns float32 outputs and model
state (BatchNorm statistics, spectral-norm vectors). Gradients reach the float32 parameters through the casts,
so optax updates and checkpoints are unchanged; only the step's arithmetic is cheaper where the hardware has
bfloat16 units (GPU tensor cores, TPU MXUs).
"""
from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import ConfigError

COMPUTE_DTYPES = ("float32", "bfloat16")


def cast_floating(dtype, tree):
    """Every floating array of `tree` as `dtype`; integer labels, keys and Python values untouched."""
    return jax.tree.map(lambda x: x.astype(dtype) if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)
                        else x, tree)


def _params_in(dtype, variables):
    return {name: cast_floating(dtype, v) if name == "params" else v for name, v in variables.items()}


def _state_out(variables):
    return {name: v if name == "params" else cast_floating(jnp.float32, v) for name, v in variables.items()}


def compute_in(dtype: str, module: nn.Module) -> nn.Module:
    """`module` computing in `dtype` ('float32' returns it unchanged; 'bfloat16' as the module docstring)."""
    if dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"train.compute_dtype must be one of {COMPUTE_DTYPES}, got {dtype!r}")
    if dtype == "float32":
        return module
    compute = jnp.dtype(dtype)
    mapped = nn.map_variables(type(module), True, trans_in_fn=functools.partial(_params_in, compute),
                              trans_out_fn=_state_out, mutable=True)

    class Cast(mapped):
        def __call__(self, *args, **kwargs):
            return cast_floating(jnp.float32, super().__call__(*cast_floating(compute, args), **kwargs))

    Cast.__name__ = Cast.__qualname__ = f"{type(module).__name__}In{compute.name.capitalize()}"
    fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
              if f.init and f.name not in ("parent", "name")}
    return Cast(**fields)
