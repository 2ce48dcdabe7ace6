"""The image-to-image translation family (CycleGAN, pix2pix): its L1 losses and LSGAN on patch maps against NumPy,
the image pool's contents, swap rate and determinism under jit, the networks' shapes and value ranges, and the
two-domain data sets.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from gen_jax import data, losses, models
from gen_jax.data import domains
from gen_jax.errors import ConfigError, DataError
from gen_jax.families import translation
from gen_jax.models import translation as nets

query_pool = jax.jit(translation.query_pool)


def signed_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def random_variables(module, *inputs):
    """Variables of the module's shapes drawn from N(0, 0.3) in NumPy: compiling Flax's initialisers is what
    makes a network test slow on XLA:CPU, and any weights do for shapes and ranges."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(s.dtype), shapes)


def run(module, x, variables=None, **kwargs):
    """The module's output for x under jit, with `random_variables` unless given."""
    variables = random_variables(module, x) if variables is None else variables
    return np.asarray(jax.jit(functools.partial(module.apply, **kwargs))(variables, x))


def output_shape(module, *inputs):
    variables = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    return jax.eval_shape(module.apply, variables, *inputs).shape


# ----------------------------------------------------------------------------- losses
def test_l1_losses_match_numpy():
    p, t = signed_images((3, 4, 5, 2), 0), signed_images((3, 4, 5, 2), 1)
    expected = np.abs(p - t).reshape(3, -1).mean(axis=-1)
    np.testing.assert_allclose(jax.jit(losses.l1_reconstruction)(predictions=p, targets=t), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.cycle_consistency)(reconstructed=p, originals=t), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.identity_loss)(mapped=p, originals=t), expected, rtol=1e-6)


def test_identity_generators_give_zero_cycle_and_identity_loss():
    x = signed_images((4, 8, 8, 3))
    g_ab = g_ba = lambda images: images
    np.testing.assert_array_equal(losses.cycle_consistency(reconstructed=g_ba(g_ab(x)), originals=x), np.zeros(4))
    np.testing.assert_array_equal(losses.identity_loss(mapped=g_ab(x), originals=x), np.zeros(4))


def test_lsgan_losses_average_a_patch_map_per_example():
    real, fake = 3 * signed_images((3, 5, 5, 1), 2), 3 * signed_images((3, 5, 5, 1), 3)
    per_example = lambda x: x.reshape(3, -1).mean(axis=-1)
    np.testing.assert_allclose(losses.discriminator_loss(real_logits=real, fake_logits=fake, kind="lsgan"),
                               per_example(0.5 * (real - 1) ** 2 + 0.5 * fake**2), rtol=1e-5)
    np.testing.assert_allclose(losses.generator_loss(fake_logits=fake, kind="lsgan"),
                               per_example(0.5 * (fake - 1) ** 2), rtol=1e-5)


# ----------------------------------------------------------------------------- image pool
def test_pool_fill_phase_returns_and_stores_the_inputs():
    pool = translation.init_pool(6, (2, 2, 1))
    x, y = signed_images((4, 2, 2, 1), 0), signed_images((4, 2, 2, 1), 1)
    pool, out = query_pool(pool, x, jax.random.key(0))
    np.testing.assert_array_equal(out, x)
    assert int(pool.count) == 4
    np.testing.assert_array_equal(pool.images[:4], x)
    pool, out = query_pool(pool, y, jax.random.key(1))  # two fill the pool, two meet a full pool
    np.testing.assert_array_equal(out[:2], y[:2])
    assert int(pool.count) == 6
    np.testing.assert_array_equal(pool.images[4:], y[:2])


def test_pool_returns_new_or_stored_images_and_swaps_half_of_the_time():
    size, batch, steps = 10, 16, 60
    pool, swaps, full_queries = translation.init_pool(size, (1, 1, 1)), 0, 0
    for step in range(steps):
        ids = np.arange(1 + step * batch, 1 + (step + 1) * batch, dtype=np.float32)  # each image has its own value
        stored = np.asarray(pool.images).ravel()[:int(pool.count)]
        was_full = int(pool.count) == size
        pool, out = query_pool(pool, ids.reshape(-1, 1, 1, 1), jax.random.fold_in(jax.random.key(0), step))
        out = np.asarray(out).ravel()
        for i in range(batch):  # image i may get one stored before this batch or earlier in it
            assert out[i] == ids[i] or out[i] in stored or out[i] in ids[:i]
        if was_full:  # a full pool exchanges images: nothing is lost or duplicated
            np.testing.assert_array_equal(np.sort(np.concatenate([stored, ids])),
                                          np.sort(np.concatenate([np.asarray(pool.images).ravel(), out])))
            swaps += int(np.sum(out != ids))
            full_queries += batch
    assert full_queries >= (steps - 1) * batch
    assert abs(swaps / full_queries - 0.5) < 0.05


def test_pool_is_deterministic_under_a_key_and_jit_matches_eager():
    pool = translation.init_pool(4, (2, 2, 1))
    x, key = signed_images((12, 2, 2, 1)), jax.random.key(3)
    eager = translation.query_pool(pool, x, key)
    for result in (query_pool(pool, x, key), query_pool(pool, x, key)):
        jax.tree.map(np.testing.assert_array_equal, result, eager)
    other = query_pool(pool, x, jax.random.key(4))
    assert not np.array_equal(other[1], eager[1])


def test_pool_of_size_zero_passes_images_through_without_gradient():
    pool, x = translation.init_pool(0, (2, 2, 1)), signed_images((3, 2, 2, 1))
    new_pool, out = query_pool(pool, x, jax.random.key(0))
    np.testing.assert_array_equal(out, x)
    assert new_pool.images.shape == (0, 2, 2, 1)
    grad = jax.grad(lambda images: query_pool(pool, images, jax.random.key(0))[1].sum())(x)
    np.testing.assert_array_equal(grad, np.zeros_like(x))


# ----------------------------------------------------------------------------- networks
def test_patch_receptive_field_is_pix2pix_patch_size():
    assert nets.patch_receptive_field(3) == 70
    assert [nets.patch_receptive_field(n) for n in (1, 2, 4, 5)] == [16, 34, 142, 286]


@pytest.mark.parametrize("size,layers,map_size", [(28, 1, 12), (32, 1, 14), (128, 3, 14)])
def test_patch_discriminator_map_shape(size, layers, map_size):
    d = models.create("patch_discriminator", image_shape=(size, size, 3), channels=4)
    assert d.num_layers == layers
    assert nets.patch_receptive_field(layers) < size
    assert output_shape(d, jnp.zeros((2, size, size, 3))) == (2, map_size, map_size, 1)


def test_patch_discriminator_takes_a_condition_on_channels():
    d = nets.PatchDiscriminator(channels=4, num_layers=1)
    x, condition = signed_images((2, 28, 28, 3)), signed_images((2, 28, 28, 1), 1)
    variables = jax.eval_shape(d.init, jax.random.key(0), x, condition)
    assert variables["params"]["Conv_0"]["kernel"].shape == (4, 4, 4, 4)  # 1 + 3 input channels
    logits = run(d, x)
    assert logits.shape == (2, 12, 12, 1) and np.all(np.isfinite(logits))


def test_resnet_generator_maps_grey_to_colour_in_signed_range():
    g = models.create("resnet_generator", image_shape=(28, 28, 1), out_channels=3, channels=4, num_blocks=1)
    y = run(g, 10 * signed_images((2, 28, 28, 1)))
    assert y.shape == (2, 28, 28, 3)
    assert np.all(np.abs(y) <= 1.0) and y.std() > 0


def test_resnet_generator_shapes_and_defaults():
    resize = nets.ResnetGenerator(out_channels=1, channels=4, num_blocks=2, upsample="resize")
    assert output_shape(resize, jnp.zeros((2, 32, 32, 3))) == (2, 32, 32, 1)
    assert models.create("resnet_generator", image_shape=(32, 32, 3)).out_channels == 3
    assert [models.create("resnet_generator", image_shape=(s, s, 3)).num_blocks for s in (28, 128, 256)] == [3, 6, 9]
    with pytest.raises(ConfigError, match="divisible by 4"):
        output_shape(resize, jnp.zeros((1, 30, 30, 3)))


@pytest.mark.parametrize("num_downsamplings", [0, 1, 2])
def test_resnet_generator_blocks_run_at_the_resolution_its_downsamplings_leave(num_downsamplings):
    g = nets.ResnetGenerator(out_channels=3, channels=4, num_blocks=1, num_downsamplings=num_downsamplings)
    x = jnp.zeros((1, 12, 12, 1))
    assert output_shape(g, x) == (1, 12, 12, 3)
    block_input = jax.eval_shape(lambda v: g.apply(v, x, capture_intermediates=lambda m, _: isinstance(
        m, nets.ResnetBlock)), jax.eval_shape(g.init, jax.random.key(0), x))[1]["intermediates"]
    (shape,) = [leaf.shape for leaf in jax.tree.leaves(block_input)]
    assert shape == (1, 12 // 2**num_downsamplings, 12 // 2**num_downsamplings, 4 * 2**num_downsamplings)


def test_unet_generator_shape_range_and_dropout():
    g = models.create("unet_generator", image_shape=(16, 16, 3), out_channels=1, channels=4, dropout=0.5)
    assert g.depth == 4
    x = signed_images((2, 16, 16, 3))
    variables = random_variables(g, x)
    y = run(g, x, variables)
    assert y.shape == (2, 16, 16, 1) and np.all(np.abs(y) <= 1.0) and y.std() > 0
    dropped = run(g, x, variables, train=True, rngs={"dropout": jax.random.key(1)})
    assert dropped.shape == y.shape and not np.allclose(dropped, y)


def test_unet_generator_depth_fits_the_image():
    assert models.create("unet_generator", image_shape=(28, 28, 1)).depth == 2
    assert models.create("unet_generator", image_shape=(256, 256, 3)).depth == 8
    unet = models.create("unet_generator", image_shape=(32, 32, 3), channels=4)
    assert output_shape(unet, jnp.zeros((2, 32, 32, 3))) == (2, 32, 32, 3)
    with pytest.raises(ConfigError, match="divisible by 32"):
        output_shape(unet, jnp.zeros((1, 28, 28, 3)))


def test_translate_maps_unit_images_through_the_signed_range():
    class Negate(nn.Module):
        @nn.compact
        def __call__(self, x):
            return -x

    images = np.random.default_rng(0).uniform(size=(5, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(translation.translate(Negate(), {}, images), 1.0 - images, atol=1e-6)
    np.testing.assert_allclose(translation.translate_all(Negate(), {}, images, batch_size=2), 1.0 - images,
                               atol=1e-6)


# ----------------------------------------------------------------------------- two domains
def unit_dataset(num_train=20, num_test=6, channels=1, size=28):
    rng = np.random.default_rng(0)
    images = lambda n: (rng.uniform(size=(n, size, size, channels)) > 0.8).astype(np.float32)
    labels = lambda n: rng.integers(0, 10, n).astype(np.int32)
    return data.Dataset("toy", images(num_train), labels(num_train), images(num_test), labels(num_test), 10)


def test_true_style_is_inverted_3x3_dilation():
    images = np.random.default_rng(1).uniform(size=(3, 9, 7, 2)).astype(np.float32)
    expected = 1.0 - ndimage.maximum_filter(images, size=(1, 3, 3, 1), mode="constant", cval=0.0)
    np.testing.assert_array_equal(domains.true_style(images), expected)


def test_style_pair_halves_are_disjoint_and_domain_b_is_true_style():
    ds = unit_dataset()
    pair = domains.style_pair(ds, seed=5)
    idx_a, idx_b = domains.split_halves(20, 5)
    assert len(idx_a) == len(idx_b) == 10 and not set(idx_a) & set(idx_b)
    np.testing.assert_array_equal(pair.train_a, ds.train_images[idx_a])
    np.testing.assert_array_equal(pair.train_b, domains.true_style(ds.train_images[idx_b]))
    np.testing.assert_array_equal(pair.train_b_labels, ds.train_labels[idx_b])
    np.testing.assert_array_equal(pair.test_a, ds.test_images)
    np.testing.assert_array_equal(pair.test_b, domains.true_style(ds.test_images))
    np.testing.assert_array_equal(pair.test_labels, ds.test_labels)
    assert pair.shape_a == pair.shape_b == (28, 28, 1)
    small = domains.style_pair(ds, seed=5, num_train=4, num_test=2)
    assert (len(small.train_a), len(small.train_b), len(small.test_a), len(small.test_b)) == (4, 4, 2, 2)
    assert not np.array_equal(domains.split_halves(20, 6)[0], idx_a)


def test_mnist_m_pair_blends_digits_into_photo_crops():
    ds = unit_dataset()
    pair = domains.mnist_m_pair(ds, seed=0, num_test=4)
    idx_a, idx_b = domains.split_halves(20, 0)
    assert pair.shape_a == (28, 28, 1) and pair.shape_b == (28, 28, 3)
    assert pair.train_b.dtype == np.float32 and 0.0 <= pair.train_b.min() and pair.train_b.max() <= 1.0
    np.testing.assert_array_equal(pair.train_a, ds.train_images[idx_a])
    np.testing.assert_array_equal(pair.train_b_labels, ds.train_labels[idx_b])
    np.testing.assert_array_equal(pair.test_b, domains.mnist_m(ds.test_images[:4], seed=(0, 2)))
    crops = domains.photo_crops(4, (28, 28), seed=(0, 2))
    np.testing.assert_allclose(pair.test_b, np.abs(crops - pair.test_a), atol=1e-7)
    assert np.abs(pair.test_b - np.repeat(pair.test_a, 3, axis=-1)).mean() > 0.2  # not a colour copy
    np.testing.assert_array_equal(domains.mnist_m_pair(ds, seed=0, num_test=4).train_b, pair.train_b)
    with pytest.raises(DataError, match="grey"):
        domains.mnist_m_pair(unit_dataset(channels=3))


def test_two_domain_tfds_source_with_mock_data():
    """tfds:cycle_gan/NAME loads the four splits as domains A and B, the way other tfds sets load."""
    tfds = pytest.importorskip("tensorflow_datasets")
    def splits(builder, split, **kwargs):  # the real sets hold 256x256 photographs; mock ones of 16x16
        rng = np.random.default_rng(len(split))
        return [{"image": rng.integers(0, 256, (16, 16, 3), np.uint8), "label": 0} for _ in range(4)]

    with tfds.testing.mock_data(as_data_source_fn=splits):
        pair = domains.load("tfds:cycle_gan/horse2zebra")
    assert pair.shape_a == pair.shape_b and pair.shape_a[-1] == 3
    assert len(pair.train_a) == len(pair.train_b) == 4 and len(pair.test_b) == len(pair.test_a)
    assert 0.0 <= pair.train_a.min() and pair.train_a.max() <= 1.0


def test_translation_tasks_read_tfds_sets_from_data_tfds_data_dir(monkeypatch):
    """data.tfds_data_dir reaches every tfds split (and the metadata) a CycleGAN or pix2pix run reads, as for
    one-domain runs."""
    from gen_jax import config as config_lib
    from gen_jax.data import sources
    from gen_jax.training import tasks
    seen = []

    def fake_split(name, split, data_dir=None, *, lazy=False):
        seen.append(data_dir)
        return np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int32)

    def fake_num_classes(name, data_dir):
        seen.append(data_dir)
        return 10

    monkeypatch.setattr(sources, "tfds_split", fake_split)
    monkeypatch.setattr(sources, "_tfds_num_classes", fake_num_classes)
    for schema, source in ((config_lib.cyclegan_config, "tfds:cycle_gan/horse2zebra"),
                           (config_lib.cyclegan_config, "style:tfds:mnist"),
                           (config_lib.pix2pix_config, "superres:tfds:mnist")):
        config = config_lib.override(schema(), {"data.source": source, "data.tfds_data_dir": "prepared"})
        tasks.load_data(config)
    assert seen and set(seen) == {"prepared"}, seen


def test_two_domain_sources_reject_unknown_names():
    with pytest.raises(DataError, match="unknown two-domain source"):
        domains.load("zebra:x")
    with pytest.raises(DataError, match="two folders"):
        domains.load("folders:onlyone")
