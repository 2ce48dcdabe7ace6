"""The GAN family: losses against their formulas (NumPy), the gradient penalty against finite differences,
spectral norm against SVD, each stabilisation switch against its definition, the two optimizers, EMA, one
compilation, and networks of every kind. Multi-device equality and training quality live in
test_gan_parallel.py and test_gan_training.py.
"""
import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gen_jax import losses, models
from gen_jax.families import gan
from gen_jax.training import steps
from gen_jax.config import optimizer_config
from gen_jax.errors import ConfigError
from gen_jax.models import gan_networks as gan_models
from gen_jax.models import layers
from gen_jax.training.optim import make_optimizer
from gen_jax.training.train_state import AdversarialState, TrainState

SHAPE = (8, 8, 1)
LATENT = 8


def softplus(x):
    return np.logaddexp(0.0, x)


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(6,)).astype(np.float32) * 4, rng.normal(size=(6,)).astype(np.float32) * 4)


# ----------------------------------------------------------------------------- losses vs formulas
@pytest.mark.parametrize("kind,real_label", [("bce", 1.0), ("bce", 0.9), ("lsgan", 1.0), ("lsgan", 0.9),
                                             ("hinge", 1.0), ("wasserstein", 1.0)])
def test_discriminator_loss_matches_formula(logits, kind, real_label):
    r, f = (x.astype(np.float64) for x in logits)
    expected = {
        # BCE(sigmoid(r), t) + BCE(sigmoid(f), 0), written with log-sigmoid = -softplus(-x)
        "bce": -(real_label * -softplus(-r) + (1 - real_label) * -softplus(r)) + softplus(f),
        "lsgan": 0.5 * (r - real_label) ** 2 + 0.5 * f**2,
        "hinge": np.maximum(0, 1 - r) + np.maximum(0, 1 + f),
        "wasserstein": f - r,
    }[kind]
    fn = jax.jit(functools.partial(losses.discriminator_loss, kind=kind, real_label=real_label))
    np.testing.assert_allclose(fn(real_logits=logits[0], fake_logits=logits[1]), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,saturating", [("bce", False), ("bce", True), ("lsgan", False), ("hinge", False),
                                             ("wasserstein", False)])
def test_generator_loss_matches_formula(logits, kind, saturating):
    f = logits[1].astype(np.float64)
    if kind == "bce":
        d = 1 / (1 + np.exp(-f))
        expected = np.log(1 - d) if saturating else -np.log(d)  # minimax log(1 - D) / non-saturating -log D
    else:
        expected = {"lsgan": 0.5 * (f - 1) ** 2, "hinge": -f, "wasserstein": -f}[kind]
    fn = jax.jit(functools.partial(losses.generator_loss, kind=kind, saturating=saturating))
    np.testing.assert_allclose(fn(fake_logits=logits[1]), expected, rtol=1e-5, atol=1e-5)


def test_bce_losses_are_stable_for_extreme_logits():
    big = jnp.array([200.0, -200.0])
    d = losses.discriminator_loss(real_logits=big, fake_logits=-big)
    g = losses.generator_loss(fake_logits=big)
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(g))
    np.testing.assert_allclose(d, [0.0, 400.0], atol=1e-4)


def test_gradient_penalty_matches_finite_differences():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3))
    real, fake = rng.normal(size=(2, 3, 2, 2, 1))
    key = jax.random.key(7)

    def critic_np(x):  # one input, [2, 2, 1] -> scalar
        return np.sum(np.tanh(x.reshape(-1) @ w) ** 2)

    def critic(x):
        return jnp.sum(jnp.tanh(x.reshape(x.shape[0], -1) @ w) ** 2, axis=-1)

    with jax.enable_x64(True):
        gp = jax.jit(lambda r, f: losses.gradient_penalty(critic, real=r, fake=f, key=key))(real, fake)
        e = np.asarray(jax.random.uniform(key, (3, 1, 1, 1), jnp.float64))  # the draw gradient_penalty makes
    x_hat = e * real + (1 - e) * fake
    expected = []
    for x in x_hat:
        grad = np.zeros(x.size)
        for j in range(x.size):
            step = np.zeros(x.size)
            step[j] = 1e-6
            grad[j] = (critic_np(x + step.reshape(x.shape)) - critic_np(x - step.reshape(x.shape))) / 2e-6
        expected.append((np.linalg.norm(grad) - 1) ** 2)
    np.testing.assert_allclose(gp, expected, rtol=1e-6)


def test_r1_penalty_is_the_squared_input_gradient_norm_on_real_images():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 2)).astype(np.float32)
    real = rng.normal(size=(3, 2, 2, 1)).astype(np.float32)

    def critic(x):  # D(x) = sum(tanh(x W)^2): grad_x = W (2 tanh(xW) (1 - tanh(xW)^2))
        return jnp.sum(jnp.tanh(x.reshape(x.shape[0], -1) @ w) ** 2, axis=-1)

    t = np.tanh(real.reshape(3, -1) @ w)
    grads = (2 * t * (1 - t**2)) @ w.T
    r1 = jax.jit(lambda r: losses.r1_penalty(critic, real=r))(real)
    np.testing.assert_allclose(r1, np.sum(grads**2, axis=-1), rtol=1e-5)


def test_feature_matching_and_historical_averaging_formulas():
    rng = np.random.default_rng(2)
    fr, ff = rng.normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.feature_matching(real_features=fr, fake_features=ff),
                               np.sum((fr.mean(0) - ff.mean(0)) ** 2), rtol=1e-5)
    params = {"a": jnp.ones((2, 2)), "b": {"c": jnp.arange(3.0)}}
    averages = {"a": jnp.zeros((2, 2)), "b": {"c": jnp.ones(3)}}
    np.testing.assert_allclose(losses.historical_averaging(params=params, averages=averages), 4 + (1 + 0 + 1))


# ----------------------------------------------------------------------------- layers
@pytest.mark.parametrize("layer,x_shape", [(layers.Dense(5, spectral_norm=True), (2, 7)),
                                           (layers.Conv(6, (3, 3), spectral_norm=True), (2, 5, 5, 4))])
@pytest.mark.slow
def test_spectral_norm_estimate_matches_svd(layer, x_shape):
    x = jnp.ones(x_shape)
    variables = layer.init(jax.random.key(0), x)
    apply = jax.jit(lambda v: layer.apply(v, x, update_stats=True, mutable=["spectral"])[1])
    for _ in range(60):  # one power-iteration step per training update
        variables = {**variables, **apply(variables)}
    kernel = np.asarray(variables["params"]["kernel"])
    matrix = kernel.reshape(-1, kernel.shape[-1])
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    np.testing.assert_allclose(variables["spectral"]["sigma"], sigma, rtol=1e-3)
    # the layer then computes with kernel / sigma, whose spectral norm is 1
    probe = jnp.eye(x_shape[-1]) if len(x_shape) == 2 else None
    if probe is not None:
        out = layer.apply(variables, probe) - variables["params"]["bias"]
        np.testing.assert_allclose(np.linalg.svd(np.asarray(out), compute_uv=False)[0], 1.0, rtol=1e-3)


def test_spectral_norm_vectors_advance_only_when_updating():
    layer = layers.Dense(4, spectral_norm=True)
    x = jnp.ones((1, 3))
    v = layer.init(jax.random.key(0), x)
    _, kept = layer.apply(v, x, update_stats=False, mutable=["spectral"])
    _, moved = layer.apply(v, x, update_stats=True, mutable=["spectral"])
    np.testing.assert_array_equal(kept["spectral"]["u"], v["spectral"]["u"])
    assert not np.allclose(moved["spectral"]["u"], v["spectral"]["u"])


def test_minibatch_discrimination_matches_formula():
    f = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    layer = layers.MinibatchDiscrimination(num_kernels=3, kernel_dim=2)
    variables = layer.init(jax.random.key(0), f)
    out = np.asarray(layer.apply(variables, f))
    m = (f @ np.asarray(variables["params"]["T"])).reshape(5, 3, 2)
    o = np.exp(-np.abs(m[:, None] - m[None]).sum(-1)).sum(1)  # o(x_i)_b = sum_j exp(-||M_ib - M_jb||_1)
    np.testing.assert_allclose(out, np.concatenate([f, o], -1), rtol=1e-5)


def test_minibatch_stddev_matches_formula():
    x = np.random.default_rng(4).normal(size=(8, 3, 3, 2)).astype(np.float32)
    out = np.asarray(layers.MinibatchStddev(4).apply({}, x))
    groups = x.reshape(2, 4, 3, 3, 2)
    stat = np.sqrt(groups.var(axis=1) + 1e-8).reshape(2, -1).mean(-1)
    np.testing.assert_allclose(out[..., :2], x)
    np.testing.assert_allclose(out[..., 2], np.repeat(stat, 4)[:, None, None] * np.ones((8, 3, 3)), rtol=1e-5)
    # an evaluation batch of 6 is not divisible by 4: groups of gcd(4, 6) = 2
    out6 = np.asarray(layers.MinibatchStddev(4).apply({}, x[:6]))
    stat6 = np.sqrt(x[:6].reshape(3, 2, 3, 3, 2).var(axis=1) + 1e-8).reshape(3, -1).mean(-1)
    np.testing.assert_allclose(out6[..., 2], np.repeat(stat6, 2)[:, None, None] * np.ones((6, 3, 3)), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("option", ["minibatch_discrimination", "minibatch_stddev"])
def test_minibatch_layers_let_the_discriminator_see_the_batch(option):
    d = gan_models.MLPDiscriminator(hidden_dims=(16,), **{option: 4})
    plain = gan_models.MLPDiscriminator(hidden_dims=(16,))
    x = jax.random.normal(jax.random.key(0), (4, *SHAPE))
    x2 = x.at[1:].set(0.0)  # same first example, different batch-mates
    for net, depends in ((d, True), (plain, False)):
        v = net.init(jax.random.key(1), x)
        first, second = net.apply(v, x)[0][0], net.apply(v, x2)[0][0]
        assert (abs(float(first - second)) > 1e-6) == depends


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("kind,shape,num_classes", [("mlp", (28, 28, 1), 10), ("mlp", (32, 32, 3), 0),
                                                     ("dcgan", (8, 8, 1), 0), ("dcgan", (28, 28, 1), 10),
                                                     ("dcgan", (32, 32, 3), 0)])
@pytest.mark.slow
def test_networks_fit_the_data_shape(kind, shape, num_classes):
    g_name, d_name = f"{kind}_generator", f"{kind}_discriminator"
    g = models.create(g_name, image_shape=shape, num_classes=num_classes, latent_dim=LATENT)
    d = models.create(d_name, image_shape=shape, num_classes=num_classes,
                      **({"conditioning": "projection"} if num_classes else {}))
    labels = jnp.arange(2) if num_classes else None
    gv = g.init(jax.random.key(0), jnp.zeros((2, LATENT)), labels)
    images = g.apply(gv, jnp.ones((2, LATENT)), labels)
    assert images.shape == (2, *shape) and float(jnp.max(jnp.abs(images))) <= 1.0
    dv = d.init(jax.random.key(1), images, labels)
    logits, features = d.apply(dv, images, labels)
    assert logits.shape == (2,) and features.ndim == 2


def test_dcgan_generator_keeps_the_seeds_batchnorm_eps():
    eps = []

    def spy(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            eps.append(context.module.epsilon)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(spy):
        gan_models.DCGANGenerator(SHAPE, latent_dim=LATENT).init(jax.random.key(0), jnp.zeros((2, LATENT)))
    assert eps == [1e-5, 0.8, 0.8]  # BatchNorm2d(128), then the seed's BatchNorm2d(C, 0.8) twice


# ----------------------------------------------------------------------------- the step
def make(g=None, d=None, optim_g=None, optim_d=None, historical_averaging=0.0, **step_options):
    """(state, jitted unmapped step, generator, discriminator) for a small GAN on 8x8 images."""
    g = g or gan_models.MLPGenerator(SHAPE, latent_dim=LATENT, hidden_dims=(16,))
    d = d or gan_models.MLPDiscriminator(hidden_dims=(16,))
    labels = jnp.arange(2) % 10 if g.num_classes else None
    gv = g.init(jax.random.key(0), jnp.zeros((2, LATENT)), labels)
    dv = d.init(jax.random.key(1), jnp.zeros((2, *SHAPE)), labels)
    rest = lambda v: {k: x for k, x in v.items() if k != "params"}
    state = AdversarialState.create(
        {"generator": TrainState.create(params=gv["params"], tx=optim_g or optax.adam(1e-3), model_state=rest(gv)),
         "discriminator": TrainState.create(params=dv["params"], tx=optim_d or optax.adam(1e-3),
                                            model_state=rest(dv))},
        ema=("generator",), historical_averaging=historical_averaging > 0)
    step = steps.make_gan_step(g, d, historical_averaging=historical_averaging, axis_name=None, **step_options)
    return state, jax.jit(step), g, d


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.uniform(size=(n, *SHAPE)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_weight_clipping_holds_after_every_critic_step():
    big = optax.sgd(1.0)  # steps far larger than the clip range
    state, step, _, _ = make(optim_d=big, loss="wasserstein", n_critic=3, clip_value=0.01)
    unclipped, step_unclipped, _, _ = make(optim_d=big, loss="wasserstein", n_critic=3)
    for i in range(3):
        state, metrics = step(state, batch(24, seed=i), jax.random.key(i))
        assert float(metrics["d_weight_max"]) <= 0.01  # the max over all three critic updates of this step
        assert max(np.abs(x).max() for x in leaves(state["discriminator"].params)) <= 0.01
    unclipped, _ = step_unclipped(unclipped, batch(24), jax.random.key(0))
    assert max(np.abs(x).max() for x in leaves(unclipped["discriminator"].params)) > 0.01  # the test can fail


@pytest.mark.slow
def test_one_sided_label_smoothing_changes_the_discriminator_loss_as_defined():
    b, key = batch(), jax.random.key(3)
    state, smooth, _, d = make(real_label=0.9)
    _, hard, _, _ = make(real_label=1.0)
    real_logits = d.apply({"params": state["discriminator"].params}, b["image"] * 2 - 1)[0]
    # BCE(sigmoid(l), 0.9) - BCE(sigmoid(l), 1) = (1 - 0.9) * l, per real example
    diff = smooth(state, b, key)[1]["d_loss"] - hard(state, b, key)[1]["d_loss"]
    np.testing.assert_allclose(diff, 0.1 * np.mean(real_logits), rtol=1e-4, atol=1e-6)


def test_feature_matching_is_the_generator_loss():
    b, key = batch(), jax.random.key(4)
    state, step, g, d = make(feature_matching=True)
    new, metrics = step(state, b, key)
    z, _ = gan.generator_inputs(gan.update_keys(key, 1).noise, 8, latent_dim=LATENT)  # the generator update's
    fake = g.apply({"params": state["generator"].params}, z, train=True)
    d_vars = {"params": new["discriminator"].params}  # the discriminator after its update
    f_real = d.apply(d_vars, b["image"] * 2 - 1, train=True)[1]
    f_fake = d.apply(d_vars, fake, train=True)[1]
    expected = np.sum((np.mean(f_real, 0) - np.mean(f_fake, 0)) ** 2)
    np.testing.assert_allclose(metrics["g_loss"], expected, rtol=1e-4)
    _, plain = make()[1](state, b, key)
    assert not np.isclose(plain["g_loss"], metrics["g_loss"])


def test_historical_averaging_penalises_distance_to_the_running_mean():
    lr, weight = 0.1, 0.5
    sgd = optax.sgd(lr)
    state, step, _, _ = make(optim_g=sgd, optim_d=sgd, historical_averaging=weight)
    _, plain_step, _, _ = make(optim_g=sgd, optim_d=sgd)
    history = [leaves(state["discriminator"].params)]
    for i in range(3):
        before = state
        state, metrics = step(state, batch(seed=i), jax.random.key(i))
        history.append(leaves(state["discriminator"].params))
        # the averages are the mean of every parameter value so far (initial one included)
        for avg, *values in zip(leaves(state.averages["discriminator"]), *history):
            np.testing.assert_allclose(avg, np.mean(values, axis=0), rtol=1e-5, atol=1e-6)
        # the penalty weight * ||theta - avg||^2 adds -lr * weight * 2 (theta - avg) to the SGD update
        plain, _ = plain_step(before.replace(averages=None), batch(seed=i), jax.random.key(i))
        dist = 0.0
        for new, old, p, a in zip(leaves(state["discriminator"].params), leaves(plain["discriminator"].params),
                                  leaves(before["discriminator"].params), leaves(before.averages["discriminator"])):
            np.testing.assert_allclose(new - old, -lr * weight * 2 * (p - a), atol=1e-6)
            dist += np.sum((p - a) ** 2)
        np.testing.assert_allclose(metrics["d_history"], dist, rtol=1e-4, atol=1e-9)
    assert float(metrics["d_history"]) > 0 and float(metrics["g_history"]) > 0


def test_r1_adds_its_penalty_gradient_to_the_critic_update():
    lr, gamma = 0.1, 2.0
    sgd = optax.sgd(lr)
    b, key = batch(), jax.random.key(5)
    state, step, _, d = make(optim_g=sgd, optim_d=sgd, loss="hinge", r1_weight=gamma)
    _, plain_step, _, _ = make(optim_g=sgd, optim_d=sgd, loss="hinge")
    new, metrics = step(state, b, key)
    plain, _ = plain_step(state, b, key)
    real = b["image"] * 2 - 1

    def mean_r1(params):  # the MLP critic has no dropout or BatchNorm: R1 of these real images, by hand
        grads = jax.grad(lambda x: jnp.sum(d.apply({"params": params}, x)[0]))(real)
        return jnp.mean(jnp.sum(grads.reshape(len(real), -1) ** 2, axis=-1))

    params = state["discriminator"].params
    np.testing.assert_allclose(metrics["r1"], mean_r1(params), rtol=1e-5)
    expected = jax.grad(mean_r1)(params)
    for got, want, g in zip(leaves(new["discriminator"].params), leaves(plain["discriminator"].params),
                            leaves(expected)):
        np.testing.assert_allclose(got - want, -lr * gamma / 2 * g, atol=1e-6)
    assert float(metrics["r1"]) > 0


@pytest.mark.slow
def test_ema_follows_its_formula():
    decay = 0.9
    state, step, _, _ = make(ema_decay=decay)
    ema = leaves(state["generator"].params)
    for i in range(1, 4):
        state, _ = step(state, batch(seed=i), jax.random.key(i))
        d = min(decay, (1 + i) / (10 + i))
        ema = [d * e + (1 - d) * p for e, p in zip(ema, leaves(state["generator"].params))]
        for got, want in zip(leaves(state.ema_params["generator"]), ema):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(leaves(state.ema_params["generator"])[0], leaves(state["generator"].params)[0])
    off, off_step, _, _ = make(ema_decay=0.0)
    off, _ = off_step(off, batch(), jax.random.key(0))
    for got, want in zip(leaves(off.ema_params["generator"]), leaves(off["generator"].params)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_generator_and_discriminator_have_their_own_optimizers():
    state, step, _, _ = make(optim_g=make_optimizer(optimizer_config(1e-3), 100),
                             optim_d=make_optimizer(optimizer_config(5e-4), 200), n_critic=2)
    new, _ = step(state, batch(16), jax.random.key(0))
    count = lambda opt: int(optax.tree_utils.tree_get(opt, "count"))
    assert count(new["generator"].opt_state) == 1 and count(new["discriminator"].opt_state) == 2
    assert int(new["generator"].step) == 1 and int(new["discriminator"].step) == 2
    # a zero learning rate freezes only its own network
    for frozen in ("generator", "discriminator"):
        opts = {"optim_g": optax.adam(1e-3), "optim_d": optax.adam(1e-3), f"optim_{frozen[0]}": optax.sgd(0.0)}
        s, st, _, _ = make(**opts)
        s2, _ = st(s, batch(), jax.random.key(1))
        for name in ("generator", "discriminator"):
            same = all(np.array_equal(a, b) for a, b in zip(leaves(s[name].params), leaves(s2[name].params)))
            assert same == (name == frozen)


@pytest.mark.parametrize("options", [{}, {"loss": "wasserstein", "n_critic": 2, "gp_weight": 10.0}])
def test_step_compiles_once(options):
    chex.clear_trace_counter()
    state, _, g, d = make()
    step = steps.make_gan_step(g, d, axis_name=None, **options)
    traced = jax.jit(chex.assert_max_traces(step, n=1))
    n = 16 if options else 8
    for i in range(3):
        state, metrics = traced(state, batch(n, seed=i), jax.random.key(i))
    assert all(np.isfinite(float(v)) for v in metrics.values())


@pytest.mark.slow
def test_batchnorm_and_spectral_state_are_carried():
    g = gan_models.DCGANGenerator(SHAPE, latent_dim=LATENT, base=8, channels=(8, 4))
    d = gan_models.DCGANDiscriminator(channels=(4, 8), spectral_norm=True, dropout=0.0)
    state, step, _, _ = make(g=g, d=d)
    new, metrics = step(state, batch(), jax.random.key(0))
    for name in ("generator", "discriminator"):
        assert not np.allclose(leaves(state[name].model_state["batch_stats"])[0],
                               leaves(new[name].model_state["batch_stats"])[0])
    assert not np.allclose(new["discriminator"].model_state["spectral"]["Conv_0"]["u"],
                           state["discriminator"].model_state["spectral"]["Conv_0"]["u"])
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(metrics)
    assert 0 < float(metrics["d_real"]) < 1 and 0 < float(metrics["d_fake"]) < 1  # probabilities for bce


@pytest.mark.slow
def test_conditional_step_and_sampling():
    g = gan_models.MLPGenerator(SHAPE, latent_dim=LATENT, hidden_dims=(16, 16), batch_norm=True, num_classes=10)
    d = gan_models.MLPDiscriminator(hidden_dims=(16, 16), dropout=0.4, num_classes=10, conditioning="projection")
    state, step, _, _ = make(g=g, d=d)
    state, metrics = step(state, batch(), jax.random.key(0))
    assert np.isfinite(float(metrics["g_loss"]))
    images = gan.sample(g, state, jax.random.key(1), 20)
    assert images.shape == (20, *SHAPE) and 0 <= float(images.min()) and float(images.max()) <= 1
    np.testing.assert_array_equal(gan.balanced_labels(20, 10), np.arange(20) % 10)


@pytest.mark.parametrize("layer, x", [
    (layers.Dense(300, weight_init="torch"), np.ones((2, 400), np.float32)),
    (layers.Conv(300, (3, 3), weight_init="torch"), np.ones((2, 5, 5, 40), np.float32))])
def test_torch_init_is_pytorchs_default(layer, x):
    """Kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear / nn.Conv2d (fan_in 400, 3 * 3 * 40)."""
    params = layer.init(jax.random.key(0), x)["params"]
    bound = 1 / np.sqrt(400 if x.ndim == 2 else 9 * 40)
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.02)
    np.testing.assert_allclose(np.abs(bias).mean(), bound / 2, rtol=0.15)


def test_weight_init_option_reaches_every_layer_and_rejects_unknown_names():
    generator = models.create("dcgan_generator", image_shape=(8, 8, 1), weight_init="torch")
    params = generator.init(jax.random.key(0), jnp.zeros((2, 100)))["params"]
    biases = [p for path, p in jax.tree_util.tree_leaves_with_path(params) if "bias" in jax.tree_util.keystr(path)
              and "BatchNorm" not in jax.tree_util.keystr(path)]
    assert len(biases) == 4 and all(np.abs(np.asarray(b)).max() > 0 for b in biases)  # Flax's biases start at 0
    with pytest.raises(ConfigError, match="weight_init must be one of"):
        models.create("mlp_discriminator", image_shape=(8, 8, 1), weight_init="xavier").init(
            jax.random.key(0), jnp.zeros((2, 8, 8, 1)))


@pytest.mark.parametrize("shape, features", [((8, 8, 1), 2 * 2 * 32), ((28, 28, 1), 2 * 2 * 128)])
def test_dcgan_discriminator_stops_at_2x2_maps(shape, features):
    """8x8 digits keep two blocks (a third and fourth would be 1x1); MNIST keeps PyTorch-GAN's four (2x2 x 128)."""
    d = models.create("dcgan_discriminator", image_shape=shape)
    x = jnp.zeros((2, *shape))
    _, feats = d.apply(d.init(jax.random.key(0), x), x)
    assert feats.shape == (2, features)


# ----------------------------------------------------------------------------- what a GAN step reports
@pytest.mark.parametrize("kind,threshold", [("bce", 0.0), ("lsgan", 0.5), ("hinge", 0.0)])
def test_discriminator_accuracies_and_gradient_norms_match_their_definitions(kind, threshold):
    """d_real/fake_accuracy: D's hit rates on the critic update's batch; d_grad_norm and g_grad_norm: global norms
    of each update's gradients, recomputed here from the step's public noise layout."""
    b, key = batch(), jax.random.key(5)
    state, step, g, d = make(loss=kind)
    new, metrics = step(state, b, key)
    real = b["image"] * 2 - 1
    z, _ = gan.generator_inputs(gan.update_keys(key, 0).noise, 8, latent_dim=LATENT)
    fake = g.apply({"params": state["generator"].params}, z, train=True)

    def d_loss(params):
        r, f = (d.apply({"params": params}, x, train=True)[0] for x in (real, fake))
        return jnp.mean(losses.discriminator_loss(real_logits=r, fake_logits=f, kind=kind)), (r, f)

    d_grads, (r, f) = jax.grad(d_loss, has_aux=True)(state["discriminator"].params)
    np.testing.assert_allclose(metrics["d_real_accuracy"], np.mean(np.asarray(r) > threshold))
    np.testing.assert_allclose(metrics["d_fake_accuracy"], np.mean(np.asarray(f) < threshold))
    np.testing.assert_allclose(metrics["d_grad_norm"], optax.tree.norm(d_grads), rtol=1e-4)
    z_g, _ = gan.generator_inputs(gan.update_keys(key, 1).noise, 8, latent_dim=LATENT)

    def g_loss(params):  # against the discriminator after its update
        logits = d.apply({"params": new["discriminator"].params}, g.apply({"params": params}, z_g, train=True),
                         train=True)[0]
        return jnp.mean(losses.generator_loss(fake_logits=logits, kind=kind))

    g_grads = jax.grad(g_loss)(state["generator"].params)
    np.testing.assert_allclose(metrics["g_grad_norm"], optax.tree.norm(g_grads), rtol=1e-4)


def test_a_wasserstein_critic_reports_no_accuracy():
    state, step, _, _ = make(loss="wasserstein")
    _, metrics = step(state, batch(), jax.random.key(0))
    assert "d_real_accuracy" not in metrics and metrics["d_grad_norm"] > 0


# ----------------------------------------------------------------------------- latent tools
@pytest.mark.parametrize("spherical", [False, True])
def test_latent_interpolation_ends_at_its_endpoints(spherical):
    z0, z1 = jax.random.normal(jax.random.key(0), (2, 3, LATENT))
    path = np.asarray(gan.interpolate_latents(z0, z1, 7, spherical=spherical))
    assert path.shape == (7, 3, LATENT)
    np.testing.assert_allclose(path[0], z0, atol=1e-5)
    np.testing.assert_allclose(path[-1], z1, atol=1e-5)
    if not spherical:
        np.testing.assert_allclose(path[3], (z0 + z1) / 2, atol=1e-6)
    else:  # between two draws of equal norm, slerp stays on their sphere (a straight line dips inside it)
        z1 = z1 * jnp.linalg.norm(z0, axis=-1, keepdims=True) / jnp.linalg.norm(z1, axis=-1, keepdims=True)
        norms = np.linalg.norm(gan.interpolate_latents(z0, z1, 7, spherical=True), axis=-1)
        np.testing.assert_allclose(norms, np.broadcast_to(np.linalg.norm(z0, axis=-1), norms.shape), rtol=1e-5)
        straight = np.linalg.norm(gan.interpolate_latents(z0, z1, 7, spherical=False)[3], axis=-1)
        assert np.all(straight < 0.999 * np.linalg.norm(z0, axis=-1))  # the check tells the two paths apart


@pytest.mark.parametrize("spherical", [False, True])
def test_latent_walks_start_and_end_at_the_two_source_samples(spherical):
    state, _, g, _ = make()
    key = jax.random.key(3)
    walks = np.asarray(gan.latent_walks(g, state, key, rows=2, num=5, spherical=spherical))
    assert walks.shape == (2, 5, *SHAPE)
    for end_key, column in zip(jax.random.split(key), (0, -1)):
        source = gan.sample(g, state, end_key, 2)  # the same draw, sampled on its own
        np.testing.assert_allclose(walks[:, column], source, atol=1e-5)
    assert not np.allclose(walks[:, 0], walks[:, -1])


def test_class_grid_rows_are_classes_and_columns_share_their_noise():
    g = gan_models.MLPGenerator(SHAPE, latent_dim=LATENT, hidden_dims=(16,), num_classes=10)
    state, _, g, _ = make(g=g, d=gan_models.MLPDiscriminator(hidden_dims=(16,), num_classes=10))
    key = jax.random.key(7)
    grid = np.asarray(gan.class_grid(g, state, key, per_class=3))
    assert grid.shape == (10, 3, *SHAPE)
    z = jax.random.normal(key, (3, LATENT))
    for c in (0, 7):
        expected = gan.generate(g, state.ema_params["generator"], state["generator"].model_state, z,
                                jnp.full((3,), c))
        np.testing.assert_allclose(grid[c], (np.asarray(expected) + 1) / 2, atol=1e-5)
    assert not np.allclose(grid[0], grid[7])
