"""Convolutional conditional VAE: conv_vae with the label joined to the conv features and to z."""
from configs import conv_vae


def get_config():
    config = conv_vae.get_config()
    config.model.name = "conv_cvae"
    config.eval.iwae_samples = 0
    config.lock()
    return config
