"""Short checks of the PyTorch reference (benchmarks/torch_seed.py); skipped when torch is not installed."""

import gzip
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

# The benchmarks package lives at the repo root, which plain `pytest` does not put on sys.path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import torch_seed as ts  # noqa: E402

SHAPES = [(8, 8, 1), (28, 28, 1)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine is shared: one intra-op thread keeps runs short and predictable."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    """sklearn digits as float32 [1797, 8, 8, 1] in [0, 1] and int labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[..., None], d.target.astype(np.int64)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ts.AUTOENCODER_KINDS)
def test_autoencoder_output_matches_data(kind, shape):
    x = np.random.default_rng(0).random((5, *shape), dtype=np.float32)
    model = ts.make_autoencoder(kind, int(np.prod(shape))).eval()
    with torch.no_grad():
        out = model(ts._flat(x))
    out = out[0] if kind == "vae" else out
    assert out.shape == (5, int(np.prod(shape)))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert ts.encode(model, x).shape == (5, 20 if kind == "vae" else 32)
    assert np.isfinite(ts.reconstruction_mse(model, x))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ts.GAN_KINDS)
def test_gan_models_match_data(kind, shape):
    g, d = ts.make_gan(kind, shape, latent_dim=16)
    g.eval(), d.eval()
    z, y = torch.randn(4, 16), torch.arange(4)
    fake = g(z, y) if kind == "cgan" else g(z)
    assert ts._to_nhwc(fake.detach(), shape).shape == (4, *shape)
    score = d(fake, y) if kind == "cgan" else d(fake)
    assert score.shape == (4, 1)


def test_epoch_batches_match_gen_jax_scheme():
    """Same order as gen_jax.data.batch_indices: default_rng([seed, epoch]) permutation, remainder dropped."""
    it = ts.epoch_batches(10, 3, seed=7)
    got = np.stack([next(it).numpy() for _ in range(6)])
    want = np.concatenate([np.random.default_rng([7, e]).permutation(10)[:9].reshape(3, 3) for e in (0, 1)])
    np.testing.assert_array_equal(got, want)


def test_sparse_loss_zero_at_target():
    assert float(ts.sparse_loss(torch.full((4, 3), 0.05))) == pytest.approx(0.0, abs=1e-6)


def test_vae_lowers_neg_elbo_on_digits(digits):
    """Below the mean image's Bernoulli NLL (what a decoder learning only its output bias reaches) by a nat."""
    x, _ = digits
    p = np.clip(x.mean(axis=0), 1e-6, 1 - 1e-6)
    mean_image_nll = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(axis=1).mean()
    model, ips = ts.train_autoencoder("vae", x, steps=600, seed=0)
    final = ts.vae_neg_elbo(model, x)
    assert final < mean_image_nll - 1.0, (mean_image_nll, final)
    assert ips > 0
    assert ts.vae_neg_elbo(model, x, seed=3) == ts.vae_neg_elbo(model, x, seed=3)  # seeded posterior sample


@pytest.mark.parametrize("kind", ["vanilla", "sparse", "denoising"])
def test_deterministic_autoencoders_train(kind, digits):
    """Reconstructions beat the mean image (what a network ignoring its input reaches) after 150 steps."""
    x, _ = digits
    model, _ = ts.train_autoencoder(kind, x, steps=150, seed=0)
    assert ts.reconstruction_mse(model, x) < np.mean((x - x.mean(axis=0)) ** 2)


@pytest.mark.parametrize("kind", ts.GAN_KINDS)
def test_gan_trainers_run_and_sample(kind, digits):
    x, y = digits
    sample, ips = ts.train_gan(kind, x * 2 - 1, y, steps=3, batch_size=32, seed=0, latent_dim=16)
    out = sample(6, labels=np.arange(6) if kind == "cgan" else None, seed=1)
    assert out.shape == (6, 8, 8, 1) and out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0) and ips > 0
    np.testing.assert_array_equal(out, sample(6, labels=np.arange(6) if kind == "cgan" else None, seed=1))


def test_load_mnist_idx_reads_header(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes())
    np.testing.assert_array_equal(ts.load_mnist_idx(str(path)), images)


@pytest.mark.slow
def test_wgan_gp_critic_loss_and_gradients_match_gen_jax():
    """Same weights, batch and interpolation weights: the seed critic's Wasserstein loss + 10 x GP and its
    parameter gradients (a second-order autodiff) equal gen_jax's (`losses`, `MLPDiscriminator`)."""
    import jax
    import jax.numpy as jnp

    from gen_jax import losses
    from gen_jax.models import gan_networks as gan
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (16, 8, 8, 1)).astype(np.float32)
    fake = np.tanh(rng.normal(size=(16, 8, 8, 1))).astype(np.float32)
    critic, key = gan.MLPDiscriminator(), jax.random.key(3)
    params = critic.init(jax.random.key(0), jnp.asarray(real))["params"]

    def loss_fn(p):
        score = lambda x: critic.apply({"params": p}, x)[0]
        adv = jnp.mean(losses.discriminator_loss(real_logits=score(real), fake_logits=score(fake), kind="wasserstein"))
        return adv + 10.0 * jnp.mean(losses.gradient_penalty(score, real=real, fake=fake, key=key))

    jax_loss, jax_grads = jax.value_and_grad(loss_fn)(params)
    seed_critic = ts.Discriminator(64, sigmoid=False)
    linears = [m for m in seed_critic.model if isinstance(m, torch.nn.Linear)]
    dense = [params["Dense_0"], params["Dense_1"], params["Dense_2"], params["_Head_0"]["Dense_0"]]
    grads = [jax_grads["Dense_0"], jax_grads["Dense_1"], jax_grads["Dense_2"], jax_grads["_Head_0"]["Dense_0"]]
    with torch.no_grad():
        for linear, p in zip(linears, dense):
            linear.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).T.copy()))
            linear.bias.copy_(torch.from_numpy(np.asarray(p["bias"])))
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    # gen_jax's interpolation weights (losses.gradient_penalty draws them from `key`), fed to the seed's GP
    alpha = torch.from_numpy(np.asarray(jax.random.uniform(key, (16, 1, 1, 1))))
    ones = torch.ones(16, 1)
    loss = (ts.wasserstein_loss(seed_critic(real_t), -ones) + ts.wasserstein_loss(seed_critic(fake_t), ones)
            + 10 * ts.gradient_penalty(seed_critic, real_t, fake_t, alpha))
    loss.backward()
    assert float(loss) == pytest.approx(float(jax_loss), rel=1e-5)
    for linear, g in zip(linears, grads):
        np.testing.assert_allclose(np.asarray(g["kernel"]), linear.weight.grad.numpy().T, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(g["bias"]), linear.bias.grad.numpy(), rtol=1e-4, atol=1e-6)
