"""Every loss in gen_jax, as keyword-only pure functions that return one value per example (never reduced).

Reconstruction and likelihood terms are summed over all non-batch axes, in nats. GAN losses take the
discriminator's *logits* (never probabilities), so they are stable where a sigmoid saturates.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gen_jax.parallel import local_rows


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


# ----------------------------------------------------------------------------- likelihoods and reconstruction
def bernoulli_nll(*, logits: jax.Array, targets: jax.Array) -> jax.Array:
    """-log p(targets | logits) under independent Bernoullis, per example [B]: the seed's summed BCE.

    Written as softplus(l) - t*l, which equals BCE(sigmoid(l), t) without ever forming log(0).
    """
    return _sum_per_example(jax.nn.softplus(logits) - targets * logits)


def gaussian_nll(*, means: jax.Array, targets: jax.Array, sigma: float = 1.0) -> jax.Array:
    """-log N(targets; means, sigma^2 I) per example [B], for data that is not in [0, 1]."""
    z = (targets - means) / sigma
    return _sum_per_example(0.5 * z**2 + math.log(sigma) + 0.5 * math.log(2 * math.pi))


def squared_error(*, predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Sum of squared errors per example [B] (the seed's MSE criterion, times the pixel count)."""
    return _sum_per_example((predictions - targets) ** 2)


def reconstruction_error(*, logits: jax.Array, targets: jax.Array, kind: str = "mse") -> jax.Array:
    """A deterministic autoencoder's reconstruction error per example [B], averaged over pixels.

    'mse': squared error of sigmoid(logits), the seed's nn.MSELoss criterion; 'bce': Bernoulli NLL per pixel.
    """
    pixels = targets[0].size
    if kind == "mse":
        return squared_error(predictions=jax.nn.sigmoid(logits), targets=targets) / pixels
    if kind == "bce":
        return bernoulli_nll(logits=logits, targets=targets) / pixels
    raise ValueError(f"reconstruction must be 'mse' or 'bce', got {kind!r}")


# ----------------------------------------------------------------------------- VAE
def gaussian_kl(*, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example [B], closed form (Kingma & Welling 2014, app. B)."""
    return -0.5 * jnp.sum(1.0 + logvar - mean**2 - jnp.exp(logvar), axis=-1)


def gaussian_log_prob(*, samples: jax.Array, mean: jax.Array | float = 0.0,
                      logvar: jax.Array | float = 0.0) -> jax.Array:
    """log N(samples; mean, diag(exp(logvar))) summed over the last axis: [..., D] -> [...].

    The prior (mean=0, logvar=0) and posterior densities of an importance-weighted bound (Burda et al. 2016).
    """
    z = (samples - mean) ** 2 * jnp.exp(-logvar)
    return -0.5 * jnp.sum(z + logvar + math.log(2 * math.pi), axis=-1)


def reparameterize(mean: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) drawn by the caller from an explicit key."""
    return mean + jnp.exp(0.5 * logvar) * eps


def vae_terms(*, decoded: jax.Array, targets: jax.Array, mean: jax.Array, logvar: jax.Array,
              likelihood: str = "bernoulli", sigma: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """(reconstruction NLL, KL) per example for a VAE; the beta-VAE loss is recon + beta * KL.

    `decoded` is logits for a Bernoulli likelihood, means for a Gaussian one. With beta=1 the sum is the
    negative ELBO in nats (Kingma & Welling 2014; Higgins et al. 2017 for beta).
    """
    if likelihood == "bernoulli":
        recon = bernoulli_nll(logits=decoded, targets=targets)
    elif likelihood == "gaussian":
        recon = gaussian_nll(means=decoded, targets=targets, sigma=sigma)
    else:
        raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
    return recon, gaussian_kl(mean=mean, logvar=logvar)


# ----------------------------------------------------------------------------- sparsity
def bernoulli_kl(*, target: float, rho_hat: jax.Array, eps: float = 1e-6) -> jax.Array:
    """KL(Bernoulli(target) || Bernoulli(rho_hat)) per unit (Ng 2011, "Sparse autoencoder" notes).

    rho_hat is clipped to [eps, 1 - eps] so a dead (0) or saturated (1) unit gives a large finite penalty
    instead of the seed formula's inf/NaN. `target` must lie in (0, 1).
    """
    rho_hat = jnp.clip(rho_hat, eps, 1.0 - eps)
    return target * jnp.log(target / rho_hat) + (1 - target) * jnp.log((1 - target) / (1 - rho_hat))


def sparsity_kl(*, activations: jax.Array, target: float, eps: float = 1e-6) -> jax.Array:
    """Sum over units of KL(Bernoulli(target) || Bernoulli(rho_hat)), rho_hat = batch-mean activation.

    The seed's sparse_loss (without its weight), made safe by `bernoulli_kl`'s clipping. A batch statistic:
    returns a scalar, not per example (a parallel step averages rho_hat over devices and calls
    `bernoulli_kl` itself, so N devices give the global batch's penalty).
    """
    return jnp.sum(bernoulli_kl(target=target, rho_hat=jnp.mean(activations, axis=0), eps=eps))


def l1_activity(*, activations: jax.Array) -> jax.Array:
    """L1 activity penalty per example [B]: sum of |code|, the simpler alternative to the sparsity KL."""
    return _sum_per_example(jnp.abs(activations))


# ----------------------------------------------------------------------------- GANs
def sigmoid_cross_entropy(*, logits: jax.Array, labels: jax.Array | float) -> jax.Array:
    """BCE(sigmoid(logits), labels) per element, computed stably from logits."""
    return jax.nn.softplus(logits) - labels * logits


def _per_example(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1).mean(axis=-1)


def discriminator_loss(*, real_logits: jax.Array, fake_logits: jax.Array, kind: str = "bce",
                       real_label: float = 1.0) -> jax.Array:
    """Discriminator (critic) loss per example [B] for a GAN objective `kind`.

    bce:   -log D(x) - log(1 - D(G(z))), the seed's minimax loss (Goodfellow et al. 2014); `real_label` < 1
           is one-sided label smoothing (Salimans et al. 2016).
    lsgan: (D(x) - 1)^2 / 2 + D(G(z))^2 / 2 (Mao et al. 2017).
    hinge: relu(1 - D(x)) + relu(1 + D(G(z))) (Lim & Ye 2017; Miyato et al. 2018).
    wasserstein: D(G(z)) - D(x), the critic's side of the Kantorovich dual (Arjovsky et al. 2017).
    """
    if kind == "bce":
        real = sigmoid_cross_entropy(logits=real_logits, labels=real_label)
        fake = sigmoid_cross_entropy(logits=fake_logits, labels=0.0)
    elif kind == "lsgan":
        real, fake = 0.5 * (real_logits - real_label) ** 2, 0.5 * fake_logits**2
    elif kind == "hinge":
        real, fake = jax.nn.relu(1.0 - real_logits), jax.nn.relu(1.0 + fake_logits)
    elif kind == "wasserstein":
        real, fake = -real_logits, fake_logits
    else:
        raise ValueError(f"unknown GAN loss {kind!r}: use bce, lsgan, hinge or wasserstein")
    return _per_example(real) + _per_example(fake)


def generator_loss(*, fake_logits: jax.Array, kind: str = "bce", saturating: bool = False) -> jax.Array:
    """Generator loss per example [B] for a GAN objective `kind` (see `discriminator_loss`).

    For bce the default is the non-saturating -log D(G(z)); `saturating=True` gives the seed paper's
    minimax log(1 - D(G(z))), whose gradient vanishes when the discriminator wins.
    """
    if kind == "bce":
        if saturating:
            return -_per_example(sigmoid_cross_entropy(logits=fake_logits, labels=0.0))
        return _per_example(sigmoid_cross_entropy(logits=fake_logits, labels=1.0))
    if kind == "lsgan":
        return _per_example(0.5 * (fake_logits - 1.0) ** 2)
    if kind in ("hinge", "wasserstein"):
        return -_per_example(fake_logits)
    raise ValueError(f"unknown GAN loss {kind!r}: use bce, lsgan, hinge or wasserstein")


def gradient_penalty(critic_fn, *, real: jax.Array, fake: jax.Array, key: jax.Array,
                     axis_name: str | None = None) -> jax.Array:
    """WGAN-GP penalty per example [B]: (||grad_x critic(x_hat)||_2 - 1)^2 on random interpolates.

    x_hat = e * real + (1 - e) * fake with e ~ U[0, 1] per example (Gulrajani et al. 2017). `critic_fn`
    maps a batch of images to logits [B] or [B, 1]. Under a device axis `axis_name`, e is this device's rows
    of the global batch's draw (`parallel.local_rows`), so N devices use the interpolates one device would.
    """
    e = local_rows(lambda k, s: jax.random.uniform(k, s, real.dtype), key,
                   (real.shape[0],) + (1,) * (real.ndim - 1), axis_name)
    interpolates = e * real + (1.0 - e) * fake
    grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(interpolates)
    norms = jnp.sqrt(_sum_per_example(grads**2) + 1e-12)
    return (norms - 1.0) ** 2


def r1_penalty(critic_fn, *, real: jax.Array) -> jax.Array:
    """Zero-centred gradient penalty on real images per example [B]: ||grad_x critic(x)||^2 (R1, Mescheder et
    al. 2018); the critic loss adds gamma / 2 times its mean. It keeps the critic flat on the data, where the
    equilibrium needs it, rather than forcing unit slopes between real and fake as WGAN-GP does."""
    grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(real)
    return _sum_per_example(grads**2)


def feature_matching(*, real_features: jax.Array, fake_features: jax.Array) -> jax.Array:
    """||E f(x) - E f(G(z))||^2 over a discriminator layer's features (Salimans et al. 2016). Scalar."""
    return jnp.sum((jnp.mean(real_features, axis=0) - jnp.mean(fake_features, axis=0)) ** 2)


def historical_averaging(*, params, averages) -> jax.Array:
    """||theta - (1/t) sum_i theta_i||^2 summed over all parameters (Salimans et al. 2016, sec. 3.3). Scalar.

    `averages` is the running mean of past parameter values (same tree as `params`); it carries no gradient.
    """
    sq = jax.tree.map(lambda p, a: jnp.sum((p - jax.lax.stop_gradient(a)) ** 2), params, averages)
    return sum(jax.tree.leaves(sq), jnp.zeros(()))


# ----------------------------------------------------------------------------- image-to-image translation
def l1_reconstruction(*, predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean absolute error per example [B], averaged over pixels as PyTorch's nn.L1Loss: pix2pix's L1 term
    (Isola et al. 2017, weight 100), so the papers' weights apply as published to images in [-1, 1]."""
    return _per_example(jnp.abs(predictions - targets))


def cycle_consistency(*, reconstructed: jax.Array, originals: jax.Array) -> jax.Array:
    """CycleGAN's cycle loss per example [B]: |F(G(x)) - x| averaged over pixels (Zhu et al. 2017, eq. 2;
    weight lambda = 10 against a generator loss of MSE(D(G(x)), 1), which is 2 * generator_loss(kind='lsgan'))."""
    return l1_reconstruction(predictions=reconstructed, targets=originals)


def identity_loss(*, mapped: jax.Array, originals: jax.Array) -> jax.Array:
    """CycleGAN's identity loss per example [B]: |G(y) - y| for y already in G's target domain, weighted
    0.5 * lambda (Zhu et al. 2017, sec. 5.2, after Taigman et al. 2017); needs equal channels in both domains."""
    return l1_reconstruction(predictions=mapped, targets=originals)
