"""WGAN-GP (Gulrajani et al. 2017): configs/wgan.py (the seed's MLP generator and critic, 5 critic updates per
generator update, each on its own 64 real images) with the weight clipping replaced by 10 x a gradient penalty on
random interpolates, and Adam 1e-4 with betas (0.0, 0.9) as in the paper. Both networks start from PyTorch's
initialisation (weight_init='torch'; Flax's default scored worse, docs/gans.md). Samples come from the raw
generator weights (no EMA): in 3000 steps an EMA of 0.999 (a 1000-step horizon) lags a generator that is
still improving (docs/gans.md compares the two on the same runs). On MNIST:
  python train.py --config=configs/wgan_gp.py --workdir=runs/wgan_gp_mnist \
      --config.data.source=idx:../shared/data/mnist
"""
from configs import wgan
from gen_jax.config import optimizer_config


def get_config():
    config = wgan.get_config()
    config.gan.clip_value = 0.0
    config.gan.gp_weight = 10.0
    config.optim_g = optimizer_config(1e-4, b1=0.0, b2=0.9)
    config.optim_d = optimizer_config(1e-4, b1=0.0, b2=0.9)
    config.generator.weight_init = "torch"
    config.discriminator.weight_init = "torch"
    config.gan.ema_decay = 0.0
    return config
