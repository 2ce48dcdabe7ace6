"""Train-step factories. Each returns a pure per-device step `(state, batch, key) -> (state, metrics)`.

Steps see only arrays: what they need from a config is bound when the factory is called. Gradients and
metrics are averaged with `lax.pmean` over `axis_name`, so the loop can map a step over devices with
`jax.pmap`; with axis_name=None the same step runs under a plain `jax.jit`. `batch` is
{"image": float32 [B, H, W, C] in [0, 1], "label": int32 [B]}; `key` is this step's key, the same on
every device (per-device noise is cut from the global batch's draw, see `parallel.local_rows`).
"""
from __future__ import annotations

import dataclasses

import jax
import optax
import jax.numpy as jnp
from jax import lax

from gen_jax import data, losses
from gen_jax.data import corruption as corruption_lib
from gen_jax.families import gan, translation, vae
from gen_jax.models.gan_networks import with_axis
from gen_jax.parallel import local_rows, pmean
from gen_jax.training.train_state import AdversarialState


def make_vae_step(model, *, beta: float = 1.0, kl_warmup_steps: int = 0, likelihood: str = "bernoulli",
                  binarize: bool = False, conditional: bool = False, axis_name: str | None = "batch"):
    """The (beta-)VAE step: minimise mean(recon NLL + beta * KL) over the batch, one posterior sample each.

    Args:
      model: a `gen_jax.models.autoencoders.VAE`.
      beta: weight of the KL term (1 gives the ELBO; Higgins et al. 2017 for beta != 1).
      kl_warmup_steps: >0 ramps the KL weight linearly from 0 to beta over that many steps (Bowman et al.
        2016; Sønderby et al. 2016), so the posterior carries information before the KL can switch it off.
      likelihood: 'bernoulli' (decoder logits, data in [0, 1]) or 'gaussian' (unit variance).
      binarize: dynamically binarise the batch (fresh Bernoulli draw each step).
      conditional: the model is a `ConditionalVAE`; batch["label"] conditions encoder and decoder.
      axis_name: the device axis to average over, or None when not mapped.
    Returns:
      step(state: TrainState, batch, key) -> (state, metrics) with metrics loss, recon, kl, neg_elbo.
    """

    def loss_fn(params, x, eps, labels, kl_weight):
        recon, kl = vae.loss_terms(model, params, x, eps, likelihood=likelihood, labels=labels)
        loss = jnp.mean(recon + kl_weight * kl)
        return loss, {"loss": loss, "recon": recon.mean(), "kl": kl.mean(), "neg_elbo": (recon + kl).mean()}

    def step(state, batch, key):
        binarize_key, eps_key = jax.random.split(key)
        images = batch["image"]
        uniform = local_rows(jax.random.uniform, binarize_key, images.shape, axis_name) if binarize else None
        x = data.preprocess(images, uniform=uniform)
        eps = local_rows(jax.random.normal, eps_key, (x.shape[0], model.latent_dim), axis_name)
        labels = batch["label"] if conditional else None
        kl_weight = beta * jnp.minimum(1.0, (state.step + 1) / kl_warmup_steps) if kl_warmup_steps else beta
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, x, eps, labels, kl_weight)
        return state.apply_gradients(pmean(grads, axis_name)), pmean(metrics, axis_name)

    return step


def make_autoencoder_step(model, *, reconstruction: str = "mse", sparsity: str = "none",
                          sparsity_target: float = 0.05, sparsity_weight: float = 0.1, corruption: str = "none",
                          noise_factor: float = 0.3, mask_rate: float = 0.25, axis_name: str | None = "batch"):
    """One step for the vanilla, sparse and denoising autoencoders: they differ only in these options.

    Args:
      model: a `gen_jax.models.autoencoders.Autoencoder` (`__call__(x) -> (logits, code)`).
      reconstruction: 'mse' (the seed's criterion) or 'bce', both per pixel (`losses.reconstruction_error`).
      sparsity: 'none'; 'kl' (the seed's penalty: sparsity_weight * sum_j KL(target || rho_hat_j), rho_hat
        the mean code over the *global* batch: averaged over devices, so N devices equal one; needs codes
        in (0, 1), i.e. a sigmoid code) or 'l1' (sparsity_weight * mean_b sum_j |code_bj|).
      corruption: 'none', 'gaussian' or 'masking' (`gen_jax.data.corruption.corrupt`): the model sees the
        corrupted batch and is scored against the clean one (denoising, Vincent et al. 2008).
      axis_name: the device axis to average over, or None when not mapped.
    Returns:
      step(state, batch, key) -> (state, metrics): loss, recon, mse (clean-target pixel MSE), and for a
      sparse model sparsity (the penalty) and mean_activation (mean over units of rho_hat, to set against
      the target).
    """
    if sparsity not in ("none", "kl", "l1"):
        raise ValueError(f"sparsity must be 'none', 'kl' or 'l1', got {sparsity!r}")

    def loss_fn(params, inputs, targets):
        logits, code = model.apply({"params": params}, inputs)
        recon = losses.reconstruction_error(logits=logits, targets=targets, kind=reconstruction).mean()
        rho_hat = pmean(jnp.mean(code, axis=0), axis_name)  # batch statistic over the global batch
        if sparsity == "kl":
            penalty = jnp.sum(losses.bernoulli_kl(target=sparsity_target, rho_hat=rho_hat))
        elif sparsity == "l1":
            penalty = losses.l1_activity(activations=code).mean()
        else:
            penalty = jnp.zeros(())
        loss = recon + sparsity_weight * penalty
        metrics = {"loss": loss, "recon": recon, "mse": jnp.mean((jax.nn.sigmoid(logits) - targets) ** 2)}
        if sparsity != "none":
            metrics.update(sparsity=penalty, mean_activation=jnp.mean(rho_hat))
        return loss, metrics

    def step(state, batch, key):
        images = batch["image"]
        inputs = corruption_lib.corrupt(key, images, kind=corruption, noise_factor=noise_factor,
                                        mask_rate=mask_rate, axis_name=axis_name)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, inputs, images)
        return state.apply_gradients(pmean(grads, axis_name)), pmean(metrics, axis_name)

    return step


@dataclasses.dataclass(frozen=True)
class GANObjective:
    """What a GAN's updates optimise: the adversarial loss and each stabiliser of the seed (see `make_gan_step`)."""

    loss: str = "bce"
    saturating: bool = False
    real_label: float = 1.0
    gp_weight: float = 0.0
    r1_weight: float = 0.0
    clip_value: float = 0.0
    feature_matching: bool = False
    historical_averaging: float = 0.0
    ema_decay: float = 0.999

    def reported(self, logits: jax.Array) -> jax.Array:
        """The mean D output reported in metrics: a probability for bce, the raw score otherwise."""
        return jnp.mean(jax.nn.sigmoid(logits) if self.loss == "bce" else logits)

    def accuracies(self, real_logits: jax.Array, fake_logits: jax.Array) -> dict:
        """D's accuracy on real and on fake images: the share it puts on the right side of its loss's decision
        point (logit 0 for bce and hinge, output 0.5 for lsgan's 1/0 targets); none for a Wasserstein critic."""
        if self.loss == "wasserstein":
            return {}
        threshold = 0.5 if self.loss == "lsgan" else 0.0
        return {"d_real_accuracy": jnp.mean(real_logits > threshold), "d_fake_accuracy": jnp.mean(fake_logits < threshold)}


def update_network(state: AdversarialState, name: str, grads, *, axis_name: str | None, model_state=None,
                   clip_value: float = 0.0) -> AdversarialState:
    """One optimizer update of network `name` with its gradients averaged over the device axis; then WGAN weight
    clipping to [-clip_value, clip_value] when > 0, and its historical average advanced when the state keeps one."""
    network = state[name].apply_gradients(pmean(grads, axis_name), model_state=model_state)
    if clip_value:
        network = network.replace(params=jax.tree.map(lambda p: jnp.clip(p, -clip_value, clip_value), network.params))
    averages = state.averages
    if averages is not None:
        averages = {**averages, name: gan.running_mean(averages[name], network.params, network.step)}
    return state.with_network(name, network).replace(averages=averages)


def critic_update(state: AdversarialState, real, real_y, keys: gan.UpdateKeys, *, generator, discriminator,
                  objective: GANObjective, axis_name: str | None):
    """One discriminator (critic) update of a GAN on real images [B, H, W, C] in [-1, 1] (labels real_y or None)
    against fresh fakes: the adversarial loss, plus the gradient penalty and historical averaging when on.

    Returns (state, metrics): d_loss, d_real, d_fake, d_grad_norm (of the averaged gradients), d_real_accuracy and
    d_fake_accuracy (not for wasserstein), and w_distance, gp, r1, d_history, d_weight_max when they apply.
    """
    z, fake_y = gan.generator_inputs(keys.noise, real.shape[0], latent_dim=generator.latent_dim,
                                     num_classes=generator.num_classes, axis_name=axis_name)
    g, d = state["generator"], state["discriminator"]
    fake, g_model_state = gan.apply(generator, g.params, g.model_state, z, fake_y, train=True)
    fake = lax.stop_gradient(fake)

    def loss_fn(params):
        (real_logits, _), ms = gan.apply(discriminator, params, d.model_state, real, real_y, train=True,
                                         rngs={"dropout": keys.first_pass})
        (fake_logits, _), ms = gan.apply(discriminator, params, ms, fake, fake_y, train=True,
                                         rngs={"dropout": keys.second_pass})
        adv = jnp.mean(losses.discriminator_loss(real_logits=real_logits, fake_logits=fake_logits,
                                                 kind=objective.loss, real_label=objective.real_label))
        metrics = {"d_loss": adv, "d_real": objective.reported(real_logits), "d_fake": objective.reported(fake_logits),
                   **objective.accuracies(real_logits, fake_logits)}
        total = adv
        if objective.loss == "wasserstein":
            metrics["w_distance"] = jnp.mean(real_logits) - jnp.mean(fake_logits)
        if objective.gp_weight:
            def critic(x):  # interpolates are scored with the real labels
                return gan.apply(discriminator, params, ms, x, real_y, train=True, rngs={"dropout": keys.penalty})[0][0]
            metrics["gp"] = jnp.mean(losses.gradient_penalty(critic, real=real, fake=fake, key=keys.interpolation,
                                                             axis_name=axis_name))
            total = total + objective.gp_weight * metrics["gp"]
        if objective.r1_weight:
            def critic_on_real(x):
                return gan.apply(discriminator, params, ms, x, real_y, train=True,
                                 rngs={"dropout": keys.first_pass})[0][0]
            metrics["r1"] = jnp.mean(losses.r1_penalty(critic_on_real, real=real))
            total = total + 0.5 * objective.r1_weight * metrics["r1"]
        if objective.historical_averaging:
            metrics["d_history"] = losses.historical_averaging(params=params, averages=state.averages["discriminator"])
            total = total + objective.historical_averaging * metrics["d_history"]
        return total, (ms, metrics)

    grads, (model_state, metrics) = jax.grad(loss_fn, has_aux=True)(d.params)
    grads = pmean(grads, axis_name)
    metrics["d_grad_norm"] = optax.tree.norm(grads)
    state = state.with_network("generator", g.replace(model_state=g_model_state))
    state = update_network(state, "discriminator", grads, axis_name=None, model_state=model_state,  # averaged
                           clip_value=objective.clip_value)
    if objective.clip_value:
        metrics["d_weight_max"] = jnp.max(jnp.stack([jnp.max(jnp.abs(p))
                                                     for p in jax.tree.leaves(state["discriminator"].params)]))
    return state, metrics


def generator_update(state: AdversarialState, real, real_y, keys: gan.UpdateKeys, *, generator, discriminator,
                     objective: GANObjective, axis_name: str | None):
    """One generator update of a GAN (real images are used only by feature matching), then its EMA.

    Returns (state, metrics): g_loss (the adversarial or feature-matching part), g_grad_norm (of the averaged
    gradients), and g_history when on.
    """
    z, fake_y = gan.generator_inputs(keys.noise, real.shape[0], latent_dim=generator.latent_dim,
                                     num_classes=generator.num_classes, axis_name=axis_name)
    g, d = state["generator"], state["discriminator"]

    def loss_fn(params):
        fake, g_model_state = gan.apply(generator, params, g.model_state, z, fake_y, train=True)
        (fake_logits, fake_features), _ = gan.apply(discriminator, d.params, d.model_state, fake, fake_y,
                                                    train=True, rngs={"dropout": keys.first_pass})
        if objective.feature_matching:
            (_, real_features), _ = gan.apply(discriminator, d.params, d.model_state, real, real_y, train=True,
                                              rngs={"dropout": keys.second_pass})
            adv = losses.feature_matching(  # means over the global batch
                real_features=pmean(jnp.mean(real_features, axis=0, keepdims=True), axis_name),
                fake_features=pmean(jnp.mean(fake_features, axis=0, keepdims=True), axis_name))
        else:
            adv = jnp.mean(losses.generator_loss(fake_logits=fake_logits, kind=objective.loss,
                                                 saturating=objective.saturating))
        metrics = {"g_loss": adv}
        if objective.historical_averaging:
            metrics["g_history"] = losses.historical_averaging(params=params, averages=state.averages["generator"])
            adv = adv + objective.historical_averaging * metrics["g_history"]
        return adv, (g_model_state, metrics)

    grads, (model_state, metrics) = jax.grad(loss_fn, has_aux=True)(g.params)
    grads = pmean(grads, axis_name)
    metrics["g_grad_norm"] = optax.tree.norm(grads)  # vanishes when D wins under the saturating loss
    state = update_network(state, "generator", grads, axis_name=None, model_state=model_state)  # averaged
    g = state["generator"]
    ema = gan.ema_update(state.ema_params["generator"], g.params, objective.ema_decay, g.step)
    return state.replace(ema_params={**state.ema_params, "generator": ema}), metrics


def make_gan_step(generator, discriminator, *, loss: str = "bce", saturating: bool = False, n_critic: int = 1,
                  clip_value: float = 0.0, gp_weight: float = 0.0, r1_weight: float = 0.0,
                  real_label: float = 1.0, feature_matching: bool = False, historical_averaging: float = 0.0, ema_decay: float = 0.999,
                  axis_name: str | None = "batch"):
    """The GAN step: `n_critic` critic updates, then one generator update, on an `AdversarialState` with
    networks 'generator' and 'discriminator' (`critic_update`, `generator_update`).

    Each network has its own optax state and learning rate; both gradients are averaged over devices. Critic
    update i uses rows i, i + n_critic, ... of the batch (a fresh real minibatch per critic update, as in
    Arjovsky et al. 2017, Alg. 1: set data.batch_size = n_critic * minibatch; strided rows keep sharded runs
    equal to one device) and fresh noise; the generator update uses the last of those minibatches. Every noise
    draw (z, fake labels, dropout, GP interpolates) is cut from the global batch's draw (`gan.update_keys`).

    Args:
      generator, discriminator: modules from `gen_jax.models.gan_networks` (conditional when generator.num_classes).
      loss: 'bce' (minimax / non-saturating), 'lsgan', 'hinge' or 'wasserstein' (`losses.discriminator_loss`).
      saturating: for bce, the minimax generator loss log(1 - D(G(z))) instead of -log D(G(z)).
      n_critic: discriminator updates per generator update.
      clip_value: >0 clips every discriminator parameter to [-c, c] after each critic update (WGAN).
      gp_weight: >0 adds gp_weight * gradient penalty on interpolates (WGAN-GP, Gulrajani et al. 2017).
      r1_weight: gamma > 0 adds gamma / 2 * ||grad_x D(x)||^2 on real images (R1, Mescheder et al. 2018).
      real_label: target for real images in bce/lsgan; 0.9 is one-sided label smoothing.
      feature_matching: the generator minimises ||E f(x) - E f(G(z))||^2 over the discriminator's last hidden
        features (global-batch means) instead of its adversarial loss (Salimans et al. 2016).
      historical_averaging: >0 adds that weight times ||theta - running mean of theta||^2 to both losses.
      ema_decay: decay of the EMA of the generator's params kept for sampling (0: EMA = params), with a
        warm-up (`families.gan.ema_decay`).
      axis_name: the device axis, or None when not mapped.
    Returns:
      step(state, batch, key) -> (state, metrics): d_loss, g_loss (adversarial parts), d_real and d_fake (mean D
      output: probability for bce, raw score otherwise), d_grad_norm and g_grad_norm (global norms of each
      network's averaged gradients), d_real_accuracy and d_fake_accuracy (D's hit rates; not for
      wasserstein), gp, r1, w_distance (wasserstein), d_weight_max (largest
      |parameter| after clipping, when clipping), d_history and g_history (the historical-averaging distances
      ||theta - mean||^2, when on).
    """
    networks = dict(generator=with_axis(generator, axis_name), discriminator=with_axis(discriminator, axis_name),
                    objective=GANObjective(loss, saturating, real_label, gp_weight, r1_weight, clip_value,
                                           feature_matching, historical_averaging, ema_decay),
                    axis_name=axis_name)
    conditional = generator.num_classes > 0

    def step(state, batch, key):
        images = data.preprocess(batch["image"], value_range=data.SIGNED)
        labels = batch["label"] if conditional else None
        if images.shape[0] % n_critic:
            raise ValueError(f"per-device batch {images.shape[0]} is not divisible by n_critic={n_critic}")
        critic_metrics = []
        for i in range(n_critic):  # unrolled: n_critic is small
            real, real_y = images[i::n_critic], None if labels is None else labels[i::n_critic]
            state, metrics = critic_update(state, real, real_y, gan.update_keys(key, i), **networks)
            critic_metrics.append(metrics)
        metrics = jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *critic_metrics)
        if clip_value:
            metrics["d_weight_max"] = jnp.max(jnp.stack([m["d_weight_max"] for m in critic_metrics]))
        state, g_metrics = generator_update(state, real, real_y, gan.update_keys(key, n_critic), **networks)
        return state, pmean({**metrics, **g_metrics}, axis_name)

    return step


def _pooled(pool, fakes, key, axis_name: str | None):
    """This device's rows of the image pool's answer for the global batch of fakes: every device queries the same
    pool with the same key on the gathered batch, so N devices keep the pool one device would."""
    if axis_name is None:
        return translation.query_pool(pool, fakes, key)
    pool, images = translation.query_pool(pool, lax.all_gather(fakes, axis_name, tiled=True), key)
    rows = fakes.shape[0]
    return pool, lax.dynamic_slice_in_dim(images, lax.axis_index(axis_name) * rows, rows)


def make_cyclegan_step(g_ab, g_ba, d_a, d_b, *, cycle_weight: float = 10.0, identity_weight: float = 0.5,
                       axis_name: str | None = "batch"):
    """The CycleGAN step (Zhu et al. 2017) on an `AdversarialState` with networks 'g_ab', 'g_ba', 'd_a', 'd_b'
    and image pools 'd_a', 'd_b': one joint update of both generators, then one of each discriminator.

    Generators minimise the least-squares adversarial loss against both discriminators (as the reference:
    (D(G(x)) - 1)^2, twice `losses.generator_loss(kind='lsgan')`), plus cycle_weight * the L1 cycle losses
    |F(G(a)) - a| + |G(F(b)) - b| and, when both domains have the same channels, identity_weight * cycle_weight *
    the identity losses |G(b) - b| + |F(a) - a|. Each discriminator then scores its real images against the
    generators' outputs from this step passed through its image pool (`families.translation.query_pool`).

    Args:
      g_ab, g_ba: generators A -> B and B -> A (`models.translation`); d_a, d_b: discriminators of each domain.
      cycle_weight: lambda of the cycle loss (10); identity_weight: the identity loss's weight as a fraction of
        lambda (0.5; 0 turns it off).
      axis_name: the device axis, or None when not mapped.
    Returns:
      step(state, batch, key) -> (state, metrics) with batch {"image_a", "image_b"} in [0, 1]; metrics g_loss
      (both adversarial terms), cycle, identity, d_a_loss, d_b_loss.
    """
    g_ab, g_ba = with_axis(g_ab, axis_name), with_axis(g_ba, axis_name)

    def generator_loss(params, judges, real_a, real_b, keys):  # judges: the discriminators' params, held fixed
        fake_b = g_ab.apply({"params": params["g_ab"]}, real_a, train=True, rngs={"dropout": keys[0]})
        fake_a = g_ba.apply({"params": params["g_ba"]}, real_b, train=True, rngs={"dropout": keys[1]})
        adversarial = 2.0 * jnp.mean(
            losses.generator_loss(fake_logits=d_b.apply({"params": judges["d_b"]}, fake_b), kind="lsgan")
            + losses.generator_loss(fake_logits=d_a.apply({"params": judges["d_a"]}, fake_a), kind="lsgan"))
        back_a = g_ba.apply({"params": params["g_ba"]}, fake_b, train=True, rngs={"dropout": keys[2]})
        back_b = g_ab.apply({"params": params["g_ab"]}, fake_a, train=True, rngs={"dropout": keys[3]})
        cycle = jnp.mean(losses.cycle_consistency(reconstructed=back_a, originals=real_a)
                         + losses.cycle_consistency(reconstructed=back_b, originals=real_b))
        identity = jnp.zeros(())
        if identity_weight and real_a.shape[-1] == real_b.shape[-1]:
            same_b = g_ab.apply({"params": params["g_ab"]}, real_b, train=True, rngs={"dropout": keys[4]})
            same_a = g_ba.apply({"params": params["g_ba"]}, real_a, train=True, rngs={"dropout": keys[5]})
            identity = jnp.mean(losses.identity_loss(mapped=same_b, originals=real_b)
                                + losses.identity_loss(mapped=same_a, originals=real_a))
        total = adversarial + cycle_weight * (cycle + identity_weight * identity)
        return total, ((fake_a, fake_b), {"g_loss": adversarial, "cycle": cycle, "identity": identity})

    def discriminator_loss(params, real, fake, network):
        return jnp.mean(losses.discriminator_loss(real_logits=network.apply({"params": params}, real),
                                                  fake_logits=network.apply({"params": params}, fake), kind="lsgan"))

    def step(state, batch, key):
        real_a = data.preprocess(batch["image_a"], value_range=data.SIGNED)
        real_b = data.preprocess(batch["image_b"], value_range=data.SIGNED)
        dropout_key, pool_a_key, pool_b_key = jax.random.split(key, 3)
        generators = {name: state[name].params for name in ("g_ab", "g_ba")}
        judges = {name: state[name].params for name in ("d_a", "d_b")}
        grads, ((fake_a, fake_b), metrics) = jax.grad(generator_loss, has_aux=True)(
            generators, judges, real_a, real_b, jax.random.split(dropout_key, 6))
        for name in ("g_ab", "g_ba"):
            state = update_network(state, name, grads[name], axis_name=axis_name)
        pools = dict(state.pools)
        for name, network, real, fake, pool_key in (("d_a", d_a, real_a, fake_a, pool_a_key),
                                                    ("d_b", d_b, real_b, fake_b, pool_b_key)):
            pools[name], shown = _pooled(pools[name], fake, pool_key, axis_name)
            loss, d_grads = jax.value_and_grad(discriminator_loss)(state[name].params, real, shown, network)
            state = update_network(state, name, d_grads, axis_name=axis_name)
            metrics[f"{name}_loss"] = loss
        return state.replace(pools=pools), pmean(metrics, axis_name)

    return step


def make_pix2pix_step(generator, discriminator, *, l1_weight: float = 100.0, adversarial_weight: float = 1.0,
                      axis_name: str | None = "batch"):
    """The pix2pix step (Isola et al. 2017) on an `AdversarialState` with networks 'generator' and
    'discriminator': one discriminator update on (input, target) against (input, G(input)) pairs, then one
    generator update on adversarial_weight * the non-saturating GAN loss + l1_weight * |G(input) - target|.

    The discriminator's loss is half the sum of its real and fake cross-entropies, as the reference (which
    slows D relative to G). adversarial_weight 0 leaves the discriminator untouched and trains L1 alone.

    Returns:
      step(state, batch, key) -> (state, metrics) with batch {"input", "target"} in [0, 1]; metrics g_loss
      (adversarial part), l1, d_loss, d_real, d_fake (mean D probabilities).
    """
    generator = with_axis(generator, axis_name)

    def translate(params, inputs, key):
        return generator.apply({"params": params}, inputs, train=True, rngs={"dropout": key})

    def discriminator_loss(params, inputs, targets, fakes):
        real = discriminator.apply({"params": params}, targets, inputs)
        fake = discriminator.apply({"params": params}, fakes, inputs)
        loss = 0.5 * jnp.mean(losses.discriminator_loss(real_logits=real, fake_logits=fake, kind="bce"))
        return loss, {"d_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(real)), "d_fake": jnp.mean(jax.nn.sigmoid(fake))}

    def generator_loss(params, d_params, inputs, targets, key):
        fakes = translate(params, inputs, key)
        l1 = jnp.mean(losses.l1_reconstruction(predictions=fakes, targets=targets))
        adversarial = jnp.mean(losses.generator_loss(
            fake_logits=discriminator.apply({"params": d_params}, fakes, inputs), kind="bce"))
        return adversarial_weight * adversarial + l1_weight * l1, {"g_loss": adversarial, "l1": l1}

    def step(state, batch, key):
        inputs = data.preprocess(batch["input"], value_range=data.SIGNED)
        targets = data.preprocess(batch["target"], value_range=data.SIGNED)
        d_key, g_key = jax.random.split(key)
        metrics = {}
        if adversarial_weight:
            fakes = lax.stop_gradient(translate(state["generator"].params, inputs, d_key))
            d_grads, metrics = jax.grad(discriminator_loss, has_aux=True)(state["discriminator"].params, inputs,
                                                                         targets, fakes)
            state = update_network(state, "discriminator", d_grads, axis_name=axis_name)
        g_grads, g_metrics = jax.grad(generator_loss, has_aux=True)(state["generator"].params,
                                                                   state["discriminator"].params, inputs, targets,
                                                                   g_key)
        state = update_network(state, "generator", g_grads, axis_name=axis_name)
        return state, pmean({**metrics, **g_metrics}, axis_name)

    return step


def init_health() -> dict:
    """The record `guard_nonfinite` keeps on the device: rejected updates so far, the first rejected step (-1:
    none) and a bitmask of what was non-finite there (bit i: metric i in sorted order; the last bit: the state)."""
    return {"rejected": jnp.zeros((), jnp.int32), "first_bad_step": jnp.full((), -1, jnp.int32),
            "what": jnp.zeros((), jnp.int32)}


def nonfinite_names(health_what: int, metric_names) -> list[str]:
    """The names behind `init_health`'s bitmask: metrics (sorted) and the updated parameters (where a
    non-finite gradient lands)."""
    names = [*sorted(metric_names), "the updated parameters (gradients)"]
    return [name for i, name in enumerate(names) if health_what >> i & 1]


def _in_optimizer_state(path) -> bool:
    return any(getattr(key, "name", getattr(key, "key", None)) == "opt_state" for key in path)


def _all_finite(state) -> jax.Array:
    """Whether every floating-point leaf of a train state is finite, optimizer states aside: a NaN or inf gradient
    reaches the parameters in the same update, and skipping the moments keeps the check cheap (about a third
    of an Adam state). A moment that alone overflows is still never saved: `Checkpointer.save` refuses it."""
    leaves = [jnp.all(jnp.isfinite(x)) for path, x in jax.tree_util.tree_flatten_with_path(state)[0]
              if jnp.issubdtype(x.dtype, jnp.inexact) and not _in_optimizer_state(path)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _finite_flags(new_state, metrics) -> list:
    """Whether each metric (in sorted order), then the updated state, is finite: `init_health`'s bits."""
    return [jnp.all(jnp.isfinite(metrics[name])) for name in sorted(metrics)] + [_all_finite(new_state)]


def update_is_finite(new_state, metrics) -> jax.Array:
    """Whether `guard_nonfinite` would apply this update (every metric and the updated state finite), without
    applying or rejecting anything."""
    return jnp.all(jnp.stack(_finite_flags(new_state, metrics)))


def update_allowed(finite: jax.Array, health: dict, mode: str) -> jax.Array:
    """Whether a finite-or-not update is applied: 'skip' applies every finite one; 'stop' none after the first
    non-finite one (`health` records it)."""
    return finite if mode == "skip" else finite & (health["first_bad_step"] < 0)


def guard_nonfinite(train_step, *, mode: str = "stop"):
    """Wraps a step so that an update with a NaN or inf in its metrics (the loss) or in the updated parameters
    and model state (where a non-finite gradient lands) is never applied: the old state is kept, all on the
    device (no host sync).

    Args:
      train_step: step(state, batch, key) -> (state, metrics), as the factories above return.
      mode: 'skip' keeps training on the next batch; 'stop' also rejects every later update, so the state stays
        the last good one until the host reads the record (`init_health`) and stops.
    Returns:
      guarded((state, health), batch, key, step) -> ((state, health), metrics), metrics with '_ok' (bool: the
      update was applied). When everything is finite the state equals train_step's, bit for bit.
    """
    if mode not in ("stop", "skip"):
        raise ValueError(f"mode must be 'stop' or 'skip', got {mode!r}")

    def guarded(carry, batch, key, step):
        state, health = carry
        new_state, metrics = train_step(state, batch, key)
        flags = _finite_flags(new_state, metrics)
        finite = jnp.all(jnp.stack(flags))
        ok = update_allowed(finite, health, mode)
        state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
        first = (health["first_bad_step"] < 0) & ~finite
        what = sum(jnp.where(flag, 0, 1 << i) for i, flag in enumerate(flags)).astype(jnp.int32)
        health = {"rejected": health["rejected"] + (~ok).astype(jnp.int32),
                  "first_bad_step": jnp.where(first, jnp.asarray(step, jnp.int32), health["first_bad_step"]),
                  "what": jnp.where(first, what, health["what"])}
        return (state, health), {**metrics, "_ok": ok}

    return guarded
