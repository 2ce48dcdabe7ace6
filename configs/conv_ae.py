"""Convolutional autoencoder: the conv VAE's bodies (two space-to-depth halvings down, two sub-pixel doublings
up), a 32-d ReLU code, MSE. It runs 10 steps per compiled call; on
a CPU the batch is split over two JAX devices (train.cpu_devices=2: faster, docs/speed.md; GPUs ignore it).
On MNIST: python train.py --config=configs/conv_ae.py --config.data.source=idx:../shared/data/mnist

Narrow convs (16, 32 channels: their FLOPs set the step time) and 1000 steps keep the digits run short
(docs/design-notes.md).
"""
import ml_collections

from gen_jax.config import autoencoder_config


def get_config():
    config = autoencoder_config()
    config.model = ml_collections.ConfigDict(dict(name="conv_autoencoder", code_dim=32, channels=(16, 32),
                                                  hidden=128, code_activation="relu"))
    config.train.steps = 1000
    config.train.steps_per_call = 10  # several steps per compiled call pays on CPU (docs/speed.md)
    config.train.cpu_devices = 2  # on CPU: two JAX devices, half the batch each (convs run faster)
    config.train.log_every = 100
    config.train.sample_every = 1000
    config.train.checkpoint_every = 1000
    config.lock()
    return config
