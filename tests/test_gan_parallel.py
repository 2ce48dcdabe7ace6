"""N-device GAN steps equal the 1-device step on the same global batch.

The check runs in a subprocess with `XLA_FLAGS=--xla_force_host_platform_device_count=4` (the flag must be set
before JAX starts). It covers what could make shards disagree: BatchNorm statistics (DCGAN), dropout masks,
fake labels (conditional), minibatch discrimination and stddev, feature matching's feature means, the gradient penalty's
interpolates, R1's real-image gradients, strided critic minibatches (n_critic=2), spectral norm and historical
averaging.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import jax_utils
    from gen_jax.training import steps
    from gen_jax.models import gan_networks as gm
    from gen_jax.training.train_state import AdversarialState, TrainState

    SHAPE, LATENT, BATCH = (8, 8, 1), 8, 16
    CASES = {
        "dcgan_cond_bn_dropout_fm_mbd_sn_ha": (
            gm.DCGANGenerator(SHAPE, latent_dim=LATENT, base=8, channels=(8, 4), num_classes=10),
            gm.DCGANDiscriminator(channels=(4, 8), dropout=0.25, num_classes=10, conditioning="projection",
                                  minibatch_discrimination=4, spectral_norm=True),
            dict(feature_matching=True, historical_averaging=0.1, real_label=0.9)),
        "wgan_gp_ncritic2_mbstd": (
            gm.MLPGenerator(SHAPE, latent_dim=LATENT, hidden_dims=(16,)),
            gm.MLPDiscriminator(hidden_dims=(16,), minibatch_stddev=2),
            dict(loss="wasserstein", n_critic=2, gp_weight=10.0)),
        "hinge_r1": (
            gm.MLPGenerator(SHAPE, latent_dim=LATENT, hidden_dims=(16,)),
            gm.MLPDiscriminator(hidden_dims=(16,)),
            dict(loss="hinge", r1_weight=1.0)),
    }

    def initial(g, d, ha):
        labels = jnp.arange(2) if g.num_classes else None
        gv = g.init(jax.random.key(0), jnp.zeros((2, LATENT)), labels)
        dv = d.init(jax.random.key(1), jnp.zeros((2, *SHAPE)), labels)
        rest = lambda v: {k: x for k, x in v.items() if k != "params"}
        tx = optax.sgd(0.05, momentum=0.5)  # Adam would amplify round-off in near-zero gradients
        return AdversarialState.create(
            {"generator": TrainState.create(params=gv["params"], tx=tx, model_state=rest(gv)),
             "discriminator": TrainState.create(params=dv["params"], tx=tx, model_state=rest(dv))},
            ema=("generator",), historical_averaging=ha)

    rng = np.random.default_rng(0)
    batches = [{"image": rng.uniform(size=(BATCH, *SHAPE)).astype(np.float32),
                "label": rng.integers(0, 10, BATCH).astype(np.int32)} for _ in range(2)]
    report = {}
    for name, (g, d, options) in CASES.items():
        state0 = initial(g, d, options.get("historical_averaging", 0) > 0)
        single = jax.jit(steps.make_gan_step(g, d, axis_name=None, **options))
        state = state0
        for i, b in enumerate(batches):
            state, _ = single(state, b, jax.random.key(i))
        reference = [np.asarray(x) for x in jax.tree.leaves(state)]
        report[name] = {}
        for n in (2, 4):
            devices = jax.devices()[:n]
            mapped = jax.pmap(steps.make_gan_step(g, d, axis_name="batch", **options), axis_name="batch",
                              devices=devices)
            state = jax_utils.replicate(state0, devices)
            for i, b in enumerate(batches):
                shards = jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[1:]), b)
                keys = jnp.stack([jax.random.key_data(jax.random.key(i))] * n)
                state, _ = mapped(state, shards, jax.random.wrap_key_data(keys))
                jax.block_until_ready(state)
            leaves = [np.asarray(x[0]) for x in jax.tree.leaves(state)]
            report[name][n] = max(float(np.max(np.abs(a - b)) / (1.0 + np.max(np.abs(b))))
                                  for a, b in zip(leaves, reference))
    print("REPORT" + json.dumps(report))
""")


@pytest.mark.slow
def test_two_and_four_devices_equal_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("REPORT")[-1])
    print(report)
    for case, by_devices in report.items():
        for devices, error in by_devices.items():
            assert error < 1e-4, f"{case} on {devices} devices differs from one device by {error:.2e}"
    assert set(report) == {"dcgan_cond_bn_dropout_fm_mbd_sn_ha", "wgan_gp_ncritic2_mbstd", "hinge_r1"}
