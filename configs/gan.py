"""The seed's MLP GAN (z -> 128-256-512 -> image; image -> 512-256-128 -> score), BCE with the non-saturating
generator loss, Adam 2e-4 (b1 0.5) for both networks, batch 64, on the bundled 8x8 digits.

One deliberate difference from the seed: the discriminator is spectrally normalised. On MNIST at 3000 steps
the seed's plain recipe drops digits; with spectral norm every seed tried covers all 10 with a lower FID
(docs/gans.md). --config.discriminator.spectral_norm=False
is the seed's GAN exactly.

On MNIST (3000 generator steps, as the benchmark):
  python train.py --config=configs/gan.py --workdir=runs/gan_mnist \
      --config.data.source=idx:../shared/data/mnist
Stabilisation switches (each one flag): --config.gan.real_label=0.9 (one-sided label smoothing),
--config.gan.feature_matching=True,
--config.discriminator.minibatch_discrimination=32, --config.discriminator.minibatch_stddev=4,
--config.gan.historical_averaging=1e-3, --config.gan.ema_decay=0.999 (0 disables the EMA).
"""
from gen_jax.config import gan_config, optimizer_config


def get_config():
    config = gan_config()
    config.data.batch_size = 64
    # Adam(2e-4, b1=0.5) as Radford et al. 2015 and PyTorch-GAN (the seed's source); with torch's default
    # b1=0.9 the seed's MLP GAN collapses to 1-4 digits by step 3000 on MNIST (benchmarks/gan_mnist.py).
    config.optim_g = optimizer_config(2e-4, b1=0.5)
    config.optim_d = optimizer_config(2e-4, b1=0.5)
    config.discriminator.spectral_norm = True
    config.train.steps = 3000
    config.train.steps_per_call = 20   # MLPs: several steps per compiled call pays on CPU
    config.train.log_every = 100
    config.train.sample_every = 250
    config.train.checkpoint_every = 1000
    return config
