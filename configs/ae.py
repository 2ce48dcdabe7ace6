"""The seed's vanilla autoencoder: input -> 128 -> 32 (ReLU code) -> 128 -> input (sigmoid), MSE, Adam 1e-3.

On MNIST:
  python train.py --config=configs/ae.py --config.data.source=idx:../shared/data/mnist
"""
from gen_jax.config import autoencoder_config


def get_config():
    config = autoencoder_config()
    config.train.steps = 3000
    config.train.steps_per_call = 50   # MLP: several steps per compiled call pays on CPU
    config.train.log_every = 100
    config.train.sample_every = 1000
    config.train.checkpoint_every = 1000
    return config
