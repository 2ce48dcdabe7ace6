"""The recommended conditional GAN for small grey images (MNIST-sized): the digit asked for, drawn well, within
a 30-minute budget on 2 CPU cores (docs/gans.md, "Recommended recipes", has the measurements).

configs/gan_recommended.py's networks, loss, EMA and projection discriminator, conditioned on the true class
instead of k-means clusters:
- the generator takes [label embedding, z] (the seed's conditioning);
- the projection discriminator (Miyato & Koyama 2018) scores + <embed(y), features>, asking "is this a real
  image of class y" through the features rather than through extra input channels.

On MNIST for 30 minutes, then the classification accuracy score:
  python train.py --config=configs/cgan_recommended.py --workdir=runs/cgan_recommended \
      --config.data.source=idx:../shared/data/mnist --config.train.time_budget=30
  python -m gen_jax.evaluate --workdir=runs/cgan_recommended --classifier=CLASSIFIER_DIR --cas
"""
from configs import gan_recommended


def get_config():
    config = gan_recommended.get_config()
    config.gan.conditional = True
    config.gan.clusters = 0
    return config
