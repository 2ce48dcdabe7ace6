"""The recommended unconditional GAN for small grey images (MNIST-sized): samples that read as real digits
within a 30-minute budget on 2 CPU cores (docs/gans.md, "Recommended recipes", has the measurements).

Each choice, and why (the ablation in docs/gans.md removes each in turn):
- Conditioned on its own 20 k-means clusters of the training pixels (`gan.clusters`, no labels used; a
  self-conditioned GAN after Liu et al. 2020) through a projection discriminator (Miyato & Koyama 2018): each
  cluster is one digit style, so D judges "a real image of this style" and G cannot drift between styles. It
  samples a cluster by its share of the training set, so to the outside it is an unconditional GAN. With 50
  clusters (about 1,200 images each) every cluster collapsed to one image.
- Narrow convolutional networks sized for 28x28 (G: dense to 7x7x64, upsample+conv 32 and 16 channels, BatchNorm
  eps 1e-5; D: stride-2 convs 32-64-128, no BatchNorm, no dropout): convolutions see strokes as strokes, and at
  this width a CPU trains several times more images per second than the seed's DCGAN, which buys steps.
- Spectral norm on every discriminator layer with the hinge loss (Miyato et al. 2018): a Lipschitz-bounded
  critic whose gradients stay informative, without the cost of a gradient penalty. The ablation finds neither
  measurably better than its alternative (no SN; BCE) over 10 minutes: kept as insurance, not as a gain.
- The EMA generator (decay 0.999) for sampling: averages out the last updates' oscillation.
- Adam 2e-4, b1 0.5 for both networks (Radford et al. 2015).

On MNIST for 30 minutes:
  python train.py --config=configs/gan_recommended.py --workdir=runs/gan_recommended \
      --config.data.source=idx:../shared/data/mnist --config.train.time_budget=30
"""
from gen_jax.config import gan_config, optimizer_config


def get_config():
    config = gan_config()
    config.data.batch_size = 64
    config.optim_g = optimizer_config(2e-4, b1=0.5)
    config.optim_d = optimizer_config(2e-4, b1=0.5)
    config.generator = dict(name="dcgan_generator", latent_dim=64, base=64, channels=(32, 16), bn_eps=1e-5,
                            weight_init="flax")
    config.discriminator = dict(name="dcgan_discriminator", channels=(32, 64, 128), norm="none", bn_eps=1e-5,
                                dropout=0.0, conditioning="projection", spectral_norm=True, minibatch_discrimination=0,
                                minibatch_stddev=0, weight_init="flax")
    config.gan.clusters = 20
    config.gan.loss = "hinge"
    config.gan.ema_decay = 0.999
    config.train.steps = 20000
    config.train.steps_per_call = 10  # several steps per compiled call pays on CPU (docs/speed.md)
    config.train.cpu_devices = 2      # on CPU: two JAX devices, half the batch each (convs run faster)
    config.train.cpu_convolutions = "ynnpack"  # on CPU: its narrow convs run faster in YNNPACK (docs/speed.md)
    config.train.log_every = 200
    config.train.sample_every = 2000
    config.train.checkpoint_every = 2000
    return config
