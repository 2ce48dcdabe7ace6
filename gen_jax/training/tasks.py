"""Tasks: what the one train loop needs from a model family, built from a config.

A `Task` bundles pure functions: create the initial state, the per-device train step, evaluation on the
held-out split, and the pictures to write. The loop (`training.loop`) knows nothing else about the family.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import data, models
from gen_jax.data import corruption
from gen_jax.data import domains as data_domains
from gen_jax.errors import ConfigError
from gen_jax.parallel import spread_rows
from gen_jax.evaluation import domain_classifier, metrics
from gen_jax.families import gan, translation, vae
from gen_jax.models import autoencoders
from gen_jax.models.precision import compute_in
from gen_jax.training import steps
from gen_jax.training.optim import make_optimizer
from gen_jax.training.train_state import AdversarialState, TrainState


@dataclasses.dataclass(frozen=True)
class Task:
    """A model family's side of training.

    init_state(key) -> state (a pytree; unreplicated)
    train_step(state, batch, key) -> (state, metrics), per device, averaging over axis 'batch'
    evaluate(state, dataset, key) -> {name: float} on the held-out split (dataset: what `load_data` returned)
    pictures(state, dataset, key) -> {name: images [N, H, W, C] in [0, 1]} for sample grids
    sample(state, key, num) -> (images [num, H, W, C] in [0, 1], labels [num] or None), for generative
      families (`python -m gen_jax.sample`); None where the family cannot sample
    modules: the Flax modules by role ({"model": ...}, or {"generator": ..., "discriminator": ...}), for
      using a restored state with the family's pure functions
    train_data: the training arrays as index streams, {stream: {batch key: array or LazyImages [N, ...]}}
      (resident on the devices or streamed, as the loop's pipeline chooses).
      Each stream is shuffled on its own (`data.batch_indices(..., stream=i)`) and a step's batch holds every
      array of every stream gathered at that stream's rows: one data set is {"examples": {"image", "label"}},
      two unpaired domains are two streams.
    scores_outputs: the family's own evaluate scores its outputs with config.eval.classifier_dir (pix2pix), so
      the loop's sample scorer is not needed even though the family cannot sample
    batch_divisor: each device's batch must split into this many equal shares (a GAN's n_critic critic updates);
      the loop checks it against the per-device batch before compiling
    """

    init_state: Callable[[jax.Array], Any]
    train_step: Callable
    evaluate: Callable[[Any, Any, jax.Array], dict]  # the task's data: a Dataset, TwoDomains or Pairs
    pictures: Callable[[Any, Any, jax.Array], dict]
    sample: Callable[[Any, jax.Array, int], tuple] | None
    modules: dict
    train_data: dict
    scores_outputs: bool = False
    batch_divisor: int = 1


def examples(dataset: data.Dataset) -> dict:
    """`Task.train_data` of one data set: its training images and labels as a single index stream."""
    return {"examples": {"image": dataset.train_images, "label": dataset.train_labels}}


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
    def _scores(params, images, labels, key):  # per image
        eps = jax.random.normal(key, (images.shape[0], model.latent_dim))
        recon, kl = vae.loss_terms(model, params, images, eps, likelihood=likelihood, labels=cond(labels))
        recons = vae.reconstruct(model, params, images, labels=cond(labels))
        return {"neg_elbo": recon + kl, "recon_mse": jnp.mean((recons - images) ** 2, axis=(1, 2, 3)), "kl": kl}

    def evaluate(state, dataset, key):
        images, labels = jnp.asarray(dataset.test_images), jnp.asarray(dataset.test_labels)
        binarize_key, elbo_key, iwae_key = jax.random.split(key, 3)
        if binarize:  # one fixed binarisation of the test set
            images = data.preprocess(images, uniform=jax.random.uniform(binarize_key, images.shape))
        scores = data.map_batches(lambda i, x: _scores(state.params, x, labels[i:i + len(x)],
                                                       jax.random.fold_in(elbo_key, i)),
                                  images, config.eval.batch_size)
        results = {name: float(values.mean()) for name, values in scores.items()}
        results["num_test_images"] = len(images)
        if config.eval.iwae_samples > 0:  # on a random subset of eval.iwae_images test images (0: all)
            iwae = vae.iwae_evaluation(model, state.params, dataset.test_images,
                                       dataset.test_labels if conditional else None, iwae_key,
                                       num_samples=config.eval.iwae_samples, num_images=config.eval.iwae_images,
                                       likelihood=likelihood, binarize=binarize)
            results.update(iwae_nll=iwae["iwae_nll"], iwae_nll_se=iwae["iwae_nll_se"],
                           neg_elbo_iwae_images=iwae["neg_elbo"], iwae_samples=iwae["num_samples"],
                           iwae_images=iwae["num_images"])
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
        return spread_rows(vae.sample(model, params, key, labels.shape[0], labels=cond(labels)))

    def sample(state, key, num):  # prior samples (gen_jax.sample, gen_jax.evaluate); labels balanced
        labels = np.arange(num, dtype=np.int32) % dataset.num_classes
        images = data.map_batches(lambda i, y: _sample(state.params, jax.random.fold_in(key, i), y), labels, 500)
        return images, labels if conditional else None

    step = steps.make_vae_step(compute_in(config.train.compute_dtype, model), beta=config.loss.beta,
                               kl_warmup_steps=config.loss.kl_warmup_steps,
                               likelihood=likelihood, binarize=binarize, conditional=conditional)
    return Task(init_state, step, evaluate, pictures, sample, {"model": model}, examples(dataset))


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
    def _scores(params, images, key):  # per image
        logits, code = model.apply({"params": params}, images)
        corrupted = noisy(key, images)
        denoised = jax.nn.sigmoid(model.apply({"params": params}, corrupted)[0])
        return {"recon_mse": jnp.mean((jax.nn.sigmoid(logits) - images) ** 2, axis=(1, 2, 3)),
                "mean_activation": code.mean(axis=1), "psnr_noisy": metrics.psnr(corrupted, images),
                "psnr_denoised": metrics.psnr(denoised, images)}

    def evaluate(state, dataset, key):
        scores = data.map_batches(lambda i, x: _scores(state.params, x, jax.random.fold_in(key, i)),
                                  jnp.asarray(dataset.test_images), config.eval.batch_size)
        mean = {name: float(values.mean()) for name, values in scores.items()}
        results = {"recon_mse": mean["recon_mse"], "mean_activation": mean["mean_activation"],
                   "num_test_images": len(dataset.test_images)}
        if loss.sparsity != "none":
            results["sparsity_target"] = loss.sparsity_target
        if loss.corruption != "none":
            results.update(psnr_noisy=mean["psnr_noisy"], psnr_denoised=mean["psnr_denoised"],
                           psnr_gain=mean["psnr_denoised"] - mean["psnr_noisy"])
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

    step = steps.make_autoencoder_step(compute_in(config.train.compute_dtype, model),
                                       reconstruction=loss.reconstruction, sparsity=loss.sparsity,
                                       sparsity_target=loss.sparsity_target, sparsity_weight=loss.sparsity_weight,
                                       corruption=loss.corruption, noise_factor=loss.noise_factor,
                                       mask_rate=loss.mask_rate)
    return Task(init_state, step, evaluate, pictures, None, {"model": model}, examples(dataset))


def gan_task(config, dataset: data.Dataset) -> Task:
    """The GAN family (GAN, DCGAN, conditional GAN, WGAN, WGAN-GP and the stabilisation options) from a
    `gan_config`. Sampling and evaluation use the generator's EMA weights."""
    objective = config.gan
    if objective.loss not in ("bce", "lsgan", "hinge", "wasserstein"):
        raise ConfigError(f"gan.loss must be bce, lsgan, hinge or wasserstein, got {objective.loss!r}")
    if objective.n_critic < 1 or config.data.batch_size % objective.n_critic:
        raise ConfigError(f"gan.n_critic={objective.n_critic} must be >= 1 and divide data.batch_size="
                          f"{config.data.batch_size} (each critic update takes its own share of the batch)")
    if objective.clusters and objective.conditional:
        raise ConfigError("gan.clusters (conditioned on clusters, no labels) and gan.conditional exclude each other")
    num_classes = dataset.num_classes if objective.conditional else objective.clusters
    clusters, test_labels = None, dataset.test_labels
    if objective.clusters:  # the labels the networks see are cluster ids; the run stays unconditional outside
        clusters = data.clusters.fit(dataset.train_images, objective.clusters, seed=config.seed)
        dataset = dataclasses.replace(dataset, train_labels=clusters.train_labels)
        test_labels = clusters.assign(dataset.test_images)

    def network(section):
        options = {k: v for k, v in section.items() if k != "name"}
        return models.create(section.name, image_shape=dataset.image_shape, num_classes=num_classes, **options)

    generator, discriminator = network(config.generator), network(config.discriminator)
    if clusters is not None:
        labels_for = lambda n: jnp.asarray(clusters.quota_labels(n))
    else:
        labels_for = (lambda n: gan.balanced_labels(n, num_classes)) if num_classes else (lambda n: None)

    def init_state(key):
        g_key, d_key = jax.random.split(key)
        labels = labels_for(2)
        g_vars = generator.init(g_key, jnp.zeros((2, generator.latent_dim)), labels)
        d_vars = discriminator.init(d_key, jnp.zeros((2, *dataset.image_shape)), labels)
        rest = lambda variables: {k: v for k, v in variables.items() if k != "params"}
        num_steps = config.train.steps  # generator updates; the discriminator makes n_critic per step
        networks = {
            "generator": TrainState.create(params=g_vars["params"], tx=make_optimizer(config.optim_g, num_steps),
                                           model_state=rest(g_vars)),
            "discriminator": TrainState.create(params=d_vars["params"], model_state=rest(d_vars),
                                               tx=make_optimizer(config.optim_d, num_steps * objective.n_critic))}
        return AdversarialState.create(networks, ema=("generator",),
                                       historical_averaging=objective.historical_averaging > 0)

    @functools.partial(jax.jit, static_argnums=2)
    def _sample(state, key, num):  # data-parallel over the local devices
        labels = labels_for(num)
        return spread_rows(gan.sample(generator, state, key, num, labels)), labels

    def draw(state, key, num):  # each chunk fetched before the next is dispatched (see parallel.unreplicate)
        chunks = [jax.device_get(_sample(state, jax.random.fold_in(key, i), min(500, num - i)))
                  for i in range(0, num, 500)]
        images = np.concatenate([images for images, _ in chunks])
        return images, np.concatenate([labels for _, labels in chunks]) if num_classes else None

    def sample(state, key, num):  # cluster ids stay inside: to the outside a cluster-conditioned GAN is unconditional
        images, labels = draw(state, key, num)
        return images, labels if objective.conditional else None

    _scores = jax.jit(functools.partial(gan.discriminate, discriminator))

    def evaluate(state, dataset, key):
        real, real_labels = dataset.test_images, test_labels
        fake, fake_labels = draw(state, key, config.eval.num_samples or len(real))

        def mean_output(images, labels):
            logits = data.map_batches(lambda i, x: _scores(state, x, None if labels is None else labels[i:i + len(x)]),
                                      images, config.eval.batch_size)
            return float(np.mean(jax.nn.sigmoid(logits) if objective.loss == "bce" else logits))

        flat = lambda x: jnp.asarray(x).reshape(len(x), -1)
        return {"d_real_test": mean_output(real, real_labels if num_classes else None),
                "d_fake": mean_output(fake, fake_labels),
                "pixel_fid": float(metrics.fid(flat(real), flat(fake))),  # FID in raw pixel space (cheap proxy)
                "num_samples": len(fake)}

    def pictures(state, dataset, key):
        if objective.conditional:  # row c: eight samples of class c; the same eight noise vectors in every row
            rows = [gan.sample(generator, state, key, 8, jnp.full((8,), c, jnp.int32)) for c in range(num_classes)]
            return {"class_samples": jnp.concatenate(rows)}
        return {"samples": _sample(state, key, 64)[0]}

    mixed = functools.partial(compute_in, config.train.compute_dtype)
    step = steps.make_gan_step(mixed(generator), mixed(discriminator), loss=objective.loss, saturating=objective.saturating,
                               n_critic=objective.n_critic, clip_value=objective.clip_value,
                               gp_weight=objective.gp_weight, r1_weight=objective.r1_weight, real_label=objective.real_label,
                               feature_matching=objective.feature_matching,
                               historical_averaging=objective.historical_averaging, ema_decay=objective.ema_decay)
    return Task(init_state, step, evaluate, pictures, sample,
                {"generator": generator, "discriminator": discriminator}, examples(dataset),
                batch_divisor=objective.n_critic)


def _rgb(images) -> jax.Array:
    """Grey images as three equal channels, so grey and colour domains share one picture."""
    return jnp.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def cyclegan_task(config, domains: data_domains.TwoDomains) -> Task:
    """Unpaired translation (CycleGAN) between the two domains of a `cyclegan_config`.

    Evaluation translates the paired test split both ways and reports the mean absolute pixel error of each
    translation against the other domain's true image (ground truth where the pair has one: A -> B for
    style pairs, B -> A for MNIST-M), the same error of the untranslated images when the domains share their
    channels (the identity map's), and the cycle errors |F(G(a)) - a| and |G(F(b)) - b|.
    """
    shapes = {"a": domains.shape_a, "b": domains.shape_b}

    def network(section, image_shape, **extra):
        options = {k: v for k, v in section.items() if k != "name"}
        return models.create(section.name, image_shape=image_shape, **options, **extra)

    modules = {"g_ab": network(config.generator, shapes["a"], out_channels=shapes["b"][-1]),
               "g_ba": network(config.generator, shapes["b"], out_channels=shapes["a"][-1]),
               "d_a": network(config.discriminator, shapes["a"]), "d_b": network(config.discriminator, shapes["b"])}
    inputs = {"g_ab": shapes["a"], "g_ba": shapes["b"], "d_a": shapes["a"], "d_b": shapes["b"]}
    optimizers = {"g_ab": config.optim_g, "g_ba": config.optim_g, "d_a": config.optim_d, "d_b": config.optim_d}

    def init_state(key):
        networks = {}
        for i, (name, module) in enumerate(modules.items()):
            params = module.init(jax.random.fold_in(key, i), jnp.zeros((1, *inputs[name])))["params"]
            networks[name] = TrainState.create(params=params, tx=make_optimizer(optimizers[name], config.train.steps))
        pool_size = config.cyclegan.pool_size
        pools = {"d_a": translation.init_pool(pool_size, shapes["a"]),
                 "d_b": translation.init_pool(pool_size, shapes["b"])}
        return AdversarialState.create(networks, pools=pools)

    def run(state, name, images):
        return translation.translate_all(modules[name], state[name].params, images, batch_size=config.eval.batch_size)

    def evaluate(state, domains, key):
        test_a, test_b = domains.test_a, domains.test_b
        a2b, b2a = run(state, "g_ab", test_a), run(state, "g_ba", test_b)
        error = lambda x, y: float(np.mean(np.abs(x - y)))
        results = {"a2b_error": error(a2b, test_b), "b2a_error": error(b2a, test_a),
                   "cycle_a_error": error(run(state, "g_ba", a2b), test_a),
                   "cycle_b_error": error(run(state, "g_ab", b2a), test_b), "num_test_images": len(test_a)}
        if shapes["a"][-1] == shapes["b"][-1]:
            results["identity_error"] = error(test_a, test_b)  # what an untranslated image scores, both ways
        return results

    def pictures(state, domains, key):  # rows: inputs, their translations, the translations translated back
        out = {}
        for name, images, forward, back in (("a2b", domains.test_a[:8], "g_ab", "g_ba"),
                                            ("b2a", domains.test_b[:8], "g_ba", "g_ab")):
            there = run(state, forward, images)
            out[name] = jnp.concatenate([_rgb(images), _rgb(there), _rgb(run(state, back, there))])
        return out

    mixed = {name: compute_in(config.train.compute_dtype, module) for name, module in modules.items()}
    step = steps.make_cyclegan_step(mixed["g_ab"], mixed["g_ba"], mixed["d_a"], mixed["d_b"],
                                    cycle_weight=config.cyclegan.cycle_weight,
                                    identity_weight=config.cyclegan.identity_weight)
    train_data = {"a": {"image_a": domains.train_a}, "b": {"image_b": domains.train_b}}
    return Task(init_state, step, evaluate, pictures, None, modules, train_data)


def pix2pix_task(config, pairs: data_domains.Pairs) -> Task:
    """Paired translation (pix2pix) of a `pix2pix_config`: evaluation reports the outputs' PSNR, mean absolute
    error against the targets and edge strength (sharpness) beside the fixed baseline's (bicubic upscaling for
    super-resolution) and the targets' edge strength; with eval.classifier_dir, that classifier's accuracy on the
    outputs, the baseline and the targets."""
    modules = {"generator": models.create(config.generator.name, image_shape=pairs.input_shape,
                                          out_channels=pairs.target_shape[-1],
                                          **{k: v for k, v in config.generator.items() if k != "name"}),
               "discriminator": models.create(config.discriminator.name, image_shape=pairs.target_shape,
                                              **{k: v for k, v in config.discriminator.items() if k != "name"})}
    classifier = (domain_classifier.load(config.eval.classifier_dir) if config.eval.classifier_dir else None)

    def init_state(key):
        g_key, d_key = jax.random.split(key)
        g = modules["generator"].init(g_key, jnp.zeros((1, *pairs.input_shape)))["params"]
        d = modules["discriminator"].init(d_key, jnp.zeros((1, *pairs.target_shape)),
                                          jnp.zeros((1, *pairs.input_shape)))["params"]
        return AdversarialState.create({
            "generator": TrainState.create(params=g, tx=make_optimizer(config.optim_g, config.train.steps)),
            "discriminator": TrainState.create(params=d, tx=make_optimizer(config.optim_d, config.train.steps))})

    def outputs(state, images):
        return translation.translate_all(modules["generator"], state["generator"].params, images,
                                         batch_size=config.eval.batch_size)

    def evaluate(state, pairs, key):
        out = outputs(state, pairs.test_inputs)
        psnr = lambda x: float(np.mean(metrics.psnr(jnp.asarray(x), jnp.asarray(pairs.test_targets))))
        error = lambda x: float(np.mean(np.abs(x - pairs.test_targets)))
        edges = lambda x: float(np.mean(metrics.edge_strength(jnp.asarray(x))))
        results = {"psnr": psnr(out), "baseline_psnr": psnr(pairs.test_baseline), "l1_error": error(out),
                   "baseline_l1_error": error(pairs.test_baseline), "edge_strength": edges(out),
                   "baseline_edge_strength": edges(pairs.test_baseline),
                   "target_edge_strength": edges(pairs.test_targets), "num_test_images": len(out)}
        if classifier is not None:
            for name, images in (("output", out), ("baseline", pairs.test_baseline),
                                 ("target", pairs.test_targets)):
                results[f"{name}_accuracy"] = domain_classifier.accuracy(classifier, images, pairs.test_labels)
        return results

    def pictures(state, pairs, key):  # rows: input, baseline, output, target
        return {"translations": jnp.concatenate([_rgb(pairs.test_inputs[:8]), _rgb(pairs.test_baseline[:8]),
                                                 _rgb(outputs(state, pairs.test_inputs[:8])),
                                                 _rgb(pairs.test_targets[:8])])}

    step = steps.make_pix2pix_step(compute_in(config.train.compute_dtype, modules["generator"]),
                                   compute_in(config.train.compute_dtype, modules["discriminator"]),
                                   l1_weight=config.pix2pix.l1_weight,
                                   adversarial_weight=config.pix2pix.adversarial_weight)
    train_data = {"pairs": {"input": pairs.train_inputs, "target": pairs.train_targets}}
    return Task(init_state, step, evaluate, pictures, None, modules, train_data, scores_outputs=True)


def load_data(config, *, lazy: bool = False):
    """The data `config`'s task trains on: one data set (`data.from_config`), two domains for unpaired
    translation (`data.domains.load`) or pairs for paired translation (`data.domains.load_pairs`).

    lazy: training images of image folders and tfds sets stay undecoded (`data.LazyImages`) until read.
    """
    tfds_data_dir = config.data.get("tfds_data_dir") or None
    if config.task == "cyclegan":
        return data_domains.load(config.data.source, lazy=lazy, tfds_data_dir=tfds_data_dir)
    if config.task == "pix2pix":
        return data_domains.load_pairs(config.data.source, tfds_data_dir=tfds_data_dir)
    return data.from_config(config.data, lazy=lazy)


FAMILIES = {"vae": vae_task, "autoencoder": autoencoder_task, "gan": gan_task, "cyclegan": cyclegan_task,
            "pix2pix": pix2pix_task}


def build(config, dataset: data.Dataset) -> Task:
    """The Task for `config.task` on `dataset`."""
    if config.task not in FAMILIES:
        raise ConfigError(f"unknown task {config.task!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[config.task](config, dataset)
