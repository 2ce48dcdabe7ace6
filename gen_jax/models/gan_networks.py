"""GAN networks as Flax linen modules: the seed's MLP and DCGAN generators (optionally class-conditional) and
matching discriminators / critics. Images are NHWC; generators output [-1, 1] (tanh).

Generators: `__call__(z [B, latent_dim], labels [B] int | None, *, train) -> images [B, H, W, C]`.
Discriminators: `__call__(images, labels | None, *, train) -> (logits [B], features [B, F])`: raw scores (no
sigmoid: the losses take logits, and a Wasserstein critic is the same network), and the last hidden layer's
features for feature matching. `train` switches BatchNorm to batch statistics, turns dropout on and advances
spectral norm's power iteration; the caller decides whether the updated collections are kept.

Every module has an `axis_name` (None by default): the step factory clones the modules with its device axis so
BatchNorm uses global-batch statistics and dropout / minibatch layers see the global batch.
PyTorch's BatchNorm momentum 0.1 is Flax's momentum 0.9. The seed's `BatchNorm2d(C, 0.8)` passes 0.8 as the
*epsilon*; `bn_eps=0.8` reproduces that quirk for parity with the seed (use 1e-5 for textbook BatchNorm).
`weight_init` picks the Dense/Conv initialisation: 'flax' (the default), 'torch' (the seed's) or 'normal'
(N(0, 0.02)), see `layers.initializers`.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import ConfigError
from gen_jax.models import layers

# PyTorch's Conv2d(k=3, s=2, padding=1): exact ceil-halving, unlike Flax 'SAME' which pads asymmetrically.
_HALVING_PADDING = ((1, 1), (1, 1))


def _leaky(x):
    return nn.leaky_relu(x, 0.2)


def _batch_norm(train: bool, eps: float, axis_name: str | None):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=eps, axis_name=axis_name)


def _label_embedding(num_classes: int) -> nn.Embed:
    """The seed's nn.Embedding(n_classes, n_classes), with PyTorch's N(0, 1) init: Flax's default (std ~0.3)
    makes the label a weak input beside 100 N(0, 1) noise values (docs/gans.md measures what that costs)."""
    return nn.Embed(num_classes, num_classes, embedding_init=nn.initializers.normal(1.0), name="label_embedding")


def _with_label(z, labels, num_classes: int):
    """The seed's conditioning: [label embedding (num_classes wide), z]."""
    if not num_classes:
        return z
    if labels is None:
        raise ValueError("a conditional network needs labels")
    return jnp.concatenate([_label_embedding(num_classes)(labels), z], axis=-1)


def _check_conditioning(conditioning: str) -> None:
    if conditioning not in ("concat", "projection"):
        raise ConfigError(f"conditioning must be 'concat' or 'projection', got {conditioning!r}")


class _GeneratorOptions(nn.Module):
    """What every generator has: the image it makes, its latent size, init, conditioning, BatchNorm eps, axis."""

    image_shape: Sequence[int]
    latent_dim: int = 100
    bn_eps: float = 0.8
    weight_init: str = "flax"
    num_classes: int = 0
    axis_name: str | None = None


class MLPGenerator(_GeneratorOptions):
    """The seed's MLP generator z -> 128 -> 256 -> 512 -> image (LeakyReLU 0.2, tanh).

    With num_classes > 0 it is the seed's conditional generator: [label embedding, z] in, and (with
    hidden_dims=(128, 256, 512, 1024), batch_norm=True) BatchNorm(eps=bn_eps) on every hidden layer but the first.
    """

    hidden_dims: Sequence[int] = (128, 256, 512)
    batch_norm: bool = False

    @nn.compact
    def __call__(self, z, labels=None, *, train: bool = False):
        h = _with_label(z, labels, self.num_classes)
        for i, width in enumerate(self.hidden_dims):
            h = layers.Dense(width, weight_init=self.weight_init)(h)
            if self.batch_norm and i > 0:
                h = _batch_norm(train, self.bn_eps, self.axis_name)(h)
            h = _leaky(h)
        out = layers.Dense(int(np.prod(self.image_shape)), weight_init=self.weight_init)(h)
        return jnp.tanh(out).reshape(-1, *self.image_shape)


class DCGANGenerator(_GeneratorOptions):
    """The seed's DCGAN generator: Dense to a (H/s, W/s, base) map, BatchNorm, then per entry of `channels`
    (nearest upsample x2, conv 3x3, BatchNorm(eps=bn_eps), LeakyReLU 0.2), then conv 3x3 to the image, tanh.

    s = 2 ** len(channels) (the seed's two entries: PyTorch-GAN's img_size // 4) so the output matches the data;
    H and W must be divisible by s.
    """

    base: int = 128
    channels: Sequence[int] = (128, 64)

    @nn.compact
    def __call__(self, z, labels=None, *, train: bool = False):
        height, width, out_channels = self.image_shape
        scale = 2 ** len(self.channels)
        if height % scale or width % scale:
            raise ConfigError(f"DCGAN generator needs height and width divisible by {scale}, got "
                              f"{tuple(self.image_shape)}")
        h = layers.Dense(self.base * (height // scale) * (width // scale), weight_init=self.weight_init)(
            _with_label(z, labels, self.num_classes))
        h = _batch_norm(train, 1e-5, self.axis_name)(h.reshape(-1, height // scale, width // scale, self.base))
        for c in self.channels:  # nn.Upsample(scale_factor=2) (nearest), then the conv
            h = layers.Conv(c, (3, 3), weight_init=self.weight_init, upsample=2)(h)
            h = _leaky(_batch_norm(train, self.bn_eps, self.axis_name)(h))
        return jnp.tanh(layers.Conv(out_channels, (3, 3), weight_init=self.weight_init)(h))


class _Head(nn.Module):
    """Shared discriminator head: minibatch layers, the linear score, and the projection term."""

    spectral_norm: bool
    minibatch_discrimination: int
    minibatch_stddev: int
    num_classes: int
    conditioning: str
    weight_init: str
    axis_name: str | None

    @nn.compact
    def __call__(self, h, labels, *, train: bool):
        if self.minibatch_stddev:
            h = layers.MinibatchStddev(self.minibatch_stddev)(h)
        features = h.reshape(h.shape[0], -1)
        if self.minibatch_discrimination:
            features = layers.MinibatchDiscrimination(self.minibatch_discrimination, axis_name=self.axis_name)(features)
        logits = layers.Dense(1, spectral_norm=self.spectral_norm, weight_init=self.weight_init)(
            features, update_stats=train)[:, 0]
        if self.num_classes and self.conditioning == "projection":  # Miyato & Koyama 2018: + <embed(y), phi(x)>
            embed = nn.Embed(self.num_classes, features.shape[-1], embedding_init=nn.initializers.normal(0.02))
            logits = logits + jnp.sum(embed(labels) * features, axis=-1)
        return logits


class _DiscriminatorOptions(nn.Module):
    """The options every discriminator shares: conditioning, spectral norm, minibatch layers, init, device axis."""

    num_classes: int = 0
    conditioning: str = "concat"
    spectral_norm: bool = False
    minibatch_discrimination: int = 0
    minibatch_stddev: int = 0
    weight_init: str = "flax"
    axis_name: str | None = None


class MLPDiscriminator(_DiscriminatorOptions):
    """The seed's MLP discriminator, image -> 512 -> 256 -> 128 -> score (LeakyReLU 0.2), without the sigmoid.

    Conditional (num_classes > 0): 'concat' appends a label embedding to the flat image (PyTorch-GAN's cgan
    discriminator: hidden_dims=(512, 512, 512), dropout=0.4), 'projection' adds <embed(y), features>.
    `dropout` follows every hidden Dense but the first. Options: spectral_norm on every Dense,
    minibatch_discrimination (number of kernels, 0 = off), minibatch_stddev (group size, 0 = off).
    """

    hidden_dims: Sequence[int] = (512, 256, 128)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, labels=None, *, train: bool = False):
        _check_conditioning(self.conditioning)
        h = x.reshape(x.shape[0], -1)
        if self.num_classes and self.conditioning == "concat":
            h = jnp.concatenate([h, _label_embedding(self.num_classes)(labels)], -1)
        for i, width in enumerate(self.hidden_dims):
            h = layers.Dense(width, spectral_norm=self.spectral_norm, weight_init=self.weight_init)(
                h, update_stats=train)
            if i > 0 and self.dropout:
                h = layers.Dropout(self.dropout, axis_name=self.axis_name)(h, deterministic=not train)
            h = _leaky(h)
        logits = _Head(self.spectral_norm, self.minibatch_discrimination, self.minibatch_stddev, self.num_classes,
                       self.conditioning, self.weight_init, self.axis_name)(h, labels, train=train)
        return logits, h


class DCGANDiscriminator(_DiscriminatorOptions):
    """PyTorch-GAN's DCGAN discriminator (the seed gives none): per entry of `channels` a 3x3 stride-2 conv
    (PyTorch padding=1), LeakyReLU 0.2, Dropout2d(dropout), then `norm` on every block but the first; flatten
    and a linear score (no sigmoid).

    Blocks that would shrink the maps below 2x2 are left out (8x8 digits: 16, 32; 28x28 and 32x32 use all four):
    on 1x1 maps BatchNorm(eps=0.8) and Dropout2d see single values, and on digits the score went flat (D = 0.5
    for real and fake; docs/design-notes.md).
    norm: 'batch' (BatchNorm(eps=bn_eps), as PyTorch-GAN), 'layer' or 'none' (use 'layer'/'none' for a
    WGAN-GP critic, whose per-example gradient penalty BatchNorm would break). Conditional: 'concat' appends
    one-hot label maps to the image, 'projection' adds <embed(y), features>. Minibatch layers and spectral
    norm as in MLPDiscriminator.
    """

    channels: Sequence[int] = (16, 32, 64, 128)
    norm: str = "batch"
    bn_eps: float = 0.8
    dropout: float = 0.25

    @nn.compact
    def __call__(self, x, labels=None, *, train: bool = False):
        _check_conditioning(self.conditioning)
        if self.norm not in ("batch", "layer", "none"):
            raise ConfigError(f"norm must be 'batch', 'layer' or 'none', got {self.norm!r}")
        h = x
        if self.num_classes and self.conditioning == "concat":
            onehot = jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)[:, None, None, :]
            h = jnp.concatenate([h, jnp.broadcast_to(onehot, (*x.shape[:3], self.num_classes))], axis=-1)
        for i, c in enumerate(self.channels):
            if min(h.shape[1:3]) < 3:  # the block would leave 1x1 maps
                break
            h = layers.Conv(c, (3, 3), (2, 2), _HALVING_PADDING, spectral_norm=self.spectral_norm,
                            weight_init=self.weight_init)(h, update_stats=train)
            h = layers.Dropout(self.dropout, channelwise=True, axis_name=self.axis_name)(_leaky(h),
                                                                                       deterministic=not train)
            if i > 0 and self.norm == "batch":
                h = _batch_norm(train, self.bn_eps, self.axis_name)(h)
            elif i > 0 and self.norm == "layer":
                h = nn.LayerNorm()(h)
        logits = _Head(self.spectral_norm, self.minibatch_discrimination, self.minibatch_stddev, self.num_classes,
                       self.conditioning, self.weight_init, self.axis_name)(h, labels, train=train)
        return logits, h.reshape(h.shape[0], -1)


def with_axis(module: nn.Module, axis_name: str | None) -> nn.Module:
    """`module` with its device axis set (BatchNorm statistics and minibatch layers over the global batch)."""
    return module.clone(axis_name=axis_name) if hasattr(module, "axis_name") else module


def _factory(cls):
    """A `models.create` factory for `cls`: its options are the module's fields (axis_name is set by the step)."""

    def create(*, image_shape, num_classes: int = 0, **options):
        if "image_shape" in cls.__dataclass_fields__:
            options["image_shape"] = tuple(image_shape)
        return cls(num_classes=num_classes, **options)

    names = ("image_shape", *(f for f in cls.__dataclass_fields__ if f not in ("parent", "name", "axis_name",
                                                                             "image_shape")))
    create.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    create.__doc__ = cls.__doc__
    return create


mlp_generator = _factory(MLPGenerator)
dcgan_generator = _factory(DCGANGenerator)
mlp_discriminator = _factory(MLPDiscriminator)
dcgan_discriminator = _factory(DCGANDiscriminator)
