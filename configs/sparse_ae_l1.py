"""Sparse autoencoder, L1 variant: weight * sum |code| on the seed's ReLU code instead of the KL penalty."""
from configs import ae


def get_config():
    config = ae.get_config()
    config.loss.sparsity = "l1"
    config.loss.sparsity_weight = 1e-3
    return config
