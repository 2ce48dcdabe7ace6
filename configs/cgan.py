"""The seed's conditional GAN: generator [label embedding, z] -> 128-256-512-1024 (BatchNorm eps 0.8 after the
first) -> image; PyTorch-GAN's conditional discriminator [image, label embedding] -> 512-512-512 (Dropout 0.4).
BCE (non-saturating), Adam 2e-4 (b1 0.5), batch 64. Writes a per-class sample grid (row c = class c).

On MNIST:
  python train.py --config=configs/cgan.py --workdir=runs/cgan_mnist \
      --config.data.source=idx:../shared/data/mnist
Projection discriminator (Miyato & Koyama 2018) instead of concatenation:
  --config.discriminator.conditioning=projection
"""
from gen_jax.config import gan_config, optimizer_config


def get_config():
    config = gan_config()
    config.gan.conditional = True
    config.data.batch_size = 64
    # Adam(2e-4, b1=0.5) as Radford et al. 2015 and PyTorch-GAN (the seed's source): configs/gan.py says why.
    config.optim_g = optimizer_config(2e-4, b1=0.5)
    config.optim_d = optimizer_config(2e-4, b1=0.5)
    config.generator.hidden_dims = (128, 256, 512, 1024)
    config.generator.batch_norm = True
    config.generator.bn_eps = 0.8
    config.discriminator.hidden_dims = (512, 512, 512)
    config.discriminator.dropout = 0.4
    config.discriminator.conditioning = "concat"
    config.train.steps = 3000
    config.train.steps_per_call = 20
    config.train.log_every = 100
    config.train.sample_every = 250
    config.train.checkpoint_every = 1000
    return config
