"""Model factories looked up by name from a config: `create(name, image_shape=..., **options)`."""
from __future__ import annotations

import inspect

from gen_jax.errors import ConfigError
from gen_jax.models import autoencoders, gan_networks, translation

FACTORIES = {
    "mlp_generator": gan_networks.mlp_generator,
    "dcgan_generator": gan_networks.dcgan_generator,
    "mlp_discriminator": gan_networks.mlp_discriminator,
    "dcgan_discriminator": gan_networks.dcgan_discriminator,
    "mlp_vae": autoencoders.mlp_vae,
    "conv_vae": autoencoders.conv_vae,
    "mlp_cvae": autoencoders.mlp_cvae,
    "conv_cvae": autoencoders.conv_cvae,
    "mlp_autoencoder": autoencoders.mlp_autoencoder,
    "conv_autoencoder": autoencoders.conv_autoencoder,
    "resnet_generator": translation.resnet_generator,
    "patch_discriminator": translation.patch_discriminator,
    "unet_generator": translation.unet_generator,
}


def create(name: str, **options):
    """Builds the Flax module `name`; an unknown name or option is a ConfigError naming the valid ones."""
    if name not in FACTORIES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(FACTORIES))}")
    factory = FACTORIES[name]
    accepted = set(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"model {name!r} has no option {unknown[0]!r}; its options: "
                          f"{', '.join(sorted(accepted - {'image_shape'}))}")
    return factory(**options)
