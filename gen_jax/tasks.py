"""Tasks: what the one train loop needs from a model family, built from a config.

A `Task` bundles pure functions: create the initial state, the per-device train step, evaluation on the
held-out split, and the pictures to write. The loop (`gen_jax.loop`) knows nothing else about the family.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen_jax import corruption, data, gan, metrics, models, steps, vae
from gen_jax.errors import ConfigError
from gen_jax.models import autoencoders
from gen_jax.train_state import GANState, TrainState


@dataclasses.dataclass(frozen=True)
class Task:
    """A model family's side of training.

    init_state(key) -> state (a pytree; unreplicated)
    train_step(state, batch, key) -> (state, metrics), per device, averaging over axis 'batch'
    evaluate(state, dataset, key) -> {name: float} on the held-out split
    pictures(state, dataset, key) -> {name: images [N, H, W, C] in [0, 1]} for sample grids
    sample(state, key, num) -> (images [num, H, W, C] in [0, 1], labels [num] or None), for generative
      families (`python -m gen_jax.sample`); None where the family cannot sample
    """

    init_state: Callable[[jax.Array], Any]
    train_step: Callable
    evaluate: Callable[[Any, data.Dataset, jax.Array], dict]
    pictures: Callable[[Any, data.Dataset, jax.Array], dict]
    sample: Callable[[Any, jax.Array, int], tuple] | None = None


def learning_rate(optim, num_updates: int):
    """The learning rate (a number, or an optax schedule of the update count) of an `optimizer_config`."""
    if optim.schedule == "constant":
        return optim.learning_rate
    if optim.schedule == "cosine":
        return optax.cosine_decay_schedule(optim.learning_rate, num_updates)
    raise ConfigError(f"unknown learning-rate schedule {optim.schedule!r}: use constant or cosine")


def make_optimizer(optim, num_updates: int) -> optax.GradientTransformation:
    """An optax transformation from an `optimizer_config` section, for a run of `num_updates` updates."""
    lr = learning_rate(optim, num_updates)
    if optim.name == "adam":
        tx = optax.adam(lr, b1=optim.b1, b2=optim.b2)
    elif optim.name == "adamw":
        tx = optax.adamw(lr, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    elif optim.name == "rmsprop":
        # PyTorch's RMSprop (the WGAN reference): smoothing constant alpha = b2, eps outside the square root
        tx = optax.rmsprop(lr, decay=optim.b2, eps=1e-8, eps_in_sqrt=False)
    elif optim.name == "sgd":
        tx = optax.sgd(lr, momentum=optim.b1 or None)
    else:
        raise ConfigError(f"unknown optimizer {optim.name!r}: use adam, adamw, rmsprop or sgd")
    if optim.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx


def batched(fn: Callable, array, batch_size: int) -> np.ndarray:
    """Concatenates fn(start, array[start:start+batch_size]) over the leading axis, last partial chunk too."""
    return np.concatenate([np.asarray(fn(i, array[i:i + batch_size])) for i in range(0, len(array), batch_size)])


def create_model(config, dataset: data.Dataset):
    """The Flax module config.model names, for this data set (conditional models get its class count)."""
    options = {k: v for k, v in config.model.items() if k != "name"}
    factory = models.FACTORIES.get(config.model.name)
    if factory is not None and "num_classes" in inspect.signature(factory).parameters:
        options.setdefault("num_classes", dataset.num_classes)
    return models.create(config.model.name, image_shape=dataset.image_shape, **options)


def _pairs(originals, recons) -> jax.Array:
    """Rows of 8 originals, each followed by a row of their reconstructions (32 of each)."""
    rows = lambda x: x.reshape(4, 8, *x.shape[1:])
    return jnp.stack([rows(originals), rows(recons)], axis=1).reshape(-1, *originals.shape[1:])


def vae_task(config, dataset: data.Dataset) -> Task:
    """The VAE family (beta-VAE, conditional VAE; MLP or conv) from a `vae_config`."""
    model = create_model(config, dataset)
    likelihood, binarize = config.loss.likelihood, config.data.binarize
    conditional = isinstance(model, autoencoders.ConditionalVAE)
    cond = (lambda labels: labels) if conditional else (lambda labels: None)

    def init_state(key):
        extra = (jnp.zeros((1,), jnp.int32),) if conditional else ()
        params = model.init(key, jnp.zeros((1, *dataset.image_shape)), jnp.zeros((1, model.latent_dim)), *extra)
        return TrainState.create(params=params["params"], tx=make_optimizer(config.optim, config.train.steps))

    @jax.jit
    def _scores(params, images, labels, key):  # per image: neg-ELBO, reconstruction MSE, KL
        eps = jax.random.normal(key, (images.shape[0], model.latent_dim))
        recon, kl = vae.loss_terms(model, params, images, eps, likelihood=likelihood, labels=cond(labels))
        recons = vae.reconstruct(model, params, images, labels=cond(labels))
        return jnp.stack([recon + kl, jnp.mean((recons - images) ** 2, axis=(1, 2, 3)), kl], axis=1)

    @jax.jit
    def _iwae(params, images, labels, key):
        return vae.iwae_nll(model, params, images, key, num_samples=config.eval.iwae_samples,
                            likelihood=likelihood, labels=cond(labels))

    def evaluate(state, dataset, key):
        images, labels = jnp.asarray(dataset.test_images), jnp.asarray(dataset.test_labels)
        binarize_key, elbo_key, iwae_key, subset_key = jax.random.split(key, 4)
        if binarize:  # one fixed binarisation of the test set
            images = data.preprocess(images, uniform=jax.random.uniform(binarize_key, images.shape))
        scores = batched(lambda i, x: _scores(state.params, x, labels[i:i + len(x)], jax.random.fold_in(elbo_key, i)),
                         images, config.eval.batch_size)
        results = {"neg_elbo": float(scores[:, 0].mean()), "recon_mse": float(scores[:, 1].mean()),
                   "kl": float(scores[:, 2].mean()), "num_test_images": len(images)}
        if config.eval.iwae_samples > 0:  # on a random subset of eval.iwae_images test images (0: all)
            rows = data.random_subset(len(images), config.eval.iwae_images, subset_key)
            subset_labels = labels[rows]
            nll = batched(lambda i, x: _iwae(state.params, x, subset_labels[i:i + len(x)],
                                             jax.random.fold_in(iwae_key, i)), images[rows], 100)
            results.update(iwae_nll=float(nll.mean()), neg_elbo_iwae_images=float(scores[rows, 0].mean()),
                           iwae_samples=config.eval.iwae_samples, iwae_images=len(nll))
        return results

    def pictures(state, dataset, key):
        originals, labels = jnp.asarray(dataset.test_images[:32]), jnp.asarray(dataset.test_labels[:32])
        recons = vae.reconstruct(model, state.params, originals, labels=cond(labels))
        out = {"reconstructions": _pairs(originals, recons)}
        if conditional:  # row c: eight samples of class c
            classes = jnp.repeat(jnp.arange(dataset.num_classes), 8)
            out["class_samples"] = vae.sample(model, state.params, key, len(classes), labels=classes)
        else:
            out["samples"] = vae.sample(model, state.params, key, 64)
            path = vae.interpolate(model, state.params, originals[:8], originals[8:16], num=8)
            out["interpolations"] = path.reshape(-1, *originals.shape[1:])
        return out

    @jax.jit
    def _sample(params, key, labels):  # labels [n] fix n; they condition only a conditional VAE
        return vae.sample(model, params, key, labels.shape[0], labels=cond(labels))

    def sample(state, key, num):  # prior samples (gen_jax.sample, gen_jax.evaluate); labels balanced
        labels = np.arange(num, dtype=np.int32) % dataset.num_classes
        images = batched(lambda i, y: _sample(state.params, jax.random.fold_in(key, i), y), labels, 500)
        return images, labels if conditional else None

    step = steps.make_vae_step(model, beta=config.loss.beta, kl_warmup_steps=config.loss.kl_warmup_steps,
                               likelihood=likelihood, binarize=binarize, conditional=conditional)
    return Task(init_state, step, evaluate, pictures, sample)


def autoencoder_task(config, dataset: data.Dataset) -> Task:
    """The deterministic autoencoders (vanilla, sparse, denoising; MLP or conv) from an `autoencoder_config`."""
    model = create_model(config, dataset)
    loss = config.loss
    if loss.sparsity == "kl" and model.code_activation != "sigmoid":
        raise ConfigError("loss.sparsity='kl' needs codes in (0, 1): set model.code_activation='sigmoid' "
                          "(or use loss.sparsity='l1')")
    noisy = functools.partial(corruption.corrupt, kind=loss.corruption, noise_factor=loss.noise_factor,
                              mask_rate=loss.mask_rate)

    def init_state(key):
        params = model.init(key, jnp.zeros((1, *dataset.image_shape)))
        return TrainState.create(params=params["params"], tx=make_optimizer(config.optim, config.train.steps))

    @jax.jit
    def _scores(params, images, key):  # per image: clean-input MSE, mean code, PSNR of noisy and denoised
        logits, code = model.apply({"params": params}, images)
        corrupted = noisy(key, images)
        denoised = jax.nn.sigmoid(model.apply({"params": params}, corrupted)[0])
        return jnp.stack([jnp.mean((jax.nn.sigmoid(logits) - images) ** 2, axis=(1, 2, 3)), code.mean(axis=1),
                          corruption.psnr(corrupted, images), corruption.psnr(denoised, images)], axis=1)

    def evaluate(state, dataset, key):
        scores = batched(lambda i, x: _scores(state.params, x, jax.random.fold_in(key, i)),
                         jnp.asarray(dataset.test_images), config.eval.batch_size)
        results = {"recon_mse": float(scores[:, 0].mean()), "mean_activation": float(scores[:, 1].mean()),
                   "num_test_images": len(scores)}
        if loss.sparsity != "none":
            results["sparsity_target"] = loss.sparsity_target
        if loss.corruption != "none":
            results.update(psnr_noisy=float(scores[:, 2].mean()), psnr_denoised=float(scores[:, 3].mean()),
                           psnr_gain=float(scores[:, 3].mean() - scores[:, 2].mean()))
        return results

    def pictures(state, dataset, key):
        originals = jnp.asarray(dataset.test_images[:32])
        recons = jax.nn.sigmoid(model.apply({"params": state.params}, originals)[0])
        out = {"reconstructions": _pairs(originals, recons)}
        if loss.corruption != "none":  # rows: clean, corrupted, denoised
            corrupted = noisy(key, originals[:8])
            denoised = jax.nn.sigmoid(model.apply({"params": state.params}, corrupted)[0])
            out["denoising"] = jnp.concatenate([originals[:8], corrupted, denoised])
        return out

    step = steps.make_autoencoder_step(model, reconstruction=loss.reconstruction, sparsity=loss.sparsity,
                                       sparsity_target=loss.sparsity_target, sparsity_weight=loss.sparsity_weight,
                                       corruption=loss.corruption, noise_factor=loss.noise_factor,
                                       mask_rate=loss.mask_rate)
    return Task(init_state, step, evaluate, pictures)


def gan_task(config, dataset: data.Dataset) -> Task:
    """The GAN family (GAN, DCGAN, conditional GAN, WGAN, WGAN-GP and the stabilisation options) from a
    `gan_config`. Sampling and evaluation use the generator's EMA weights."""
    g = config.gan
    if g.loss not in ("bce", "lsgan", "hinge", "wasserstein"):
        raise ConfigError(f"gan.loss must be bce, lsgan, hinge or wasserstein, got {g.loss!r}")
    if g.n_critic < 1 or config.data.batch_size % g.n_critic:
        raise ConfigError(f"gan.n_critic={g.n_critic} must be >= 1 and divide data.batch_size="
                          f"{config.data.batch_size} (each critic update takes its own share of the batch)")
    num_classes = dataset.num_classes if g.conditional else 0

    def network(section):
        options = {k: v for k, v in section.items() if k != "name"}
        return models.create(section.name, image_shape=dataset.image_shape, num_classes=num_classes, **options)

    generator, discriminator = network(config.generator), network(config.discriminator)
    labels_for = (lambda n: gan.balanced_labels(n, num_classes)) if num_classes else (lambda n: None)

    def init_state(key):
        g_key, d_key = jax.random.split(key)
        labels = labels_for(2)
        g_vars = generator.init(g_key, jnp.zeros((2, generator.latent_dim)), labels)
        d_vars = discriminator.init(d_key, jnp.zeros((2, *dataset.image_shape)), labels)
        rest = lambda variables: {k: v for k, v in variables.items() if k != "params"}
        num_steps = config.train.steps  # generator updates; the discriminator makes n_critic per step
        return GANState.create(
            generator=TrainState.create(params=g_vars["params"], tx=make_optimizer(config.optim_g, num_steps),
                                        model_state=rest(g_vars)),
            discriminator=TrainState.create(params=d_vars["params"],
                                            tx=make_optimizer(config.optim_d, num_steps * config.gan.n_critic),
                                            model_state=rest(d_vars)),
            historical_averaging=config.gan.historical_averaging > 0)

    @functools.partial(jax.jit, static_argnums=2)
    def _sample(state, key, num):
        labels = labels_for(num)
        return gan.sample(generator, state, key, num, labels), labels

    def sample(state, key, num):
        chunks = [_sample(state, jax.random.fold_in(key, i), min(500, num - i)) for i in range(0, num, 500)]
        images = np.concatenate([np.asarray(c[0]) for c in chunks])
        labels = np.asarray(labels_for(num)) if num_classes else None
        return images, labels

    _scores = jax.jit(functools.partial(gan.discriminate, discriminator))

    def evaluate(state, dataset, key):
        real, real_labels = dataset.test_images, dataset.test_labels
        fake, fake_labels = sample(state, key, config.eval.num_samples or len(real))

        def mean_output(images, labels):
            logits = batched(lambda i, x: _scores(state, x, None if labels is None else labels[i:i + len(x)]),
                             images, config.eval.batch_size)
            return float(np.mean(jax.nn.sigmoid(logits) if config.gan.loss == "bce" else logits))

        flat = lambda x: jnp.asarray(x).reshape(len(x), -1)
        return {"d_real_test": mean_output(real, real_labels if num_classes else None),
                "d_fake": mean_output(fake, fake_labels),
                "pixel_fid": float(metrics.fid(flat(real), flat(fake))),  # FID in raw pixel space (cheap proxy)
                "num_samples": len(fake)}

    def pictures(state, dataset, key):
        if num_classes:  # row c: eight samples of class c; the same eight noise vectors in every row
            rows = [gan.sample(generator, state, key, 8, jnp.full((8,), c, jnp.int32)) for c in range(num_classes)]
            return {"class_samples": jnp.concatenate(rows)}
        return {"samples": _sample(state, key, 64)[0]}

    step = steps.make_gan_step(generator, discriminator, loss=g.loss, saturating=g.saturating, n_critic=g.n_critic,
                               clip_value=g.clip_value, gp_weight=g.gp_weight, real_label=g.real_label,
                               feature_matching=g.feature_matching, historical_averaging=g.historical_averaging,
                               ema_decay=g.ema_decay)
    return Task(init_state, step, evaluate, pictures, sample)


FAMILIES = {"vae": vae_task, "autoencoder": autoencoder_task, "gan": gan_task}


def build(config, dataset: data.Dataset) -> Task:
    """The Task for `config.task` on `dataset`."""
    if config.task not in FAMILIES:
        raise ConfigError(f"unknown task {config.task!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[config.task](config, dataset)
