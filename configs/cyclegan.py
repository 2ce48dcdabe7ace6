"""CycleGAN (Zhu et al. 2017) on the bundled digits: domain A is one half of the digits as they are, domain B
the other half with inverted, thickened strokes (`data.domains.style_pair`), so no digit is ever seen in both
domains and every A -> B translation of a test digit has a true answer to be scored against.

ResNet-block generators (2 blocks, 16 channels: the maps are 2x2 after two halvings of 8x8) and 1-layer
PatchGAN discriminators (receptive field 16 px: the whole 8x8 image), least-squares adversarial loss, cycle
weight 10, identity weight 0.5 x 10, an image pool of 50 per discriminator, Adam 2e-4 (b1 0.5) held for the
first half and decayed linearly to 0 over the second.
  python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan
MNIST <-> MNIST-M (colour digits on photograph crops; docs/translation.md has its results and training time):
3 blocks of 32 channels at full resolution (no halvings: the blocks restyle pixels instead of redrawing digits),
2-layer PatchGANs (receptive field 34 px: the whole 28x28 image):
  python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan_mnist_m \
      --config.data.source=mnist_m:idx:../shared/data/mnist --config.train.steps=3200 \
      --config.generator.channels=32 --config.generator.num_blocks=3 --config.generator.num_downsamplings=0 \
      --config.discriminator.channels=32 --config.discriminator.num_layers=2
"""
from gen_jax.config import cyclegan_config


def get_config():
    config = cyclegan_config()
    config.data.batch_size = 16
    config.train.steps = 2000
    config.train.log_every = 100
    config.train.sample_every = 500
    config.train.checkpoint_every = 500
    config.train.steps_per_call = 10  # several steps per compiled call pays on CPU (docs/speed.md)
    return config
