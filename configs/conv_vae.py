"""Convolutional VAE on dynamically binarised data, so its NLL is a true Bernoulli likelihood (in nats).

Evaluation adds an importance-weighted (IWAE, k=1000) estimate of the test NLL on 200 random test images.
On MNIST: python train.py --config=configs/conv_vae.py --config.data.source=idx:../shared/data/mnist

Narrow convs (16, 32 channels: their FLOPs set the step time) around wide Dense layers (512: nearly free), and
a learning rate that decays to 0 along a cosine over the run. Built for 28x28 (MNIST, 10000 steps: the result
is in docs/autoencoders.md); on 8x8 digits its 2x2 maps carry little, and the MLP VAE (configs/vae.py) does
better there (docs/design-notes.md). On a CPU the batch is split over two JAX devices (train.cpu_devices=2: the
same results, faster, docs/speed.md); GPUs and TPUs ignore it.
"""
import ml_collections

from gen_jax.config import vae_config


def get_config():
    config = vae_config()
    config.model = ml_collections.ConfigDict(dict(name="conv_vae", latent_dim=32, channels=(16, 32), hidden=512))
    config.data.binarize = True
    config.optim.schedule = "cosine"
    config.train.steps = 1000
    config.train.steps_per_call = 10  # several steps per compiled call pays on CPU (docs/speed.md)
    config.train.cpu_devices = 2  # on CPU: two JAX devices, half the batch each (convs run faster)
    config.eval.iwae_samples = 1000
    config.eval.iwae_images = 200    # k=1000 conv decodes are slow on CPU: raise on a GPU
    config.lock()
    return config
