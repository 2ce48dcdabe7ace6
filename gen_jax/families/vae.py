"""What a trained VAE is for: encode, decode, reconstruct, sample, interpolate, score. Pure functions.

Each takes the module and its params first, so `jax.jit(functools.partial(vae.sample, model))` works;
images are float32 NHWC in [0, 1] (Bernoulli means), keys are explicit. For a conditional VAE
(`models.autoencoders.ConditionalVAE`) pass int labels [B] as `labels=`; unconditional models take none.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import data, losses


def _labels(labels) -> tuple:
    """Extra positional arguments for a conditional model's methods: (labels,) or ()."""
    return () if labels is None else (labels,)


def encode(model, params, images: jax.Array, *, labels=None) -> tuple[jax.Array, jax.Array]:
    """Posterior parameters (mean, logvar), each [B, latent_dim]."""
    return model.apply({"params": params}, images, *_labels(labels), method=model.encode)


def code(model, params, images: jax.Array, *, labels=None) -> jax.Array:
    """The code an application uses [B, latent_dim]: the posterior mean."""
    return encode(model, params, images, labels=labels)[0]


def decode(model, params, z: jax.Array, *, labels=None) -> jax.Array:
    """Decoder means in [0, 1] for latents z [B, latent_dim]: images [B, H, W, C]."""
    return jax.nn.sigmoid(model.apply({"params": params}, z, *_labels(labels), method=model.decode))


def reconstruct(model, params, images: jax.Array, *, labels=None) -> jax.Array:
    """Deterministic reconstruction: decode the posterior mean."""
    mean, _ = encode(model, params, images, labels=labels)
    return decode(model, params, mean, labels=labels)


def sample(model, params, key: jax.Array, num: int, *, labels=None) -> jax.Array:
    """`num` images decoded from prior draws z ~ N(0, I) (for a conditional VAE, of classes `labels` [num])."""
    return decode(model, params, jax.random.normal(key, (num, model.latent_dim)), labels=labels)


def interpolate(model, params, start: jax.Array, end: jax.Array, num: int = 8) -> jax.Array:
    """Images along the straight line between the posterior means of `start` and `end` [B, ...].

    Returns [B, num, H, W, C]: row b walks from start[b] to end[b].
    """
    z0, _ = encode(model, params, start)
    z1, _ = encode(model, params, end)
    t = jnp.linspace(0.0, 1.0, num)[None, :, None]
    z = (1 - t) * z0[:, None] + t * z1[:, None]
    out = decode(model, params, z.reshape(-1, z.shape[-1]))
    return out.reshape(start.shape[0], num, *out.shape[1:])


def loss_terms(model, params, images: jax.Array, eps: jax.Array, *, likelihood: str = "bernoulli", labels=None):
    """(reconstruction NLL, KL) per example [B] for given standard-normal noise eps [B, latent_dim]."""
    decoded, mean, logvar = model.apply({"params": params}, images, eps, *_labels(labels))
    return losses.vae_terms(decoded=decoded, targets=images, mean=mean, logvar=logvar, likelihood=likelihood)


def negative_elbo(model, params, images: jax.Array, key: jax.Array, *, likelihood: str = "bernoulli",
                  labels=None):
    """Per-example negative ELBO in nats [B], from one posterior sample drawn with `key`."""
    recon, kl = loss_terms(model, params, images, jax.random.normal(key, (images.shape[0], model.latent_dim)),
                           likelihood=likelihood, labels=labels)
    return recon + kl


def anomaly_score(model, params, images: jax.Array, key: jax.Array, *, labels=None,
                  likelihood: str = "bernoulli") -> jax.Array:
    """Per-image anomaly score [B]: the negative ELBO (one posterior sample drawn with `key`)."""
    return negative_elbo(model, params, images, key, likelihood=likelihood, labels=labels)


def iwae_nll(model, params, images: jax.Array, key: jax.Array, *, num_samples: int, chunk_size: int = 50,
             likelihood: str = "bernoulli", labels=None) -> jax.Array:
    """Importance-weighted estimate of -log p(x) in nats per example [B] (Burda et al. 2016).

    -log (1/k) sum_i p(x, z_i) / q(z_i | x) with z_i ~ q(z | x), i = 1..k. It is an upper bound on the NLL
    that tightens as k grows (k=1 is the negative ELBO in expectation). The k samples are drawn and decoded
    `chunk_size` at a time under `lax.scan` with a running log-sum-exp, so memory holds chunk_size * B
    decoded images whatever k is (k - k mod chunk_size of them; the rest in one last, smaller chunk).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    chunk = min(chunk_size, num_samples)
    mean, logvar = encode(model, params, images, labels=labels)
    batch = images.shape[0]

    def log_weights(key, size):  # [size, B]
        tiled = lambda x: jnp.broadcast_to(x, (size, *x.shape)).reshape(size * batch, *x.shape[1:])
        z = losses.reparameterize(mean, logvar, jax.random.normal(key, (size, *mean.shape)))
        decoded = model.apply({"params": params}, z.reshape(size * batch, -1),
                              *_labels(None if labels is None else tiled(labels)), method=model.decode)
        if likelihood == "bernoulli":
            nll = losses.bernoulli_nll(logits=decoded, targets=tiled(images))
        else:
            nll = losses.gaussian_nll(means=decoded, targets=tiled(images))
        return (-nll.reshape(size, batch) + losses.gaussian_log_prob(samples=z)
                - losses.gaussian_log_prob(samples=z, mean=mean, logvar=logvar))

    def body(running, key):
        return jnp.logaddexp(running, jax.nn.logsumexp(log_weights(key, chunk), axis=0)), None

    full_chunks, rest = divmod(num_samples, chunk)
    total, _ = jax.lax.scan(body, jnp.full((batch,), -jnp.inf), jax.random.split(key, full_chunks))
    if rest:
        last = log_weights(jax.random.fold_in(key, full_chunks), rest)
        total = jnp.logaddexp(total, jax.nn.logsumexp(last, axis=0))
    return jnp.log(num_samples) - total


def iwae_evaluation(model, params, images, labels, key: jax.Array, *, num_samples: int, num_images: int = 0,
                    likelihood: str = "bernoulli", binarize: bool = False, batch_size: int = 100,
                    chunk_size: int = 50) -> dict:
    """The importance-weighted test NLL of a set of images, as training's evaluation and the applications use it.

    Scores `num_images` of `images` (a random subset drawn with `key`, unbiased for the whole set; 0: all) with
    `num_samples` importance samples each; binarised models see one fixed binarisation drawn with `key` too.
    labels: [N] ints for a conditional VAE, else None.

    Returns {iwae_nll, iwae_nll_se (standard error over the images), neg_elbo (one-sample negative ELBO on the
    same images), num_samples, num_images}.
    """
    rows = data.random_subset(len(images), num_images, key)
    binarize_key, elbo_key, iwae_key = jax.random.split(jax.random.fold_in(key, 1), 3)
    x = jnp.asarray(images[rows])
    y = None if labels is None else jnp.asarray(labels[rows])
    if binarize:
        x = data.preprocess(x, uniform=jax.random.uniform(binarize_key, x.shape))
    labels_of = lambda i, chunk: None if y is None else y[i:i + len(chunk)]
    iwae = jax.jit(functools.partial(iwae_nll, model, num_samples=num_samples, chunk_size=chunk_size,
                                     likelihood=likelihood))
    elbo = jax.jit(functools.partial(negative_elbo, model, likelihood=likelihood))
    nll = data.map_batches(lambda i, xb: iwae(params, xb, jax.random.fold_in(iwae_key, i), labels=labels_of(i, xb)),
                           x, batch_size)
    neg_elbo = data.map_batches(lambda i, xb: elbo(params, xb, jax.random.fold_in(elbo_key, i),
                                                   labels=labels_of(i, xb)), x, batch_size)
    n = len(rows)
    return {"iwae_nll": float(nll.mean()), "iwae_nll_se": float(nll.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
            "neg_elbo": float(neg_elbo.mean()), "num_samples": num_samples, "num_images": int(n)}
