"""Denoising autoencoder: the seed's corruption (Gaussian noise, factor 0.3, clipped to [0, 1]) on the input,
MSE against the clean image. Evaluation reports PSNR of the noisy input and of the output on held-out images.
On MNIST: python train.py --config=configs/denoising_ae.py --config.data.source=idx:../shared/data/mnist
"""
from configs import ae


def get_config():
    config = ae.get_config()
    config.loss.corruption = "gaussian"
    config.loss.noise_factor = 0.3
    return config
