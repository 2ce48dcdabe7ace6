"""Conditional VAE (Sohn et al. 2015): the seed's MLP VAE with the one-hot label joined to the encoder's input
and to z. Writes class-conditional sample grids (row c: class c). The class count comes from the data.
On MNIST: python train.py --config=configs/cvae.py --config.data.source=idx:../shared/data/mnist
"""
import ml_collections

from gen_jax.config import vae_config


def get_config():
    config = vae_config()
    config.model = ml_collections.ConfigDict(dict(name="mlp_cvae", latent_dim=20, hidden_dims=(256, 128)))
    config.train.steps = 3000
    config.train.steps_per_call = 50
    config.lock()
    return config
