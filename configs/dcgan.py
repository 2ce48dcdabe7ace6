"""The seed's DCGAN generator (init size H/4, two upsample+conv blocks, BatchNorm eps 0.8 as in the seed) with
PyTorch-GAN's strided-conv discriminator (16-32-64-128, Dropout2d 0.25, BatchNorm), BCE, Adam 2e-4 (b1 0.5),
batch 64.

On the 8x8 digits the generator starts from a 2x2 map. On MNIST (28x28, starts from 7x7):
  python train.py --config=configs/dcgan.py --workdir=runs/dcgan_mnist \
      --config.data.source=idx:../shared/data/mnist
It runs 10 steps per compiled call; on a CPU the batch is split over
two JAX devices (train.cpu_devices=2: the same results, faster, docs/speed.md); GPUs and TPUs ignore it.
Both networks start from PyTorch's initialisation (weight_init='torch'): with Flax's wider default the same
recipe scores a clearly worse FID on MNIST at 3000 steps (docs/gans.md).
"""
from gen_jax.config import gan_config, optimizer_config


def get_config():
    config = gan_config()
    config.data.batch_size = 64
    # Adam(2e-4, b1=0.5) as Radford et al. 2015 and PyTorch-GAN (the seed's source): configs/gan.py says why.
    config.optim_g = optimizer_config(2e-4, b1=0.5)
    config.optim_d = optimizer_config(2e-4, b1=0.5)
    config.generator = dict(name="dcgan_generator", latent_dim=100, base=128, channels=(128, 64), bn_eps=0.8,
                            weight_init="torch")
    config.discriminator = dict(name="dcgan_discriminator", channels=(16, 32, 64, 128), norm="batch", bn_eps=0.8,
                                dropout=0.25, conditioning="concat", spectral_norm=False,
                                minibatch_discrimination=0, minibatch_stddev=0, weight_init="torch")
    config.train.steps = 1500
    config.train.steps_per_call = 10  # several steps per compiled call pays on CPU (docs/speed.md)
    config.train.cpu_devices = 2  # on CPU: two JAX devices, half the batch each (convs run faster)
    config.train.log_every = 100
    config.train.sample_every = 250
    config.train.checkpoint_every = 500
    return config
