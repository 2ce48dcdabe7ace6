"""The default: the seed's MLP VAE (784-256-128-20 on MNIST; here 64-256-128-20) on the bundled digits.

Trains to a useful result on a CPU (README's table of configs gives the times). On MNIST:
  python train.py --config=configs/vae.py --config.data.source=idx:../shared/data/mnist
"""
from gen_jax.config import vae_config


def get_config():
    config = vae_config()
    config.data.batch_size = 128
    config.train.steps = 3000
    config.train.steps_per_call = 20   # MLP: several steps per compiled call pays on CPU
    config.train.log_every = 100
    config.train.sample_every = 1000
    config.train.checkpoint_every = 1000
    return config
