"""4x super-resolution as paired translation (pix2pix, Isola et al. 2017) on the bundled digits: each 8x8 digit
box-downsampled to 2x2 is the input, the digit itself the target. A U-Net generator (depth 3: 8x8 -> 1x1),
a 1-layer PatchGAN on (input, output) pairs, non-saturating GAN loss + 100 x L1, Adam 2e-4 (b1 0.5) held then
decayed linearly; evaluation compares PSNR with bicubic upscaling of the same 2x2 images.
  python train.py --config=configs/superres.py --workdir=runs/superres
The same U-Net on L1 alone (the comparison that shows what the adversarial term buys):
  --config.pix2pix.adversarial_weight=0
On MNIST (7x7 -> 28x28; the classifier's accuracy on the upscaled digits with a gen_jax.classifier folder):
  python train.py --config=configs/superres.py --workdir=runs/superres_mnist \
      --config.data.source=superres:idx:../shared/data/mnist --config.eval.classifier_dir=runs/classifier_mnist
"""
from gen_jax.config import pix2pix_config


def get_config():
    config = pix2pix_config()
    config.train.steps = 2000
    config.train.log_every = 100
    config.train.sample_every = 500
    config.train.checkpoint_every = 500
    return config
