"""WGAN with weight clipping (Arjovsky et al. 2017): the seed's MLP generator and its discriminator without the
sigmoid as critic, Wasserstein loss, 5 critic updates per generator update, critic weights clipped to
[-0.01, 0.01] after each (the seed's clip_weights), RMSprop 5e-5 (alpha 0.99, as PyTorch) for both.

data.batch_size = n_critic * 64: each critic update sees its own 64 real images, as in the paper's Alg. 1 and
the PyTorch reference. On MNIST (3000 generator steps):
  python train.py --config=configs/wgan.py --workdir=runs/wgan_mnist \
      --config.data.source=idx:../shared/data/mnist
"""
from gen_jax.config import gan_config, optimizer_config


def get_config():
    config = gan_config()
    config.gan.loss = "wasserstein"
    config.gan.n_critic = 5
    config.gan.clip_value = 0.01
    config.data.batch_size = 5 * 64
    for name in ("optim_g", "optim_d"):
        optim = optimizer_config(5e-5, b2=0.99)
        optim.name = "rmsprop"
        config[name] = optim
    config.train.steps = 3000
    config.train.steps_per_call = 10
    config.train.log_every = 100
    config.train.sample_every = 250
    config.train.checkpoint_every = 1000
    return config
