"""Autoencoder networks as pure Flax linen modules: encoder and decoder bodies, and the VAEs built from them.

Decoders return *logits* (pre-sigmoid) so Bernoulli losses stay stable; `jax.nn.sigmoid(logits)` is the
image in [0, 1]. Images are NHWC.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import losses
from gen_jax.errors import ConfigError
from gen_jax.models import layers


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def _with_condition(h: jax.Array, condition: jax.Array | None) -> jax.Array:
    """Appends a conditioning vector (e.g. a one-hot label [B, K]) to flat features [B, D]."""
    return h if condition is None else jnp.concatenate([h, condition.astype(h.dtype)], axis=-1)


class MLPEncoder(nn.Module):
    """Flatten, then Dense+ReLU for each hidden width, then a linear layer of `features` outputs.

    An optional `condition` [B, K] (a conditional model's one-hot label) joins the flattened input.
    """

    hidden_dims: Sequence[int]
    features: int

    @nn.compact
    def __call__(self, x, condition=None):
        h = _with_condition(_flatten(x), condition)
        for width in self.hidden_dims:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(self.features)(h)


class MLPDecoder(nn.Module):
    """Dense+ReLU for each hidden width, then a linear layer reshaped to `image_shape` (logits)."""

    hidden_dims: Sequence[int]
    image_shape: Sequence[int]

    @nn.compact
    def __call__(self, z):
        h = z
        for width in self.hidden_dims:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(int(np.prod(self.image_shape)))(h).reshape((-1, *self.image_shape))


def _check_conv_shape(image_shape: Sequence[int]) -> None:
    if image_shape[0] % 4 or image_shape[1] % 4:
        raise ConfigError(f"conv autoencoders need height and width divisible by 4, got {tuple(image_shape)}")


class ConvEncoder(nn.Module):
    """Two halvings (H -> H/4), each space-to-depth then a 3x3 conv + ReLU, then Dense+ReLU(hidden) and a
    linear `features` head.

    Space-to-depth + 3x3 conv is a stride-2 6x6 conv (padding 2) with its kernel rearranged, but as a stride-1
    conv its gradients are fast on XLA:CPU (`layers.Conv`; measured in docs/design-notes.md). An optional
    `condition` [B, K] joins the flat features.
    """

    channels: Sequence[int] = (32, 64)
    hidden: int = 256
    features: int = 20

    @nn.compact
    def __call__(self, x, condition=None):
        h = x
        for c in self.channels:
            h = nn.relu(layers.Conv(c, (3, 3))(layers.space_to_depth(h)))
        h = nn.relu(nn.Dense(self.hidden)(_with_condition(_flatten(h), condition)))
        return nn.Dense(self.features)(h)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: Dense to an (H/4, W/4) map, two doublings, a 3x3 conv to logits.

    Each doubling is a 3x3 conv to 4x the channels then depth-to-space (sub-pixel convolution, Shi et al.
    2016): a stride-2 transposed conv with a 6x6 kernel (padding 2), computed as a stride-1 conv.
    """

    image_shape: Sequence[int]
    channels: Sequence[int] = (64, 32)
    hidden: int = 256

    @nn.compact
    def __call__(self, z):
        h, w, c = self.image_shape
        x = nn.relu(nn.Dense(self.hidden)(z))
        x = nn.relu(nn.Dense(h // 4 * w // 4 * self.channels[0])(x))
        x = x.reshape((-1, h // 4, w // 4, self.channels[0]))
        for ch in self.channels:
            x = nn.relu(layers.depth_to_space(layers.Conv(4 * ch, (3, 3))(x)))
        return layers.Conv(c, (3, 3))(x)


class VAE(nn.Module):
    """A Gaussian-latent VAE around any encoder (emitting 2*latent_dim) and decoder (emitting logits).

    `encode` gives the posterior (mean, logvar); `decode` gives image logits; `__call__(x, eps)` decodes
    z = mean + std * eps. It takes the standard-normal noise itself (draw it from an explicit key) so the
    parallel step can draw noise for the global batch, independent of how it is split over devices.
    """

    encoder: nn.Module
    decoder: nn.Module
    latent_dim: int

    def encode(self, x):
        mean, logvar = jnp.split(self.encoder(x), 2, axis=-1)
        return mean, logvar

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, x, eps):
        mean, logvar = self.encode(x)
        return self.decode(losses.reparameterize(mean, logvar, eps)), mean, logvar


def mlp_vae(*, image_shape, latent_dim: int = 20, hidden_dims: Sequence[int] = (256, 128)) -> VAE:
    """The seed's VAE: input -> 256 -> 128 -> (mu, logvar) and latent -> 128 -> 256 -> input."""
    return VAE(MLPEncoder(tuple(hidden_dims), 2 * latent_dim),
               MLPDecoder(tuple(reversed(hidden_dims)), tuple(image_shape)), latent_dim)


def conv_vae(*, image_shape, latent_dim: int = 20, channels: Sequence[int] = (32, 64),
             hidden: int = 256) -> VAE:
    """A convolutional VAE: two halvings down (space-to-depth + conv), two doublings up (sub-pixel conv)."""
    _check_conv_shape(image_shape)
    return VAE(ConvEncoder(tuple(channels), hidden, 2 * latent_dim),
               ConvDecoder(tuple(image_shape), tuple(reversed(channels)), hidden), latent_dim)


class ConditionalVAE(VAE):
    """A VAE whose encoder q(z | x, y) and decoder p(x | z, y) both see the label y (Sohn et al. 2015).

    The label enters as a one-hot vector joined to the encoder's flat features and to z; the encoder and
    decoder bodies are the unconditional ones. Methods take int labels [B] after the VAE's arguments.
    """

    num_classes: int = 10

    def _one_hot(self, labels):
        return jax.nn.one_hot(labels, self.num_classes)

    def encode(self, x, labels):
        return tuple(jnp.split(self.encoder(x, self._one_hot(labels)), 2, axis=-1))

    def decode(self, z, labels):
        return self.decoder(_with_condition(z, self._one_hot(labels)))

    def __call__(self, x, eps, labels):
        mean, logvar = self.encode(x, labels)
        return self.decode(losses.reparameterize(mean, logvar, eps), labels), mean, logvar


def mlp_cvae(*, image_shape, num_classes: int = 10, latent_dim: int = 20,
             hidden_dims: Sequence[int] = (256, 128)) -> ConditionalVAE:
    """The seed's MLP VAE, label-conditioned: [x, onehot(y)] -> 256 -> 128 -> (mu, logvar); [z, onehot(y)] -> x."""
    return ConditionalVAE(MLPEncoder(tuple(hidden_dims), 2 * latent_dim),
                          MLPDecoder(tuple(reversed(hidden_dims)), tuple(image_shape)), latent_dim, num_classes)


def conv_cvae(*, image_shape, num_classes: int = 10, latent_dim: int = 20, channels: Sequence[int] = (32, 64),
              hidden: int = 256) -> ConditionalVAE:
    """`conv_vae`, label-conditioned (the label joins the conv features and z)."""
    _check_conv_shape(image_shape)
    return ConditionalVAE(ConvEncoder(tuple(channels), hidden, 2 * latent_dim),
                          ConvDecoder(tuple(image_shape), tuple(reversed(channels)), hidden), latent_dim,
                          num_classes)


# ----------------------------------------------------------------------------- deterministic autoencoders
_CODE_ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "linear": lambda h: h}


class Autoencoder(nn.Module):
    """A deterministic autoencoder: code = activation(encoder(x)), decoder(code) -> image logits.

    The seed's vanilla, sparse and denoising autoencoders are this module; they differ only in the train
    step (penalty, corruption). `code_activation` is 'relu' (seed), 'sigmoid' (codes in (0, 1), as the
    KL sparsity penalty needs) or 'linear'. `__call__(x)` returns (logits [B, H, W, C], code [B, code_dim]).
    """

    encoder: nn.Module
    decoder: nn.Module
    code_dim: int
    code_activation: str = "relu"

    def encode(self, x):
        return _CODE_ACTIVATIONS[self.code_activation](self.encoder(x))

    def decode(self, code):
        return self.decoder(code)

    def __call__(self, x):
        code = self.encode(x)
        return self.decode(code), code


def _check_activation(code_activation: str) -> None:
    if code_activation not in _CODE_ACTIVATIONS:
        raise ConfigError(f"code_activation must be one of {', '.join(_CODE_ACTIVATIONS)}, got {code_activation!r}")


def mlp_autoencoder(*, image_shape, code_dim: int = 32, hidden_dims: Sequence[int] = (128,),
                    code_activation: str = "relu") -> Autoencoder:
    """The seed's SimpleAutoencoder: input -> 128 -> code (ReLU) -> 128 -> input (sigmoid of the logits)."""
    _check_activation(code_activation)
    return Autoencoder(MLPEncoder(tuple(hidden_dims), code_dim),
                       MLPDecoder(tuple(reversed(hidden_dims)), tuple(image_shape)), code_dim, code_activation)


def conv_autoencoder(*, image_shape, code_dim: int = 32, channels: Sequence[int] = (32, 64), hidden: int = 256,
                     code_activation: str = "relu") -> Autoencoder:
    """A convolutional autoencoder on the conv VAE's bodies: two halvings down, two doublings up."""
    _check_activation(code_activation)
    _check_conv_shape(image_shape)
    return Autoencoder(ConvEncoder(tuple(channels), hidden, code_dim),
                       ConvDecoder(tuple(image_shape), tuple(reversed(channels)), hidden), code_dim, code_activation)
