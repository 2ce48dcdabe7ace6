"""Layers the networks share: spectrally normalised Dense/Conv, resolution changes by reshaping
(space-to-depth, depth-to-space), batch-consistent dropout, and the two minibatch layers that let a
discriminator see a whole batch (Salimans et al. 2016; Karras et al. 2018).

Layers that look across the batch or draw noise take an `axis_name`: under `pmap` they see the global batch
(`lax.all_gather`) or cut their noise from the global draw (`parallel.local_rows`), so N devices compute what
one device computes on the same global batch. With axis_name=None they are ordinary single-device layers.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gen_jax.errors import ConfigError
from gen_jax.parallel import local_rows

SPECTRAL = "spectral"  # variable collection of the power-iteration vectors (persistent, not trained)


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(x * x) + eps)


def power_iteration(matrix: jax.Array, u: jax.Array, n_steps: int = 1) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`n_steps` of power iteration for the largest singular value of `matrix` [M, N] (Miyato et al. 2018).

    Args:
      matrix: [M, N], a kernel reshaped to (fan_in, out).
      u: [N] the running estimate of the top right singular vector.
    Returns:
      (u [N], v [M], sigma = v^T W u). u and v carry no gradient; sigma is differentiable in `matrix`.
    """
    w = lax.stop_gradient(matrix)
    for _ in range(max(1, n_steps)):
        v = _l2_normalize(w @ u)
        u = _l2_normalize(w.T @ v)
    u, v = lax.stop_gradient(u), lax.stop_gradient(v)
    return u, v, v @ matrix @ u


def spectral_normalize(module: nn.Module, kernel: jax.Array, *, n_steps: int, update_stats: bool) -> jax.Array:
    """kernel / sigma(kernel), with u persisted in `module`'s 'spectral' collection (plus the last sigma).

    u is updated only when `update_stats` (and the collection is mutable), so the estimate improves by one
    power-iteration step per training update, as in Miyato et al. 2018.
    """
    matrix = kernel.reshape(-1, kernel.shape[-1])
    u_var = module.variable(SPECTRAL, "u", lambda: _l2_normalize(
        jax.random.normal(module.make_rng("params"), (matrix.shape[-1],), matrix.dtype)))
    sigma_var = module.variable(SPECTRAL, "sigma", lambda: jnp.ones((), matrix.dtype))
    u, _, sigma = power_iteration(matrix, u_var.value, n_steps)
    if update_stats and not module.is_initializing():
        u_var.value, sigma_var.value = u, lax.stop_gradient(sigma)
    return kernel / sigma


WEIGHT_INITS = ("flax", "torch")


def initializers(weight_init: str, fan_in: int):
    """(kernel_init, bias_init) of a layer with `fan_in` inputs per output.

    'flax': Flax's default, kernel lecun_normal (std 1/sqrt(fan_in)) and zero bias. 'torch': PyTorch's
    nn.Linear / nn.Conv2d default, kernel and bias ~ U(+-1/sqrt(fan_in)), a sqrt(3) narrower kernel: what the
    seed's networks start from (docs/gans.md measures both).
    """
    if weight_init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros
    if weight_init == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        bias_init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), bias_init
    raise ConfigError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")


class Dense(nn.Module):
    """nn.Dense with a choice of initialisation (`initializers`) and an optional spectral normalisation."""

    features: int
    spectral_norm: bool = False
    power_iterations: int = 1
    weight_init: str = "flax"

    @nn.compact
    def __call__(self, x, *, update_stats: bool = False):
        kernel_init, bias_init = initializers(self.weight_init, x.shape[-1])
        kernel = self.param("kernel", kernel_init, (x.shape[-1], self.features))
        if self.spectral_norm:
            kernel = spectral_normalize(self, kernel, n_steps=self.power_iterations, update_stats=update_stats)
        return x @ kernel + self.param("bias", bias_init, (self.features,))


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, strides=(1, 1), padding="SAME"):
    return lax.conv_general_dilated(x, kernel, tuple(strides), padding, dimension_numbers=_NHWC)


@jax.custom_vjp
def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' NHWC convolution (odd kernel sizes) with a fast kernel gradient on XLA:CPU.

    XLA:CPU computes a convolution's kernel gradient as a convolution with a huge (H x W) window, ~20x
    slower than the forward pass for a DCGAN generator's 28x28 128 -> 64 conv; here it is one matmul per
    kernel tap (`_kernel_grad`), and the input gradient is the forward convolution with the flipped kernel.
    Same values as `lax.conv_general_dilated`.
    """
    return _conv(x, kernel)


def _shift(x: jax.Array, di: int, dj: int) -> jax.Array:
    """out[n, h, w] = x[n, h + di, w + dj], zero outside x: one pad op, no padded copy to slice."""
    return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (-di, di, 0), (-dj, dj, 0), (0, 0, 0)])


def _kernel_grad(x: jax.Array, g: jax.Array, kernel_shape) -> jax.Array:
    """d(sum g * conv_same(x, k)) / dk: tap (i, j) is shift(x, i - ci, j - cj)^T g = x^T shift(g, ci - i, cj - j).

    The operand with fewer channels is the one shifted (9 copies of it instead of an im2col matrix of the
    other, which XLA:CPU concatenates slowly), and each matmul puts the small side first (timings against
    im2col and XLA's own gradient: docs/design-notes.md).
    """
    kh, kw, cin, cout = kernel_shape
    taps = [(i - kh // 2, j - kw // 2) for i in range(kh) for j in range(kw)]
    xs, gs = x.reshape(-1, cin), g.reshape(-1, cout)
    if cin <= cout:
        grads = [_shift(x, di, dj).reshape(-1, cin).T @ gs for di, dj in taps]
    else:
        grads = [(_shift(g, -di, -dj).reshape(-1, cout).T @ xs).T for di, dj in taps]
    return jnp.stack(grads).reshape(kernel_shape)


def _conv_same_fwd(x, kernel):
    return _conv(x, kernel), (x, kernel)


def _conv_same_bwd(residuals, g):
    x, kernel = residuals
    grad_x = _conv(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
    return grad_x, _kernel_grad(x, g, kernel.shape)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def space_to_depth(x: jax.Array, block: int = 2) -> jax.Array:
    """[B, H, W, C] -> [B, H/block, W/block, block*block*C]: each block x block patch becomes one pixel."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // block, w // block, block * block * c)


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
    """The inverse of `space_to_depth`: [B, H, W, block*block*C] -> [B, H*block, W*block, C]."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, block, block, c // (block * block)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * block, w * block, c // (block * block))


class Conv(nn.Module):
    """NHWC convolution (HWIO kernel) with a choice of initialisation and an optional spectral normalisation.

    `padding` is passed to `lax.conv_general_dilated`: ((1, 1), (1, 1)) reproduces PyTorch's padding=1 for
    stride-2 3x3 convs exactly (Flax 'SAME' pads asymmetrically there).
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: str | Sequence[tuple[int, int]] = "SAME"
    spectral_norm: bool = False
    power_iterations: int = 1
    weight_init: str = "flax"

    @nn.compact
    def __call__(self, x, *, update_stats: bool = False):
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel_init, bias_init = initializers(self.weight_init, math.prod(shape[:-1]))
        kernel = self.param("kernel", kernel_init, shape)
        if self.spectral_norm:
            kernel = spectral_normalize(self, kernel, n_steps=self.power_iterations, update_stats=update_stats)
        padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
        odd = all(k % 2 for k in self.kernel_size)
        if padding == "SAME" and tuple(self.strides) == (1, 1) and odd and jax.default_backend() == "cpu":
            y = conv_same(x, kernel)  # same values; kernel gradient up to 14x faster on XLA:CPU
        else:
            y = _conv(x, kernel, self.strides, padding)
        return y + self.param("bias", bias_init, (self.features,))


class Dropout(nn.Module):
    """Inverted dropout whose mask is cut from the global batch's draw, so N devices match one device.

    channelwise=True drops whole feature maps per example (PyTorch's Dropout2d). Uses the 'dropout' rng.
    """

    rate: float
    channelwise: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, deterministic: bool):
        if deterministic or self.rate == 0.0:
            return x
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],) if self.channelwise else x.shape
        keep = local_rows(lambda k, s: jax.random.bernoulli(k, 1.0 - self.rate, s), self.make_rng("dropout"),
                          shape, self.axis_name)
        return jnp.where(keep, x / (1.0 - self.rate), 0.0)


def _global_batch(x: jax.Array, axis_name: str | None) -> jax.Array:
    return x if axis_name is None else lax.all_gather(x, axis_name, tiled=True)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, sec. 3.2): appends o(x_i) to features f(x_i) [B, A].

    M_i = f(x_i) T reshaped to [num_kernels, kernel_dim]; o(x_i)_b = sum_j exp(-||M_i,b - M_j,b||_1), the sum
    over every example j of the (global) batch, x_i included as in the paper. Returns [B, A + num_kernels].
    A batch of near-identical samples (a collapsed generator) gives large o, which D learns to spot.
    """

    num_kernels: int = 32
    kernel_dim: int = 8
    axis_name: str | None = None

    @nn.compact
    def __call__(self, f):
        t = self.param("T", nn.initializers.normal(0.05), (f.shape[-1], self.num_kernels * self.kernel_dim))
        m = (f @ t).reshape(f.shape[0], self.num_kernels, self.kernel_dim)
        everyone = _global_batch(m, self.axis_name)
        l1 = jnp.sum(jnp.abs(m[:, None] - everyone[None]), axis=-1)  # [B, B_global, K]
        return jnp.concatenate([f, jnp.sum(jnp.exp(-l1), axis=1)], axis=-1)


class MinibatchStddev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, sec. 3): appends one feature, the average over
    features of the per-feature standard deviation within groups of `group_size` consecutive examples.

    Works on [B, F] or [B, H, W, C] (adds one constant channel). A batch B not divisible by group_size (an
    evaluation batch) uses groups of gcd(group_size, B). Groups are contiguous rows, so with a per-device
    batch divisible by group_size a sharded run forms the same groups as one device.
    """

    group_size: int = 4

    @nn.compact
    def __call__(self, x):
        g = math.gcd(self.group_size, x.shape[0])
        groups = x.reshape(x.shape[0] // g, g, *x.shape[1:])
        std = jnp.sqrt(jnp.var(groups, axis=1) + 1e-8)             # [B/g, ...]
        stat = jnp.mean(std.reshape(std.shape[0], -1), axis=-1)  # [B/g]
        stat = jnp.repeat(stat, g)                               # [B]
        stat = jnp.broadcast_to(stat.reshape((-1,) + (1,) * (x.ndim - 1)), (*x.shape[:-1], 1))
        return jnp.concatenate([x, stat], axis=-1)
