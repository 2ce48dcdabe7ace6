"""gen_jax: autoencoders and GANs in JAX/Flax.

Pure Flax modules (`gen_jax.models`), per-example losses (`gen_jax.losses`), train-step factories
(`gen_jax.steps`), train states (`gen_jax.train_state`), data (`gen_jax.data`), the one train loop
(`gen_jax.loop.train`), checkpoints, pictures, the VAE's own functions (`gen_jax.vae`), GAN helpers
(`gen_jax.gan`), autoencoder applications (`gen_jax.applications`), and evaluation (`gen_jax.metrics`,
`gen_jax.classifier`, `gen_jax.evaluate`).
"""
from gen_jax import data, gan, losses, models, steps, train_state, vae
from gen_jax.errors import CheckpointError, ConfigError, DataError, UserError

__version__ = "0.1.0"
