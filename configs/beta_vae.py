"""beta-VAE (Higgins et al. 2017): the seed's MLP VAE with the KL weighted by beta = 2.

The logged neg_elbo stays the beta = 1 bound, so runs with different beta compare on likelihood. On the 8x8
digits beta = 4 collapses the posterior (KL -> 0, reconstructions = the mean image); on MNIST beta = 4 (the
paper's value) learns: add --config.loss.beta=4.
On MNIST: python train.py --config=configs/beta_vae.py --config.data.source=idx:../shared/data/mnist
"""
from gen_jax.config import vae_config


def get_config():
    config = vae_config()
    config.loss.beta = 2.0
    config.train.steps = 3000
    config.train.steps_per_call = 50
    return config
