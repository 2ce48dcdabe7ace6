"""gen_jax: autoencoders and GANs in JAX/Flax.

The library, layer by layer (each folder imports only from the ones above it in this list):
  errors, config, parallel, distributed,     the base: error types, config schemas and `config.load`, named-axis
  checkpoint, losses, images, files          helpers, multi-process runs, orbax checkpoints, every loss,
                                             picture files, files written whole
  data/         sources, deterministic batching, value ranges and quantisation, corruptions
  models/       Flax modules, created by name (`models.create`)
  families/     what each trained family does, as pure functions (`vae`, `autoencoder`, `gan`, `translation`)
  evaluation/   metrics (FID, KID, IS, precision/recall), the domain classifier and InceptionV3 feature
                extractors, sample quality against cached reference statistics
  training/     train states, optimizers, step factories, tasks, the one loop, hooks, `runs`
  applications/ what trained models are for (autoencoders: reduce, anomaly, denoise, generate, compress, IWAE)
Command-line tools are thin modules over these: `python -m gen_jax.sample | evaluate | classifier | translate |
applications | inception_weights`, and train.py at the repository root.
"""
from gen_jax import config, data, losses, models
from gen_jax.errors import CheckpointError, ConfigError, DataError, UserError
from gen_jax.families import autoencoder, gan, vae
from gen_jax.training import steps
from gen_jax.training.train_state import AdversarialState, TrainState

__version__ = "0.1.0"
