"""bfloat16 compute (gen_jax.models.precision): the same module and variables, bfloat16 arithmetic inside,
float32 outputs, model state and gradients, close to the float32 function; a train run keeps float32 state."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import config as config_lib, models
from gen_jax.config import gan_config
from gen_jax.errors import ConfigError
from gen_jax.models.precision import compute_in
from gen_jax.training.loop import train
from gen_jax.training.runs import restore_run

SHAPE = (28, 28, 1)
NETWORKS = {  # name: (options, input)
    "dcgan_generator": (dict(latent_dim=8, base=16, channels=(8, 4), bn_eps=1e-5), jnp.ones((4, 8))),
    "dcgan_discriminator": (dict(channels=(8, 16), spectral_norm=True, dropout=0.0), None),
    "conv_vae": (dict(), None),
}


def _input(name):
    given = NETWORKS[name][1]
    return given if given is not None else jax.random.uniform(jax.random.key(3), (4, *SHAPE))


def _apply(module, variables, x, params=None):
    extra = (jax.random.normal(jax.random.key(4), (x.shape[0], module.latent_dim)),) if hasattr(module, "encode") \
        else ()
    kwargs = {} if extra else {"train": True}
    mutable = [name for name in variables if name != "params"]
    return module.apply({**variables, "params": variables["params"] if params is None else params}, x, *extra,
                        mutable=mutable, rngs={"dropout": jax.random.key(5)}, **kwargs)


def _dtypes(tree):
    return {leaf.dtype for leaf in jax.tree.leaves(tree)}


def test_float32_is_the_module_itself_and_unknown_dtypes_are_config_errors():
    module = models.create("dcgan_generator", image_shape=SHAPE)
    assert compute_in("float32", module) is module
    with pytest.raises(ConfigError, match="compute_dtype"):
        compute_in("float16", module)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bfloat16_computes_the_float32_function_in_bfloat16(name):
    plain = models.create(name, image_shape=SHAPE, **NETWORKS[name][0])
    mixed = compute_in("bfloat16", plain)
    x = _input(name)
    variables = plain.init(jax.random.key(0), x, *(() if not hasattr(plain, "encode")
                                                   else (jnp.zeros((x.shape[0], plain.latent_dim)),)))
    want, want_state = _apply(plain, variables, x)
    got, got_state = jax.jit(lambda v, x: _apply(mixed, v, x))(variables, x)
    assert _dtypes(got) == {jnp.dtype("float32")} and _dtypes(got_state) <= {jnp.dtype("float32")}
    assert jax.tree.structure(got_state) == jax.tree.structure(want_state)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, atol=0.05 * float(jnp.abs(w).max()) + 1e-3)
    # the arithmetic really is bfloat16: every convolution and every matrix product (the spectral-norm power
    # iteration's vector products excepted) yields bfloat16
    jaxpr = str(jax.make_jaxpr(lambda v, x: _apply(mixed, v, x))(variables, x))
    heavy = [line.split("=")[0] for line in jaxpr.splitlines()
             if "conv_general_dilated[" in line or ("dot_general[" in line and "," in line.split("=")[0])]
    assert heavy and all("bf16[" in result for result in heavy), heavy
    # gradients reach the float32 parameters, in float32, close to the float32 gradients of a squared loss (a
    # loss whose gradient cancels to near zero, e.g. sum(outputs), leaves only bfloat16's rounding to compare)
    loss = lambda module: lambda p: sum(jnp.sum(o ** 2) / 2 for o in jax.tree.leaves(_apply(module, variables, x, p)[0]))
    got_grad = jax.grad(loss(mixed))(variables["params"])
    want_grad = jax.grad(loss(plain))(variables["params"])
    assert _dtypes(got_grad) == {jnp.dtype("float32")}
    flat = lambda tree: np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])
    cosine = flat(got_grad) @ flat(want_grad) / np.linalg.norm(flat(got_grad)) / np.linalg.norm(flat(want_grad))
    assert cosine > 0.99, cosine


@pytest.mark.slow
def test_a_bfloat16_gan_run_keeps_float32_state(tmp_path):
    """A DCGAN with spectral norm and BatchNorm, 60 steps on the digits: finite scores, float32 checkpoints."""
    config = config_lib.override(gan_config(), {
        "train.compute_dtype": "bfloat16", "train.steps": 60, "train.log_every": 20, "train.sample_every": 60,
        "train.checkpoint_every": 60, "train.progress": False, "data.batch_size": 32})
    config.generator = dict(name="dcgan_generator", latent_dim=16, base=16, channels=(8,), bn_eps=1e-5)
    config.discriminator = dict(name="dcgan_discriminator", channels=(8, 16), spectral_norm=True)
    summary = train(config, str(tmp_path))
    state = restore_run(str(tmp_path)).state
    assert _dtypes(state) <= {jnp.dtype("float32"), jnp.dtype("int32"), jnp.dtype("uint32")}, _dtypes(state)
    assert np.isfinite(summary["eval"]["pixel_fid"])
