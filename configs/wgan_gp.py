"""WGAN-GP (Gulrajani et al. 2017): the seed's MLP generator and critic (no sigmoid, no BatchNorm), Wasserstein
loss plus 10 x gradient penalty on random interpolates, 5 critic updates per generator update, Adam 1e-4 with
betas (0.0, 0.9) as in the paper.

data.batch_size = n_critic * 64: each critic update sees its own 64 real images. On MNIST:
  python train.py --config=configs/wgan_gp.py --workdir=runs/wgan_gp_mnist \
      --config.data.source=idx:/work/shared/data/mnist
"""
from gen_jax.config import gan_config, optimizer_config


def get_config():
    config = gan_config()
    config.gan.loss = "wasserstein"
    config.gan.n_critic = 5
    config.gan.gp_weight = 10.0
    config.data.batch_size = 5 * 64
    config.optim_g = optimizer_config(1e-4, b1=0.0, b2=0.9)
    config.optim_d = optimizer_config(1e-4, b1=0.0, b2=0.9)
    config.train.steps = 3000
    config.train.steps_per_call = 10
    config.train.log_every = 100
    config.train.sample_every = 250
    config.train.checkpoint_every = 1000
    return config
