"""The XLA:CPU convolution forms in gen_jax.models.layers compute the plain convolution's function: values and
gradients (in inputs and kernels) against `lax.conv_general_dilated`, under jax.jit; the CPU compiler options the
loop's step compiles with change which kernels run, not the values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import parallel
from gen_jax.errors import ConfigError
from gen_jax.models import gan_networks, layers


def _plain_conv(strides=(1, 1), padding="SAME"):
    """`lax.conv_general_dilated`; explicit pads are applied by `lax.pad` first, since XLA:CPU computes some
    convolutions with negative (cropping) pads wrongly."""
    def conv(x, k):
        pads = padding
        if not isinstance(padding, str):
            x = jax.lax.pad(x, 0.0, [(0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)])
            pads = "VALID"
        return jax.lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return conv


_plain = _plain_conv()


def _assert_same_function(fast, plain, x, k):
    """Equal values, and equal gradients of a non-linear scalar of the output in both arguments."""
    np.testing.assert_allclose(jax.jit(fast)(x, k), plain(x, k), rtol=1e-5, atol=1e-5)
    loss = lambda conv: (lambda x, k: jnp.sum(jnp.sin(conv(x, k))))
    got = jax.jit(jax.grad(loss(fast), (0, 1)))(x, k)
    want = jax.grad(loss(plain), (0, 1))(x, k)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_shape", [(3, 3, 6, 1), (3, 3, 2, 8), (5, 5, 3, 2), (3, 3, 4, 9), (3, 3, 3, 4),
                                          (3, 3, 5, 2), (5, 5, 2, 2)])
def test_conv_same_is_the_plain_convolution(kernel_shape):
    """Narrow outputs (tap matmuls, 3x3 and 5x5), wide ones (XLA's convolution), and both kernel-gradient
    branches (fewer input or fewer output channels)."""
    x = jax.random.normal(jax.random.key(0), (2, 6, 5, kernel_shape[2]))
    k = jax.random.normal(jax.random.key(1), kernel_shape)
    _assert_same_function(layers.conv_same, _plain, x, k)


@pytest.mark.parametrize("shape, features", [((2, 4, 4, 3), 5), ((3, 7, 5, 2), 1), ((1, 2, 3, 8), 16)])
def test_upsample_conv_is_upsample_then_conv(shape, features):
    x = jax.random.normal(jax.random.key(2), shape)
    k = jax.random.normal(jax.random.key(3), (3, 3, shape[-1], features))
    assert layers.upsample_conv(x, k).shape == (shape[0], 2 * shape[1], 2 * shape[2], features)
    _assert_same_function(layers.upsample_conv, lambda x, k: _plain(layers.upsample(x), k), x, k)


@pytest.mark.parametrize("options", [dict(features=4), dict(features=12, upsample=2), dict(features=2, upsample=2),
                                     dict(features=5, strides=(2, 2), padding=((1, 1), (1, 1)))])
def test_conv_module_fast_path_is_the_plain_path(options):
    """Same parameters and the same function either way, so checkpoints and results carry across backends."""
    x = jax.random.normal(jax.random.key(4), (2, 6, 6, 3))
    fast, plain = layers.Conv(fast_path=True, **options), layers.Conv(fast_path=False, **options)
    params = fast.init(jax.random.key(5), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, plain.init(jax.random.key(5), x))
    apply = lambda module: (lambda x, p: module.apply(p, x))
    _assert_same_function(apply(fast), apply(plain), x, params)


@pytest.mark.parametrize("kernel, strides, padding, shape", [
    (3, (2, 2), (1, 2), (2, 5, 6, 4)),  # CycleGAN's ConvTranspose2d(3, stride 2, padding 1, output_padding 1)
    (4, (2, 2), (2, 2), (2, 4, 4, 3)),  # pix2pix's ConvTranspose2d(4, stride 2, padding 1)
    (4, (2, 2), (2, 2), (1, 1, 1, 5)),  # the U-Net's innermost level: a 1x1 bottleneck
    (5, (3, 3), (3, 3), (2, 3, 2, 2)),  # stride 3: taps split 2 / 2 / 1 between phases
    (3, (2, 2), (0, 3), (2, 4, 3, 2)),  # phases that pad x by a negative amount (crop) on one side
    (3, (2, 2), (3, 0), (2, 4, 3, 2)),
    # not phase-shaped, so the fast path convolves the dilated input: an output one short of twice the
    # input, a kernel narrower than the stride, unequal strides, a crop
    (3, (2, 2), (1, 1), (2, 4, 3, 2)),
    (2, (3, 3), (1, 2), (2, 3, 4, 2)),
    (3, (2, 1), (1, 2), (2, 4, 3, 2)),
    (3, (2, 2), (-1, 2), (2, 4, 3, 2)),
])
def test_conv_transpose_is_flax_conv_transpose_on_both_paths(kernel, strides, padding, shape):
    """The same parameters as nn.ConvTranspose, initialised to the same values (checkpoints carry over), and its
    function, values and gradients, on the CPU forms (`fast_path=True`) and on the plain one."""
    x = jax.random.normal(jax.random.key(13), shape)
    options = dict(features=6, kernel_size=(kernel, kernel), strides=strides, padding=(padding, padding))
    reference = nn.ConvTranspose(**options)
    params = reference.init(jax.random.key(14), x)
    apply = lambda module: (lambda x, p: module.apply(p, x))
    want_shape = reference.apply(params, x).shape
    for fast_path in (True, False):
        module = layers.ConvTranspose(fast_path=fast_path, **options)
        for got, want in zip(jax.tree.leaves(module.init(jax.random.key(14), x)), jax.tree.leaves(params),
                             strict=True):
            np.testing.assert_array_equal(got, want)
        assert module.apply(params, x).shape == want_shape
        _assert_same_function(apply(module), apply(reference), x, params)


def test_conv_transpose_phases_refuses_what_it_does_not_compute():
    """The phase form holds only for an output exactly stride times the input with every phase given a tap; any
    other transposed conv is refused, not computed wrong, and a string padding is a configuration error."""
    x, kernel = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
    with pytest.raises(ValueError, match="stride"):
        layers.conv_transpose_phases(x, kernel, 2, ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="stride"):
        layers.conv_transpose_phases(x, jnp.ones((2, 2, 2, 2)), 3, ((1, 2), (1, 2)))
    with pytest.raises(ConfigError, match="explicit"):
        layers.ConvTranspose(2, (3, 3), (2, 2), "SAME").init(jax.random.key(0), x)


# (strides, padding, window, input height x width): two crop the input (negative pads, which XLA:CPU's own
# convolution gets wrong), the last three have fewer input pixels than window taps
LOOP_SAFE_CASES = [((1, 1), "SAME", (3, 3), (7, 6)), ((2, 2), ((1, 1), (1, 1)), (4, 4), (7, 6)),
                   ((2, 2), "SAME", (3, 3), (7, 6)), ((1, 1), ((1, 0), (0, 1)), (2, 2), (7, 6)),
                   ((2, 1), "VALID", (3, 2), (7, 6)), ((3, 3), ((2, 0), (1, 1)), (3, 3), (7, 6)),
                   ((1, 1), ((-1, 1), (0, 0)), (3, 3), (6, 6)), ((1, 1), ((-1, 1), (-1, 1)), (4, 3), (4, 3)),
                   ((1, 1), "SAME", (3, 3), (2, 2)), ((1, 1), ((1, 1), (1, 1)), (4, 4), (3, 3)),
                   ((2, 2), ((1, 1), (1, 1)), (4, 4), (2, 3))]


def _loop_safe(strides, padding):
    return lambda x, k: layers.conv_loop_safe(x, k, strides, padding)


@pytest.mark.parametrize("strides, padding, window, size", LOOP_SAFE_CASES)
def test_conv_loop_safe_is_the_convolution_with_autodiff_gradients(strides, padding, window, size):
    """Values, both gradients and a gradient of a gradient (as WGAN-GP and R1 take) equal autodiff's of the plain
    convolution, for strides, odd input sizes, asymmetric paddings that leave some input rows unused, crops, and
    maps smaller than the window."""
    x = jax.random.normal(jax.random.key(8), (2, *size, 3))
    k = jax.random.normal(jax.random.key(9), (*window, 3, 4))
    safe = _loop_safe(strides, padding)
    _assert_same_function(safe, _plain_conv(strides, padding), x, k)
    penalty = lambda conv: (lambda x, k: jnp.sum(jax.grad(lambda x: jnp.sum(jnp.sin(conv(x, k))))(x) ** 2))
    got = jax.jit(jax.grad(penalty(safe), (0, 1)))(x, k)
    for g, w in zip(got, jax.grad(penalty(_plain_conv(strides, padding)), (0, 1))(x, k), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * np.abs(w).max())  # float32 sums of O(100) terms


def _layouts(compiled_text: str) -> list[str]:
    return [line.split("dim_labels=")[1].split(",")[0] for line in compiled_text.splitlines()
            if " convolution(" in line]


@pytest.mark.parametrize("strides, padding, window, size", LOOP_SAFE_CASES[-3:])
def test_conv_loop_safe_keeps_small_maps_convolutions_in_order(strides, padding, window, size):
    """On maps with fewer pixels than window taps (a CycleGAN's 2x2 residual blocks), XLA would swap a
    convolution's operands into a reversed-window form that XLA:CPU runs as a naive loop; the forward pass and
    both gradients stay in the fast kernels' NHWC / HWIO layout instead."""
    x = jnp.ones((4, *size, 8))
    k = jnp.ones((*window, 8, 8))
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(_loop_safe(strides, padding)(x, k))), (0, 1)))
    text = grad.lower(x, k).compile().as_text()
    layouts = _layouts(text)  # a kernel gradient over a 1x1 output may compile to a dot instead
    assert 2 <= len(layouts) <= 3 and set(layouts) == {"b01f_01io->b01f"} and "rhs_reversal" not in text, layouts


def test_conv_loop_safe_gradients_stay_fast_convolutions_inside_a_scan():
    """In a train step under `lax.fori_loop` (train.steps_per_call > 1), every convolution XLA:CPU compiles,
    forward and gradients, has the NHWC / HWIO layout of its fast kernels (autodiff's kernel gradient there ran
    as a naive loop, 100x slower) and no reversed window, and the steps compute what the same steps one call
    each compute. The layers: a strided conv, a wide conv on 2x2 maps (fewer pixels than taps), a phase-form
    transposed conv and one that is not phase-shaped (the dilated input's convolution)."""
    chain = [layers.Conv(12, strides=(2, 2), padding=((1, 1), (1, 1)), fast_path=True),
             layers.Conv(16, fast_path=True),  # wider than conv_same's tap matmuls
             layers.ConvTranspose(5, (3, 3), (2, 2), ((1, 2), (1, 2)), fast_path=True),
             layers.ConvTranspose(4, (3, 3), (2, 2), ((1, 1), (1, 1)), fast_path=True)]
    x = jax.random.normal(jax.random.key(10), (4, 4, 4, 3))
    params, h = [], x
    for i, layer in enumerate(chain):
        params.append(layer.init(jax.random.key(11 + i), h)["params"])
        h = layer.apply({"params": params[-1]}, h)
    assert h.shape == (4, 7, 7, 4)

    def network(params):
        h = x
        for layer, p in zip(chain, params):
            h = layer.apply({"params": p}, h)
        return h

    step = jax.grad(lambda p: jnp.sum(jnp.sin(network(p))))
    update = lambda p: jax.tree.map(lambda a, g: a - 0.01 * g, p, step(p))
    looped = jax.jit(lambda p: jax.lax.fori_loop(0, 3, lambda i, p: update(p), p))
    text = looped.lower(params).compile().as_text()
    layouts = _layouts(text)
    # 20 forward and gradient convolutions, less the kernel gradients over a 1x1 output that compile to dots
    assert len(layouts) >= 16 and set(layouts) == {"b01f_01io->b01f"} and "rhs_reversal" not in text, layouts
    one_by_one = params
    for _ in range(3):
        one_by_one = jax.jit(update)(one_by_one)
    for got, want in zip(jax.tree.leaves(looped(params)), jax.tree.leaves(one_by_one), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_dcgan_generator_is_the_same_on_the_fast_path(monkeypatch):
    generator = gan_networks.DCGANGenerator(image_shape=(8, 8, 1), latent_dim=4, base=8, channels=(6, 4))
    z = jax.random.normal(jax.random.key(6), (3, 4))
    variables = generator.init(jax.random.key(7), z)
    run = lambda v, z: generator.apply(v, z, train=True, mutable=["batch_stats"])[0]
    fast = jax.jit(run)(variables, z)
    monkeypatch.setattr(layers, "cpu_fast_path", lambda: False)
    np.testing.assert_allclose(fast, jax.jit(run)(variables, z), rtol=1e-5, atol=1e-5)


def _entry(hlo_text: str) -> str:
    """The ENTRY computation of a compiled module's text: the operations it runs (fusions' bodies aside)."""
    return hlo_text[hlo_text.index("\nENTRY"):]


def test_cpu_compiler_options_leave_convolutions_to_xla_with_the_same_gradients():
    """On CPU, train.cpu_convolutions='xla' gives options this jaxlib knows, which move the convolutions
    (forward and both gradients) out of YNNPACK fusions into XLA's own convolution ops, with the gradients of
    the default compile; 'ynnpack' is the default compile."""
    assert parallel.cpu_compiler_options("ynnpack") == {}
    options = parallel.cpu_compiler_options("xla")
    assert options == parallel.CPU_COMPILER_OPTIONS
    x = jax.random.normal(jax.random.key(4), (4, 6, 6, 8))
    k = jax.random.normal(jax.random.key(5), (3, 3, 8, 16))
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(_plain(x, k))), (0, 1))).lower(x, k)
    with_options = grad.compile(options)
    assert _entry(with_options.as_text()).count(" convolution(") == 3  # output, input and kernel gradients
    for got, want in zip(with_options(x, k), grad.compile()(x, k), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_compiled_per_shapes_compiles_once_per_input_shapes_and_computes_what_pmap_does():
    mapped = jax.pmap(lambda x, y: x * 2 + y, axis_name="batch")

    class CountingLowerings:
        lowered = 0

        def lower(self, *args):
            self.lowered += 1
            return mapped.lower(*args)

    counting = CountingLowerings()
    call = parallel.compiled_per_shapes(counting, parallel.cpu_compiler_options("xla"))
    inputs = [(np.ones((1, 3), np.float32), np.arange(3, dtype=np.float32)[None]),
              (np.ones((1, 5), np.float32), np.zeros((1, 5), np.float32)),
              (np.full((1, 3), 4, np.float32), np.ones((1, 3), np.float32))]
    for args in inputs:
        np.testing.assert_array_equal(call(*args), mapped(*args))
    assert counting.lowered == 2  # the third call reuses the first shapes' executable
    assert parallel.compiled_per_shapes(mapped, {}) is mapped
