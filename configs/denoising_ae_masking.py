"""Denoising autoencoder with masking noise: a quarter of the pixels zeroed (Vincent et al. 2008)."""
from configs import denoising_ae


def get_config():
    config = denoising_ae.get_config()
    config.loss.corruption = "masking"
    config.loss.mask_rate = 0.25
    return config
