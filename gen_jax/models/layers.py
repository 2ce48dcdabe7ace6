"""Layers the networks share: Dense, Conv (optionally spectrally normalised) and ConvTranspose, whose CPU forms
are the fastest on XLA:CPU and stay fast inside `lax.scan`; resolution changes by reshaping (space-to-depth,
depth-to-space); batch-consistent dropout; and the two minibatch layers that let a discriminator see a whole
batch (Salimans et al. 2016; Karras et al. 2018).

Layers that look across the batch or draw noise take an `axis_name`: under `pmap` they see the global batch
(`lax.all_gather`) or cut their noise from the global draw (`parallel.local_rows`), so N devices compute what
one device computes on the same global batch. With axis_name=None they are ordinary single-device layers.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
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
    return (kernel / sigma).astype(kernel.dtype)  # a bfloat16 kernel stays bfloat16 (u and sigma are float32)


WEIGHT_INITS = ("flax", "torch", "normal")


def initializers(weight_init: str, fan_in: int):
    """(kernel_init, bias_init) of a layer with `fan_in` inputs per output.

    'flax': Flax's default, kernel lecun_normal (std 1/sqrt(fan_in)) and zero bias. 'torch': PyTorch's
    nn.Linear / nn.Conv2d default, kernel and bias ~ U(+-1/sqrt(fan_in)), a sqrt(3) narrower kernel: what the
    seed's networks start from (docs/gans.md measures both). 'normal': kernel N(0, 0.02) and zero bias, the
    DCGAN paper's init (Radford et al. 2016) that the CycleGAN / pix2pix reference uses.
    """
    if weight_init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros
    if weight_init == "normal":
        return nn.initializers.normal(0.02), nn.initializers.zeros
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_loop_safe(x, kernel, strides=(1, 1), padding="SAME"):
    """`_conv` whose two gradients are themselves plain NHWC / HWIO convolutions, for XLA:CPU.

    Autodiff's gradient convolutions have other dimension layouts, which XLA:CPU rewrites into its fast
    kernels' layout only outside loops; inside a `lax.scan` (several train steps per compiled call) it runs
    them as naive loops (jax-ml/jax#12868; docs/speed.md has the cost). The forward pass and both gradients go through
    `_conv_in_order`. The same gradients as autodiff's, and differentiable again (gradient penalties)."""
    return _conv_in_order(x, kernel, strides, _explicit_pads(x.shape, kernel.shape, strides, padding))


def _explicit_pads(x_shape, kernel_shape, strides, padding) -> tuple:
    """((lo, hi), (lo, hi)) of a 'SAME' / 'VALID' padding, or the explicit pairs as they are."""
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides, padding))
    return tuple(map(tuple, padding))


def _conv_in_order(x, kernel, strides, pads, lhs_dilation=(1, 1), rhs_dilation=(1, 1)):
    """An NHWC / HWIO convolution that XLA:CPU compiles with its operands as written and computes right.

    XLA swaps the operands of a convolution whose window (its extent after dilation) has more taps than its
    input has pixels (a 3x3 kernel over a 2x2 map, as in the gradients of small feature maps); the swapped
    form has a reversed window, which XLA:CPU runs as a naive loop. And XLA:CPU computes some convolutions
    with a negative low pad (a crop) wrongly, as autodiff's input gradient of one whose low pad reaches the
    window (window - 1 - low < 0) takes. Such an input is padded (or cropped) and dilated here by `lax.pad`,
    behind an optimization barrier that keeps the pad out of the convolution, which is then 'VALID'."""
    window = [1 + (k - 1) * d for k, d in zip(kernel.shape[:2], rhs_dilation)]
    small = math.prod(window) > math.prod(x.shape[1:3])
    if not small and all(0 <= lo < w for (lo, _), w in zip(pads, window)):
        return lax.conv_general_dilated(x, kernel, tuple(strides), pads, lhs_dilation=tuple(lhs_dilation),
                                        rhs_dilation=tuple(rhs_dilation), dimension_numbers=_NHWC)
    x = lax.optimization_barrier(_dilate(x, lhs_dilation, pads))
    return lax.conv_general_dilated(x, kernel, tuple(strides), "VALID", rhs_dilation=tuple(rhs_dilation),
                                    dimension_numbers=_NHWC)


def _dilate(x: jax.Array, strides: Sequence[int], padding) -> jax.Array:
    """x with strides - 1 zeros between pixels and the (low, high) pads (negative: crops) around, by `lax.pad`."""
    config = [(0, 0, 0), *((lo, hi, s - 1) for s, (lo, hi) in zip(strides, padding)), (0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _conv_loop_safe_fwd(x, kernel, strides, padding):
    pads = _explicit_pads(x.shape, kernel.shape, strides, padding)
    return _conv_in_order(x, kernel, strides, pads), (x, kernel)


def _conv_loop_safe_bwd(strides, padding, residuals, dy):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    pads = _explicit_pads(x.shape, kernel.shape, strides, padding)
    # input gradient: dy dilated by the strides, convolved with the flipped kernel (inputs and outputs swapped)
    input_pads = []
    for size, k, s, (lo, _), out in zip(x.shape[1:3], (kh, kw), strides, pads, dy.shape[1:3]):
        before = k - 1 - lo
        input_pads.append((before, size + k - 1 - ((out - 1) * s + 1) - before))
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv_in_order(dy, flipped, (1, 1), input_pads, lhs_dilation=strides)
    # kernel gradient: channels as the batch, the batch as the features, dy (dilated by the strides) as the kernel
    dk = _conv_in_order(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), pads, rhs_dilation=strides)
    return dx, dk[:, :kh, :kw].transpose(1, 2, 0, 3)


conv_loop_safe.defvjp(_conv_loop_safe_fwd, _conv_loop_safe_bwd)


def cpu_fast_path() -> bool:
    """Whether `Conv` and `ConvTranspose` take their XLA:CPU formulations (`conv_same`, `upsample_conv`,
    `conv_transpose_phases`, `conv_loop_safe`): on the CPU backend only; a GPU or TPU run keeps the plain
    convolutions."""
    return jax.default_backend() == "cpu"


NARROW_OUTPUT = 8  # conv_same's tap-matmul form pays up to this many output channels (docs/speed.md)


def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' NHWC convolution (odd kernel sizes), in the form that is fastest on XLA:CPU.

    A narrow output (at most NARROW_OUTPUT channels, e.g. a decoder's last layer to the image) is one matmul of
    every pixel against all kernel taps, [N*H*W, C_in] @ [C_in, taps * C_out], then the sum of each tap's
    shifted output: the convolution's FLOPs without XLA:CPU's slow narrow-output convolution kernels, and
    autodiff of a matmul for the gradients. Wider outputs are XLA's own convolution and gradients, which
    now beat a matmul per tap (timings: docs/speed.md). Same values as `lax.conv_general_dilated` up to float
    rounding.
    """
    kh, kw, cin, cout = kernel.shape
    if cout > NARROW_OUTPUT:
        return conv_loop_safe(x, kernel)
    taps = x.reshape(-1, cin) @ kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)
    taps = taps.reshape(*x.shape[:3], kh, kw, cout)
    return sum(_shift(taps[..., i, j, :], i - kh // 2, j - kw // 2) for i in range(kh) for j in range(kw))


def _shift(x: jax.Array, di: int, dj: int) -> jax.Array:
    """out[n, h, w] = x[n, h + di, w + dj], zero outside x: one pad op, no padded copy to slice."""
    return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (-di, di, 0), (-dj, dj, 0), (0, 0, 0)])


# Which 3x3 taps land on each of the two source pixels a 2x-upsampled output pixel's 3-tap window covers:
# [output parity, source pixel (the lower first), kernel tap].
_UPSAMPLED_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)


def upsample(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of NHWC maps (PyTorch's nn.Upsample(scale_factor=factor))."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`_conv(upsample(x, 2), kernel)` for a 3x3 kernel, stride 1, 'SAME', computed at x's resolution.

    Output pixel (2i + a, 2j + b) sees a 2x2 window of x, each tap the sum of the 3x3 taps that fall on that
    pixel; the four parities (a, b) are four 2x2 convolutions of x, interleaved by `depth_to_space`: 16/36 of
    the FLOPs, and no upsampled map (timings: docs/speed.md). Same values up to float rounding; the gradients
    follow by autodiff.
    """
    taps = _UPSAMPLED_TAPS.astype(kernel.dtype)
    phases = jnp.einsum("aui,bvj,ijco->abuvco", taps, taps, kernel)
    outs = [conv_loop_safe(x, phases[a, b], (1, 1), ((1 - a, a), (1 - b, b))) for a in (0, 1) for b in (0, 1)]
    return depth_to_space(jnp.concatenate(outs, axis=-1))


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


def _conv_kernel(module: nn.Module, in_features: int):
    """The HWIO "kernel" parameter of a Conv / ConvTranspose `module`, and its bias init (`initializers`)."""
    shape = (*module.kernel_size, in_features, module.features)
    kernel_init, bias_init = initializers(module.weight_init, math.prod(shape[:-1]))
    return module.param("kernel", kernel_init, shape), bias_init


def _add_bias(module: nn.Module, y: jax.Array, bias_init) -> jax.Array:
    """y plus the "bias" parameter of a Conv / ConvTranspose `module` (y unchanged when it has none)."""
    return y + module.param("bias", bias_init, (module.features,)) if module.use_bias else y


class Conv(nn.Module):
    """NHWC convolution (HWIO kernel) with a choice of initialisation and an optional spectral normalisation.

    `padding` is passed to `lax.conv_general_dilated`: ((1, 1), (1, 1)) reproduces PyTorch's padding=1 for
    stride-2 3x3 convs exactly (Flax 'SAME' pads asymmetrically there). `upsample` > 1 first upsamples the
    input by nearest neighbour (nn.Upsample(scale_factor=upsample)), at no extra parameters. On XLA:CPU
    (`cpu_fast_path`; `fast_path` forces it on or off) stride-1 'SAME' convs take `conv_same` and 2x-upsampled
    3x3 ones `upsample_conv`: the same function, computed faster there.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    spectral_norm: bool = False
    power_iterations: int = 1
    weight_init: str = "flax"
    upsample: int = 1
    fast_path: bool | None = None

    @nn.compact
    def __call__(self, x, *, update_stats: bool = False):
        kernel, bias_init = _conv_kernel(self, x.shape[-1])
        if self.spectral_norm:
            kernel = spectral_normalize(self, kernel, n_steps=self.power_iterations, update_stats=update_stats)
        padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
        same = padding == "SAME" and tuple(self.strides) == (1, 1) and all(k % 2 for k in self.kernel_size)
        fast = cpu_fast_path() if self.fast_path is None else self.fast_path
        if fast and same and self.upsample == 2 and tuple(self.kernel_size) == (3, 3):
            y = upsample_conv(x, kernel)
        else:
            x = upsample(x, self.upsample) if self.upsample > 1 else x
            if fast:
                y = conv_same(x, kernel) if same else conv_loop_safe(x, kernel, tuple(self.strides), padding)
            else:
                y = _conv(x, kernel, self.strides, padding)
        return _add_bias(self, y, bias_init)


def _phases(kernel_size: int, stride: int, pad_low: int) -> list[tuple[slice, tuple[int, int]]]:
    """For each output phase r of a stride-`stride` transposed conv along one axis: the kernel taps that land on
    input pixels (every stride-th tap) and the (low, high) padding of x that lines them up, so that
    output[s*q + r] is a stride-1 convolution of x with those taps."""
    phases = []
    for r in range(stride):
        first = (pad_low - r) % stride
        taps = len(range(first, kernel_size, stride))
        offset = (r + first - pad_low) // stride  # output s*q + r starts at x[q + offset]
        phases.append((slice(first, None, stride), (-offset, taps - 1 + offset)))
    return phases


def phases_apply(kernel_size: Sequence[int], stride: int, padding) -> bool:
    """Whether `conv_transpose_phases` computes this transposed conv: an output exactly `stride` times the input
    (low + high = stride + k - 2 on each axis) and every phase with a tap (k >= stride)."""
    return all(low + high == stride + k - 2 and k >= stride for k, (low, high) in zip(kernel_size, padding))


def conv_transpose_phases(x: jax.Array, kernel: jax.Array, stride: int, padding) -> jax.Array:
    """`lax.conv_transpose(x, kernel, (stride, stride), padding)` (HWIO kernel, not flipped) where
    `phases_apply`, as stride^2 convolutions at the input's resolution interleaved by `depth_to_space`: no
    zero-dilated input (1/stride^2 of the FLOPs) and `conv_loop_safe` gradients."""
    if not phases_apply(kernel.shape[:2], stride, padding):
        raise ValueError(f"conv_transpose_phases needs low + high == stride + k - 2 and k >= stride on both axes; "
                         f"got kernel {kernel.shape[:2]}, stride {stride}, padding {padding}")
    rows, cols = (_phases(k, stride, low) for k, (low, _) in zip(kernel.shape[:2], padding))
    outs = [conv_loop_safe(x, kernel[row_taps, col_taps], (1, 1), (row_pads, col_pads))
            for row_taps, row_pads in rows for col_taps, col_pads in cols]
    return depth_to_space(jnp.concatenate(outs, axis=-1), stride)


class ConvTranspose(nn.Module):
    """nn.ConvTranspose's function and parameters (HWIO kernel, not flipped), with `initializers`' choice of
    init. `padding` is the explicit ((low, high), (low, high)) pads of the stride-dilated input (PyTorch's
    ConvTranspose2d(padding=p, output_padding=o) is low = k - 1 - p, high = k - 1 - p + o).

    On XLA:CPU (`cpu_fast_path`; `fast_path` forces it on or off) a transposed conv that `phases_apply` to takes
    `conv_transpose_phases`, any other the dilated input's `conv_loop_safe`: both stay fast inside `lax.scan`.
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int]
    padding: Sequence[tuple[int, int]]
    use_bias: bool = True
    weight_init: str = "flax"
    fast_path: bool | None = None

    @nn.compact
    def __call__(self, x):
        if isinstance(self.padding, str):
            raise ConfigError(f"ConvTranspose needs explicit ((low, high), (low, high)) pads, not {self.padding!r}")
        kernel, bias_init = _conv_kernel(self, x.shape[-1])
        padding, strides = tuple(map(tuple, self.padding)), tuple(self.strides)
        fast = cpu_fast_path() if self.fast_path is None else self.fast_path
        if not fast:
            y = lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=_NHWC)
        elif strides[0] == strides[1] and phases_apply(self.kernel_size, strides[0], padding):
            y = conv_transpose_phases(x, kernel, strides[0], padding)
        else:
            y = conv_loop_safe(_dilate(x, strides, padding), kernel, (1, 1), "VALID")
        return _add_bias(self, y, bias_init)


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
