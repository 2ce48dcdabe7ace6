"""Convolutional conditional VAE: conv_vae with the label joined to the conv features and to z."""
import ml_collections

from configs import conv_vae


def get_config():
    config = conv_vae.get_config()
    config.model = ml_collections.ConfigDict(dict(name="conv_cvae", latent_dim=32, channels=(16, 32), hidden=128))
    config.eval.iwae_samples = 0
    config.lock()
    return config
