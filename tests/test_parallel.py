"""gen_jax.parallel.pmean: the mean over a named axis, with nothing compiled for an axis of one device."""
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.parallel import pmean


def test_pmean_averages_over_an_axis_of_several():
    x = jnp.arange(6.0).reshape(3, 2)
    out = jax.vmap(lambda row: pmean({"g": row}, "i"), axis_name="i")(x)["g"]
    np.testing.assert_allclose(out, np.broadcast_to(x.mean(axis=0), x.shape))


def test_pmean_on_one_device_is_the_identity_and_compiles_no_all_reduce():
    step = jax.pmap(lambda g: pmean({"g": g * 2.0}, "batch"), axis_name="batch", devices=jax.local_devices()[:1])
    x = jnp.arange(4.0).reshape(1, 4)
    np.testing.assert_array_equal(step(x)["g"], x * 2.0)
    assert "all-reduce" not in step.lower(x).compile().as_text()
    # the reference: lax.pmean itself does compile one, which is the copy this avoids
    plain = jax.pmap(lambda g: jax.lax.pmean(g * 2.0, "batch"), axis_name="batch", devices=jax.local_devices()[:1])
    assert "all-reduce" in plain.lower(x).compile().as_text()


def test_a_one_device_gan_step_compiles_no_all_reduce():
    """The loop's pmap on one device: the means of gradients and metrics add no collective to the step."""
    from gen_jax.config import gan_config
    from gen_jax.training import tasks
    config = gan_config()
    config.data.batch_size = 16
    dataset = tasks.load_data(config, lazy=False)
    task = tasks.build(config, dataset)
    state = jax.jit(task.init_state)(jax.random.key(0))
    batch = jax.tree.map(lambda a: np.asarray(a[:16])[None], {k: v for arrays in task.train_data.values()
                                                               for k, v in arrays.items()})
    step = jax.pmap(task.train_step, axis_name="batch", devices=jax.local_devices()[:1])
    replicated = jax.tree.map(lambda x: x[None], state)
    compiled = step.lower(replicated, batch, jax.random.key(1)[None]).compile().as_text()
    assert "all-reduce" not in compiled
