"""Image-to-image translation networks as Flax linen modules: CycleGAN's ResNet generator (Zhu et al. 2017),
pix2pix's U-Net generator and the PatchGAN discriminator (Isola et al. 2017), laid out as the authors'
PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix).

Images are NHWC in [-1, 1] (`data.SIGNED`), in and out; a generator's output channels are the target domain's
(`out_channels`), which may differ from its input's (grey <-> colour). Normalisation is instance norm without
scale or offset (the reference's InstanceNorm2d(affine=False)), so there are no batch statistics and no model
state; convolutions that a normalisation follows have no bias (it would cancel). Weights start from
N(0, 0.02), the reference's init. Convolutions are `layers.Conv` / `layers.ConvTranspose`: on XLA:CPU their
loop-safe forms, so several train steps can run per compiled call. Generators: `__call__(images, *,
train=False)`, `train` turning dropout on (the 'dropout' rng). Discriminator: `__call__(images,
condition=None) -> logits map [B, h, w, 1]`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import ConfigError
from gen_jax.models import layers


def _conv(features: int, kernel: int, stride: int = 1, padding="VALID", *, bias: bool = True) -> layers.Conv:
    return layers.Conv(features, (kernel, kernel), (stride, stride), padding=padding, use_bias=bias,
                       weight_init="normal")


def _conv_transpose(features: int, kernel: int, padding, *, bias: bool = True) -> layers.ConvTranspose:
    """A stride-2 transposed conv; `padding` (low, high) pads the dilated input: k - 1 - p and k - 1 - p + output
    padding for PyTorch's ConvTranspose2d(padding=p, output_padding), so the output is exactly twice the input."""
    return layers.ConvTranspose(features, (kernel, kernel), (2, 2), padding=(padding, padding), use_bias=bias,
                                weight_init="normal")


def _norm(x: jax.Array) -> jax.Array:
    return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False)(x)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """Mirror padding of H and W (PyTorch's ReflectionPad2d): the reference's padding before its 3x3 and 7x7
    convolutions, used "to reduce artifacts" at the borders (Zhu et al. 2017, sec. 7.2). Needs pad < H, W."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _check_divisible(x: jax.Array, factor: int, what: str) -> None:
    if x.shape[1] % factor or x.shape[2] % factor:
        raise ConfigError(f"{what} needs height and width divisible by {factor}, got {x.shape[1]}x{x.shape[2]}")


class ResnetBlock(nn.Module):
    """x + [reflect pad, conv 3x3, norm, ReLU, dropout, reflect pad, conv 3x3, norm](x) (He et al. 2016, as in
    Johnson et al. 2016's style transfer network, which CycleGAN's generator is)."""

    dropout: float = 0.0
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        width = x.shape[-1]
        h = nn.relu(_norm(_conv(width, 3, bias=False)(reflect_pad(x, 1))))
        h = layers.Dropout(self.dropout, axis_name=self.axis_name)(h, deterministic=not train)
        return x + _norm(_conv(width, 3, bias=False)(reflect_pad(h, 1)))


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-C, d2C, d4C, `num_blocks` residual blocks R4C, u2C, uC, c7s1-out, tanh.

    C = `channels` (64 in the paper); the reference uses 6 blocks for 128x128 images and 9 for 256x256.
    Downsampling is a 3x3 stride-2 conv (zero padding 1); upsampling is `upsample`: 'transpose' (the paper's
    3x3 stride-2 transposed conv) or 'resize' (bilinear x2, reflect pad, 3x3 conv: no checkerboard
    artefacts, Odena et al. 2016). `num_downsamplings` halvings (the paper's 2: H and W divisible by 4); with
    fewer, the blocks run at a higher resolution and see less of the image, so the generator can restyle
    pixels but hardly redraw shapes (0 is PixelDA's full-resolution generator, Bousmalis et al. 2017).
    `dropout` in the residual blocks is the reference's use_dropout (0.5), off by default as in CycleGAN.
    """

    out_channels: int
    channels: int = 64
    num_blocks: int = 9
    upsample: str = "transpose"
    dropout: float = 0.0
    num_downsamplings: int = 2
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.upsample not in ("transpose", "resize"):
            raise ConfigError(f"upsample must be 'transpose' or 'resize', got {self.upsample!r}")
        _check_divisible(x, 2**self.num_downsamplings, "ResnetGenerator")
        h = nn.relu(_norm(_conv(self.channels, 7, bias=False)(reflect_pad(x, 3))))
        mults = [2**i for i in range(1, self.num_downsamplings + 1)]  # the paper's (2, 4)
        for mult in mults:
            h = nn.relu(_norm(_conv(self.channels * mult, 3, 2, ((1, 1), (1, 1)), bias=False)(h)))
        for _ in range(self.num_blocks):
            h = ResnetBlock(self.dropout, self.axis_name)(h, train=train)
        for mult in [m // 2 for m in reversed(mults)]:  # the paper's (2, 1)
            if self.upsample == "transpose":
                h = _conv_transpose(self.channels * mult, 3, (1, 2), bias=False)(h)
            else:
                b, height, width, c = h.shape
                h = jax.image.resize(h, (b, 2 * height, 2 * width, c), "bilinear")
                h = _conv(self.channels * mult, 3, bias=False)(reflect_pad(h, 1))
            h = nn.relu(_norm(h))
        return jnp.tanh(_conv(self.out_channels, 7)(reflect_pad(h, 3)))


def _patch_layers(num_layers: int) -> list[tuple[int, int]]:
    """(width multiplier, stride) of the PatchGAN's 4x4 convs before its output conv: `num_layers` stride-2
    convs C, 2C, 4C, 8C, 8C, ... then one stride-1 conv (the reference's NLayerDiscriminator)."""
    return [(min(2**i, 8), 2) for i in range(num_layers)] + [(min(2**num_layers, 8), 1)]


def patch_receptive_field(num_layers: int) -> int:
    """The side of the input patch each logit of a `num_layers` PatchGAN sees: 16, 34, 70, 142, 286 for 1..5
    stride-2 layers (pix2pix's 16x16, 70x70 and 286x286 discriminators are 1, 3 and 5)."""
    field = 1
    for _, stride in reversed(_patch_layers(num_layers) + [(1, 1)]):
        field = (field - 1) * stride + 4
    return field


def default_patch_layers(image_size: int) -> int:
    """Stride-2 layers for images of side `image_size`: the reference's 3 (70x70 patches) from 128 pixels up,
    fewer below, so each patch sees less than the whole image (1, 16x16 patches, for 28x28 and 32x32)."""
    return max([n for n in (1, 2, 3) if patch_receptive_field(n) < image_size] or [1])


class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator (Isola et al. 2017; Li & Wand 2016): 4x4 convs C64 (no norm), C128, C256
    (stride 2), C512 (stride 1), each with instance norm (except the first) and LeakyReLU 0.2, then a 4x4 conv to one
    logit per patch; all with zero padding 1. `num_layers` is the number of stride-2 convs (3: the 70x70
    PatchGAN; `patch_receptive_field` gives each setting's patch). A [B, H, W, C] input gives logits
    [B, floor(H / 2^num_layers) - 2, floor(W / 2^num_layers) - 2, 1]; the GAN losses average them per example.

    pix2pix's conditional discriminator judges (input, output) pairs: `condition` (the input image) is
    concatenated on channels before the image, as in the reference's cat((real_A, fake_B), 1).
    """

    channels: int = 64
    num_layers: int = 3

    @nn.compact
    def __call__(self, x, condition=None):
        if self.num_layers < 1:
            raise ConfigError(f"PatchDiscriminator needs num_layers >= 1, got {self.num_layers}")
        h = x if condition is None else jnp.concatenate([condition, x], axis=-1)
        padding = ((1, 1), (1, 1))
        for i, (mult, stride) in enumerate(_patch_layers(self.num_layers)):
            h = _conv(self.channels * mult, 4, stride, padding, bias=i == 0)(h)
            h = nn.leaky_relu(h if i == 0 else _norm(h), 0.2)
        return _conv(1, 4, 1, padding)(h)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net generator: `depth` 4x4 stride-2 convs (C, 2C, 4C, 8C, 8C, ...; LeakyReLU 0.2, instance
    norm except on the first and innermost), mirrored by 4x4 stride-2 transposed convs (ReLU, norm) each fed the
    previous output concatenated with the encoder map of its size, ending in tanh (Isola et al. 2017, app. 6.1).

    depth 8 takes 256x256 to a 1x1 bottleneck (the paper); H and W must be divisible by 2^depth. `dropout` (the
    paper's 0.5, which serves as the noise z) follows the first min(3, depth - 1) decoder convs, the paper's
    CD layers; `train` turns it on.
    """

    out_channels: int
    channels: int = 64
    depth: int = 8
    dropout: float = 0.0
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        _check_divisible(x, 2**self.depth, f"UNetGenerator of depth {self.depth}")
        widths = [self.channels * min(2**i, 8) for i in range(self.depth)]
        padding = ((1, 1), (1, 1))
        skips, h = [], x
        for i, width in enumerate(widths):
            h = _conv(width, 4, 2, padding, bias=i in (0, self.depth - 1))(h if i == 0 else nn.leaky_relu(h, 0.2))
            if 0 < i < self.depth - 1:
                h = _norm(h)
            skips.append(h)
        h = skips.pop()
        for i in reversed(range(1, self.depth)):  # level i's decoder conv restores the size of skips[i - 1]
            h = _norm(_conv_transpose(widths[i - 1], 4, (2, 2), bias=False)(nn.relu(h)))
            if self.depth - 1 - i < 3:
                h = layers.Dropout(self.dropout, axis_name=self.axis_name)(h, deterministic=not train)
            h = jnp.concatenate([skips[i - 1], h], axis=-1)
        return jnp.tanh(_conv_transpose(self.out_channels, 4, (2, 2))(nn.relu(h)))


def default_num_blocks(image_size: int) -> int:
    """Residual blocks for images of side `image_size`: the reference's 9 from 256 pixels, 6 from 128, else 3."""
    return 9 if image_size >= 256 else 6 if image_size >= 128 else 3


def default_unet_depth(image_shape) -> int:
    """The deepest U-Net (at most the paper's 8 levels) whose bottleneck is a whole number of pixels."""
    height, width = image_shape[:2]
    return max(d for d in range(1, 9) if height % 2**d == 0 and width % 2**d == 0)


def resnet_generator(*, image_shape, out_channels: int | None = None, channels: int = 64,
                     num_blocks: int | None = None, upsample: str = "transpose", dropout: float = 0.0,
                     num_downsamplings: int = 2):
    """A `ResnetGenerator` for source images of `image_shape`; out_channels defaults to the source's channels,
    num_blocks to `default_num_blocks` of the image size."""
    if num_blocks is None:
        num_blocks = default_num_blocks(min(image_shape[:2]))
    return ResnetGenerator(out_channels=out_channels or image_shape[-1], channels=channels, num_blocks=num_blocks,
                           upsample=upsample, dropout=dropout, num_downsamplings=num_downsamplings)


def patch_discriminator(*, image_shape, channels: int = 64, num_layers: int | None = None):
    """A `PatchDiscriminator` for images of `image_shape`; num_layers defaults to `default_patch_layers`."""
    if num_layers is None:
        num_layers = default_patch_layers(min(image_shape[:2]))
    return PatchDiscriminator(channels=channels, num_layers=num_layers)


def unet_generator(*, image_shape, out_channels: int | None = None, channels: int = 64, depth: int | None = None,
                   dropout: float = 0.0):
    """A `UNetGenerator` for source images of `image_shape`; out_channels defaults to the source's channels,
    depth to `default_unet_depth`."""
    return UNetGenerator(out_channels=out_channels or image_shape[-1], channels=channels,
                         depth=default_unet_depth(image_shape) if depth is None else depth, dropout=dropout)
