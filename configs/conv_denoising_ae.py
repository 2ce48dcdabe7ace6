"""Convolutional denoising autoencoder: conv_ae with the seed's Gaussian corruption (factor 0.3)."""
from configs import conv_ae


def get_config():
    config = conv_ae.get_config()
    config.loss.corruption = "gaussian"
    return config
