"""Convolutional sparse autoencoder: conv_ae with a sigmoid code and the KL sparsity penalty (target 0.05)."""
from configs import conv_ae


def get_config():
    config = conv_ae.get_config()
    config.model.code_activation = "sigmoid"
    config.loss.sparsity = "kl"
    return config
