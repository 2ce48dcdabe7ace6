"""PyTorch reference side of the benchmarks: the seed tutorial's models, trained the way gen_jax trains.

The model classes are copied from the tutorial (shared/seed/autoencoders_and_gans.md); where the tutorial
leaves a gap (no DCGAN/CGAN discriminator, no WGAN critic, no reconstruction criterion, hard-coded sizes) the
gap is filled from the code the seed itself comes from (eriklindernoren/PyTorch-GAN) and marked "GAP:".
Batches follow gen_jax.data.batch_indices exactly (a fresh permutation per epoch from
`np.random.default_rng([seed, epoch])`, last partial batch dropped), so both sides see the same images in the
same order. Images cross the API as NumPy NHWC float32; convolutions see NCHW inside.

Self-contained on purpose (imports only numpy and torch, never gen_jax), so a benchmark can compare the two
without one side's code leaking into the other.
"""

from __future__ import annotations

import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

AUTOENCODER_KINDS = ("vanilla", "sparse", "denoising", "vae")
GAN_KINDS = ("gan", "dcgan", "cgan", "wgan", "wgan_gp")


# ----------------------------------------------------------------------------------------------------------
# Autoencoders (seed code)
# ----------------------------------------------------------------------------------------------------------

class SimpleAutoencoder(nn.Module):
    """Seed's vanilla MLP autoencoder: input -> 128 -> code (ReLU) -> 128 -> input (sigmoid, [0, 1])."""

    def __init__(self, input_dim, encoding_dim):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(input_dim, 128),
            nn.ReLU(),
            nn.Linear(128, encoding_dim),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(encoding_dim, 128),
            nn.ReLU(),
            nn.Linear(128, input_dim),
            nn.Sigmoid(),
        )

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.decoder(self.encoder(x))


def sparse_loss(encoded, sparsity_target=0.05, sparsity_weight=0.1):
    """Seed's KL sparsity penalty on the batch-mean code activation, as written in the tutorial.

    Kept as-is: with the seed's ReLU codes rho_hat is not confined to (0, 1), so a dead unit (rho_hat = 0)
    gives +inf and rho_hat > 1 gives NaN; gen_jax may guard this, the reference does not.
    """
    rho_hat = torch.mean(encoded, dim=0)
    kl_div = sparsity_target * torch.log(sparsity_target / rho_hat) + \
        (1 - sparsity_target) * torch.log((1 - sparsity_target) / (1 - rho_hat))
    return sparsity_weight * torch.sum(kl_div)


def add_noise(inputs, noise_factor=0.3):
    """Seed's denoising corruption: additive Gaussian noise, clipped back to [0, 1]."""
    noisy = inputs + noise_factor * torch.randn_like(inputs)
    return torch.clamp(noisy, 0., 1.)


class VariationalAutoencoder(nn.Module):
    """Seed's MLP VAE: input -> 256 -> 128 -> (mu, logvar) of a diagonal Gaussian; decoder mirrors it."""

    def __init__(self, input_dim, latent_dim):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(input_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
        )
        self.fc_mu = nn.Linear(128, latent_dim)
        self.fc_logvar = nn.Linear(128, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 128),
            nn.ReLU(),
            nn.Linear(128, 256),
            nn.ReLU(),
            nn.Linear(256, input_dim),
            nn.Sigmoid(),
        )

    def encode(self, x):
        x = x.view(x.size(0), -1)
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def vae_loss(recon_x, x, mu, logvar, beta=1.0):
    """Seed's VAE loss summed over the batch: Bernoulli BCE + beta * KL(q(z|x) || N(0, I)).

    GAP: the seed flattens with x.view(-1, 784) (MNIST only); here each image is flattened to its own size.
    """
    bce = F.binary_cross_entropy(recon_x, x.reshape(x.size(0), -1), reduction='sum')
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + beta * kld


class ConvVariationalAutoencoder(nn.Module):
    """GAP: gen_jax's conv VAE (configs/conv_vae.py; the seed has no convolutional model), for the speed table.

    Down: two halvings, each pixel-unshuffle then a 3x3 conv + ReLU, Dense(hidden) + ReLU, (mu, logvar). Up:
    Dense(hidden) + ReLU, Dense to an (H/4, W/4) map + ReLU, two doublings (3x3 conv to 4x the channels,
    pixel-shuffle, ReLU), a 3x3 conv to the image, sigmoid. Same layer sizes as gen_jax's; PyTorch's unshuffle
    orders a patch's channels differently (a permutation of the conv's inputs). Takes and returns flat
    NHWC-order images, like VariationalAutoencoder, so vae_loss and the evaluation helpers apply unchanged.
    """

    def __init__(self, image_shape, latent_dim=32, channels=(16, 32), hidden=512):
        super().__init__()
        h, w, c = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvVariationalAutoencoder needs height and width divisible by 4, got {h}x{w}")
        self.image_shape, self.map_shape = (h, w, c), (channels[-1], h // 4, w // 4)
        down, cin = [], c
        for ch in channels:
            down += [nn.PixelUnshuffle(2), nn.Conv2d(4 * cin, ch, 3, padding=1), nn.ReLU()]
            cin = ch
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(cin * h * w // 16, hidden), nn.ReLU())
        self.fc_mu, self.fc_logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        up = []
        for ch in reversed(channels):
            up += [nn.Conv2d(cin, 4 * ch, 3, padding=1), nn.PixelShuffle(2), nn.ReLU()]
            cin = ch
        self.fc_up = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                   nn.Linear(hidden, channels[-1] * h * w // 16), nn.ReLU())
        self.decoder = nn.Sequential(*up, nn.Conv2d(cin, c, 3, padding=1), nn.Sigmoid())

    def encode(self, x):
        h, w, c = self.image_shape
        hidden = self.encoder(x.view(x.size(0), h, w, c).permute(0, 3, 1, 2))
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def decode(self, z):
        out = self.decoder(self.fc_up(z).view(z.size(0), *self.map_shape))
        return out.permute(0, 2, 3, 1).reshape(z.size(0), -1)

    reparameterize = VariationalAutoencoder.reparameterize
    forward = VariationalAutoencoder.forward


VAE_CLASSES = (VariationalAutoencoder, ConvVariationalAutoencoder)


# ----------------------------------------------------------------------------------------------------------
# GANs (seed code, plus the discriminators the seed omits)
# ----------------------------------------------------------------------------------------------------------

class Generator(nn.Module):
    """Seed's MLP generator: z -> 128 -> 256 -> 512 -> flat image in [-1, 1] (tanh)."""

    def __init__(self, latent_dim, output_dim):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(latent_dim, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, output_dim),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.model(z)


class Discriminator(nn.Module):
    """Seed's MLP discriminator: flat image -> 512 -> 256 -> 128 -> probability (sigmoid, for nn.BCELoss).

    With sigmoid=False it is the WGAN / WGAN-GP critic (GAP: the seed gives no critic; it is this network
    without the final sigmoid, an unbounded score).
    """

    def __init__(self, input_dim, sigmoid=True):
        super().__init__()
        layers = [
            nn.Linear(input_dim, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, 1),
        ]
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x.view(x.size(0), -1))


class DCGANGenerator(nn.Module):
    """Seed's DCGAN generator: z -> 128 x s/4 x s/4 -> two (upsample x2, conv 3x3, BN, LeakyReLU) -> tanh image.

    GAP/CHANGE: the seed hard-codes init_size = 4 (always 16x16 output); as in PyTorch-GAN's dcgan.py it is
    img_size // 4 here, so the output matches the data (28 -> 7, 8 -> 2). img_size must be divisible by 4.
    QUIRK KEPT: BatchNorm2d(128, 0.8) passes 0.8 as *eps* (PyTorch-GAN meant momentum); gen_jax matches it.
    """

    def __init__(self, latent_dim, channels=3, img_size=32):
        super().__init__()
        if img_size % 4:
            raise ValueError(f"DCGANGenerator needs img_size divisible by 4, got {img_size}")
        self.init_size = img_size // 4
        self.l1 = nn.Sequential(nn.Linear(latent_dim, 128 * self.init_size ** 2))
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, 3, stride=1, padding=1),
            nn.BatchNorm2d(128, 0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, stride=1, padding=1),
            nn.BatchNorm2d(64, 0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, channels, 3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, z):
        out = self.l1(z)
        out = out.view(out.shape[0], 128, self.init_size, self.init_size)
        return self.conv_blocks(out)


class DCGANDiscriminator(nn.Module):
    """GAP: PyTorch-GAN's DCGAN discriminator (the seed's generator comes from there; the seed has none).

    Four blocks conv 3x3 stride 2 (16, 32, 64, 128 channels), LeakyReLU 0.2, Dropout2d 0.25, then
    BatchNorm2d(out, 0.8) except in the first block; flatten, Linear -> 1, sigmoid. PyTorch-GAN computes the
    final size as img_size // 16, which is wrong unless img_size is a multiple of 16 (28 -> 14 -> 7 -> 4 -> 2,
    not 1); here it is computed by ceil-halving, which is what the padded stride-2 convs produce.
    """

    def __init__(self, channels=1, img_size=32):
        super().__init__()
        layers, in_filters = [], channels
        for out_filters, bn in ((16, False), (32, True), (64, True), (128, True)):
            layers += [nn.Conv2d(in_filters, out_filters, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
                       nn.Dropout2d(0.25)]
            if bn:
                layers.append(nn.BatchNorm2d(out_filters, 0.8))
            in_filters = out_filters
        self.model = nn.Sequential(*layers)
        ds_size = img_size
        for _ in range(4):
            ds_size = (ds_size + 1) // 2
        self.adv_layer = nn.Sequential(nn.Linear(128 * ds_size ** 2, 1), nn.Sigmoid())

    def forward(self, img):
        out = self.model(img)
        # reshape, not PyTorch-GAN's view: for 1-channel batches torch may pick channels-last conv outputs
        return self.adv_layer(out.reshape(out.shape[0], -1))


class ConditionalGenerator(nn.Module):
    """Seed's CGAN generator: [label embedding, z] -> MLP 128-256-512-1024 (BN eps-0.8 quirk) -> tanh image.

    img_shape is (C, H, W) as in the seed; the output is NCHW.
    """

    def __init__(self, latent_dim, n_classes, img_shape):
        super().__init__()
        self.img_shape = img_shape
        self.label_emb = nn.Embedding(n_classes, n_classes)

        def block(in_feat, out_feat, normalize=True):
            layers = [nn.Linear(in_feat, out_feat)]
            if normalize:
                layers.append(nn.BatchNorm1d(out_feat, 0.8))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(latent_dim + n_classes, 128, normalize=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, int(np.prod(img_shape))),
            nn.Tanh(),
        )

    def forward(self, noise, labels):
        gen_input = torch.cat((self.label_emb(labels), noise), -1)
        img = self.model(gen_input)
        return img.view(img.size(0), *self.img_shape)


class ConditionalDiscriminator(nn.Module):
    """GAP: PyTorch-GAN's cgan discriminator: [flat image, label embedding] -> 512-512-512 (Dropout 0.4) -> 1.

    Returns a logit. PyTorch-GAN trains it with MSE (least squares); here it is trained with
    BCE-with-logits so the CGAN row is comparable with the other (BCE) GANs.
    """

    def __init__(self, n_classes, img_shape):
        super().__init__()
        self.label_embedding = nn.Embedding(n_classes, n_classes)
        self.model = nn.Sequential(
            nn.Linear(n_classes + int(np.prod(img_shape)), 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 1),
        )

    def forward(self, img, labels):
        d_in = torch.cat((img.view(img.size(0), -1), self.label_embedding(labels)), -1)
        return self.model(d_in)


def wasserstein_loss(y_pred, y_true):
    """Seed's Wasserstein loss: mean(y_true * y_pred), with y_true = -1 for real and +1 for fake."""
    return torch.mean(y_true * y_pred)


def clip_weights(model, clip_value):
    """Seed's WGAN weight clipping of every critic parameter to [-clip_value, clip_value]."""
    for p in model.parameters():
        p.data.clamp_(-clip_value, clip_value)


def gradient_penalty(critic, real, fake, alpha=None):
    """WGAN-GP penalty (Gulrajani et al. 2017): mean (||grad critic(x_hat)||_2 - 1)^2 on random interpolates
    (alpha ~ U[0, 1] per example unless given, shaped [B, 1, ...])."""
    if alpha is None:
        alpha = torch.rand(real.size(0), *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grads, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grads.reshape(grads.size(0), -1).norm(2, dim=1) - 1) ** 2).mean()


# ----------------------------------------------------------------------------------------------------------
# Data and timing helpers
# ----------------------------------------------------------------------------------------------------------

def set_threads(num_threads):
    """Sets torch's intra-op CPU threads (None leaves torch's default); the machine may be shared."""
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))


def epoch_batches(num_examples, batch_size, seed):
    """Endless index batches, identical to gen_jax.data.batch_indices: per-epoch permutation, drop remainder."""
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch size {batch_size} must be in [1, {num_examples}] (the training set)")
    per_epoch, epoch = num_examples // batch_size, 0
    while True:
        perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
        for i in range(per_epoch):
            yield torch.from_numpy(perm[i * batch_size:(i + 1) * batch_size])
        epoch += 1


def timed_loop(step_fn, steps, images_per_step, warmup=20):
    """Runs step_fn(i) for i < steps; returns images/s over the steps after the first `warmup`.

    The warm-up is capped at half the run so short test runs still time something. PyTorch on CPU is
    synchronous, so wall time after the last step is the real cost.
    """
    warmup = min(warmup, steps // 2)
    start = None
    for i in range(steps):
        if i == warmup:
            start = time.perf_counter()
        step_fn(i)
    if start is None:
        return float("nan")
    return (steps - warmup) * images_per_step / (time.perf_counter() - start)


def _flat(x01):
    """NHWC numpy -> [N, H*W*C] float32 tensor (MLPs see pixels in NHWC order, as gen_jax's do)."""
    return torch.from_numpy(np.ascontiguousarray(x01, np.float32).reshape(len(x01), -1))


def _nchw(x):
    """NHWC numpy -> NCHW float32 tensor for the convolutional models."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def load_mnist_idx(path):
    """Reads one gzipped IDX file (MNIST format) into a uint8 array: 16-byte header for images, 8 for labels."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(data_dir, split="train"):
    """MNIST split as (images float32 [N, 28, 28, 1] in [0, 1], labels int64 [N])."""
    stem = "train" if split == "train" else "t10k"
    images = load_mnist_idx(os.path.join(data_dir, f"{stem}-images-idx3-ubyte.gz"))
    labels = load_mnist_idx(os.path.join(data_dir, f"{stem}-labels-idx1-ubyte.gz"))
    return (images[..., None] / np.float32(255)).astype(np.float32), labels.astype(np.int64)


# ----------------------------------------------------------------------------------------------------------
# Autoencoder training and evaluation
# ----------------------------------------------------------------------------------------------------------

def make_autoencoder(kind, input_dim, latent_dim=None, image_shape=None):
    """The seed model for `kind`; latent_dim defaults to 32 for the deterministic AEs and 20 for the VAE.

    kind "conv_vae" is gen_jax's conv VAE (ConvVariationalAutoencoder, latent 32 by default); it needs
    image_shape (H, W, C).
    """
    if kind == "conv_vae":
        if image_shape is None:
            raise ValueError("conv_vae needs image_shape (H, W, C)")
        return ConvVariationalAutoencoder(tuple(image_shape), latent_dim or 32)
    if kind not in AUTOENCODER_KINDS:
        raise ValueError(f"kind must be one of {AUTOENCODER_KINDS}, got {kind!r}")
    if kind == "vae":
        return VariationalAutoencoder(input_dim, latent_dim or 20)
    return SimpleAutoencoder(input_dim, latent_dim or 32)


def autoencoder_loss(kind, model, x, *, beta=1.0, noise_factor=0.3, sparsity_target=0.05,
                     sparsity_weight=0.1):
    """Training loss of one flat [B, D] batch in [0, 1].

    GAP: the seed never names its reconstruction `criterion`; MSE (mean over pixels) is used for the
    deterministic AEs. The VAE loss is the seed's, summed over the batch (Adam is nearly scale-invariant).
    """
    if kind in ("vae", "conv_vae"):
        recon, mu, logvar = model(x)
        return vae_loss(recon, x, mu, logvar, beta)
    if kind == "denoising":
        return F.mse_loss(model(add_noise(x, noise_factor)), x)
    if kind == "sparse":
        encoded = model.encoder(x)
        return F.mse_loss(model.decoder(encoded), x) + sparse_loss(encoded, sparsity_target, sparsity_weight)
    return F.mse_loss(model(x), x)


def autoencoder_step(kind, x01, *, batch_size=128, lr=1e-3, seed=0, latent_dim=None, compile=False, device=None,
                     **loss_options):
    """(model, step): step(i) is one Adam step of the seed autoencoder `kind` on the next batch of x01.

    x01 is float32 [N, H, W, C] in [0, 1]; batches are epoch-wise permutations from `seed` (see epoch_batches),
    which also seeds torch's RNG (init, noise, posterior samples). compile: run the model under
    torch.compile. device: where the model and the data live (None: the CPU). loss_options: autoencoder_loss's
    keywords (beta, noise_factor, sparsity_target, sparsity_weight).
    """
    torch.manual_seed(seed)
    x = _flat(x01).to(device or "cpu")
    model = make_autoencoder(kind, x.shape[1], latent_dim, image_shape=x01.shape[1:]).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    run = torch.compile(model) if compile else model
    batches = epoch_batches(len(x), batch_size, seed)

    def step(_):
        loss = autoencoder_loss(kind, run, x[next(batches).to(x.device)], **loss_options)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    return model, step


def train_autoencoder(kind, x01, *, steps, batch_size=128, lr=1e-3, seed=0, latent_dim=None, beta=1.0,
                      noise_factor=0.3, sparsity_target=0.05, sparsity_weight=0.1, num_threads=None,
                      warmup=20):
    """Trains a seed autoencoder with Adam on x01 (float32 [N, H, W, C] in [0, 1]).

    Args:
      kind: "vanilla", "sparse", "denoising", "vae" (or "conv_vae", see make_autoencoder).
      steps: optimizer steps; batches are epoch-wise permutations from `seed` (see epoch_batches).
      seed: seeds both the batch order and torch's RNG (init, noise, posterior samples).
    Returns:
      (model in eval mode, training images per second excluding the first `warmup` steps).
    """
    set_threads(num_threads)
    model, step = autoencoder_step(kind, x01, batch_size=batch_size, lr=lr, seed=seed, latent_dim=latent_dim,
                                   beta=beta, noise_factor=noise_factor, sparsity_target=sparsity_target,
                                   sparsity_weight=sparsity_weight)
    ips = timed_loop(step, steps, batch_size, warmup)
    return model.eval(), ips


@torch.no_grad()
def vae_neg_elbo(model, x01, *, seed=0, batch_size=1000):
    """Negative ELBO in nats per image: BCE sum + KL, one posterior sample per image (torch.Generator(seed))."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x, total = _flat(x01), 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        mu, logvar = model.encode(xb)
        z = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
        total += vae_loss(model.decode(z), xb, mu, logvar, beta=1.0).item()
    return total / len(x)


@torch.no_grad()
def reconstruction_mse(model, x01, *, batch_size=1000):
    """Mean squared error per pixel of clean reconstructions; the VAE decodes its posterior mean."""
    model.eval()
    x, total = _flat(x01), 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        recon = model.decode(model.encode(xb)[0]) if isinstance(model, VAE_CLASSES) else model(xb)
        total += F.mse_loss(recon, xb, reduction="sum").item()
    return total / x.numel()


@torch.no_grad()
def encode(model, x01):
    """Codes [N, latent] as float32 numpy: ReLU codes for the AEs, the posterior mean for the VAE."""
    model.eval()
    x = _flat(x01)
    codes = model.encode(x)[0] if isinstance(model, VAE_CLASSES) else model.encoder(x)
    return codes.numpy().astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# GAN training and sampling
# ----------------------------------------------------------------------------------------------------------

GAN_DEFAULTS = {
    # kind: (optimizer, lr, betas) -- the seed's Adam(2e-4) with torch's default betas for BCE GANs
    # (DCGAN practice and PyTorch-GAN use betas=(0.5, 0.999): pass betas to compare), RMSprop(5e-5) for
    # WGAN and Adam(1e-4, (0.0, 0.9)) for WGAN-GP as in their papers / PyTorch-GAN.
    "gan": ("adam", 2e-4, (0.9, 0.999)),
    "dcgan": ("adam", 2e-4, (0.9, 0.999)),
    "cgan": ("adam", 2e-4, (0.9, 0.999)),
    "wgan": ("rmsprop", 5e-5, None),
    "wgan_gp": ("adam", 1e-4, (0.0, 0.9)),
}


def make_gan(kind, image_shape, latent_dim=100, n_classes=10):
    """(generator, discriminator) for `kind`; image_shape is (H, W, C)."""
    if kind not in GAN_KINDS:
        raise ValueError(f"kind must be one of {GAN_KINDS}, got {kind!r}")
    h, w, c = image_shape
    if kind == "dcgan":
        if h != w:
            raise ValueError(f"DCGAN needs square images, got {h}x{w}")
        return DCGANGenerator(latent_dim, c, h), DCGANDiscriminator(c, h)
    if kind == "cgan":
        return (ConditionalGenerator(latent_dim, n_classes, (c, h, w)),
                ConditionalDiscriminator(n_classes, (c, h, w)))
    return Generator(latent_dim, h * w * c), Discriminator(h * w * c, sigmoid=kind == "gan")


def _optimizer(params, name, lr, betas):
    """Adam(lr, betas) or RMSprop(lr)."""
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=betas)


class GanSampler:
    """sample_fn(n, labels=None, seed=0) -> float32 [n, H, W, C] in [-1, 1] from a trained generator.

    Eval mode (BatchNorm running statistics), no grad, z from torch.Generator(seed). `labels` is used only
    by the CGAN (default: 0, 1, ..., n_classes-1 repeating); the other kinds ignore it.
    """

    def __init__(self, kind, generator, discriminator, image_shape, latent_dim, n_classes):
        self.kind, self.generator, self.discriminator = kind, generator, discriminator
        self.image_shape, self.latent_dim, self.n_classes = tuple(image_shape), latent_dim, n_classes

    @torch.no_grad()
    def __call__(self, n, labels=None, seed=0):
        self.generator.eval()
        z = torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        if self.kind == "cgan":
            labels = np.arange(n) % self.n_classes if labels is None else labels
            out = self.generator(z, torch.as_tensor(np.asarray(labels), dtype=torch.long))
        else:
            out = self.generator(z)
        return _to_nhwc(out, self.image_shape)


def _to_nhwc(out, image_shape):
    """Generator output (flat or NCHW tensor) -> float32 numpy NHWC."""
    h, w, c = image_shape
    if out.dim() == 2:
        return out.reshape(-1, h, w, c).numpy().astype(np.float32)
    return out.permute(0, 2, 3, 1).numpy().astype(np.float32)


def _bce_d_step(kind, g, d, opt_d, real, y, z, n_classes):
    """Seed's discriminator step: BCE(D(real), 1) + BCE(D(G(z).detach()), 0) (CGAN: random fake labels)."""
    ones, zeros = (torch.ones(len(real), 1, device=real.device),
                   torch.zeros(len(real), 1, device=real.device))
    if kind == "cgan":
        fake_y = torch.randint(0, n_classes, (len(real),), device=real.device)
        fake = g(z, fake_y).detach()
        loss = (F.binary_cross_entropy_with_logits(d(real, y), ones)
                + F.binary_cross_entropy_with_logits(d(fake, fake_y), zeros))
    else:
        loss = F.binary_cross_entropy(d(real), ones) + F.binary_cross_entropy(d(g(z).detach()), zeros)
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()


def _bce_g_step(kind, g, d, opt_g, z, n_classes):
    """Seed's generator step (non-saturating): BCE(D(G(z)), 1) on fresh noise."""
    ones = torch.ones(len(z), 1, device=z.device)
    if kind == "cgan":
        fake_y = torch.randint(0, n_classes, (len(z),), device=z.device)
        loss = F.binary_cross_entropy_with_logits(d(g(z, fake_y), fake_y), ones)
    else:
        loss = F.binary_cross_entropy(d(g(z)), ones)
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()


def _critic_step(kind, g, critic, opt_c, real, z, *, clip_value, gp_lambda):
    """One critic step: seed's wasserstein_loss with -1 (real) / +1 (fake), then clipping (WGAN) or GP."""
    fake = g(z).detach()
    ones = torch.ones(len(real), 1, device=real.device)
    loss = wasserstein_loss(critic(real), -ones) + wasserstein_loss(critic(fake), ones)
    if kind == "wgan_gp":
        loss = loss + gp_lambda * gradient_penalty(critic, real, fake)
    opt_c.zero_grad()
    loss.backward()
    opt_c.step()
    if kind == "wgan":
        clip_weights(critic, clip_value)


def _wgan_g_step(g, critic, opt_g, z):
    """Generator step of WGAN / WGAN-GP: minimise -critic(G(z))."""
    loss = wasserstein_loss(critic(g(z)), -torch.ones(len(z), 1, device=z.device))
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()


def gan_step(kind, x_m11, labels=None, *, batch_size=64, seed=0, latent_dim=100, lr=None, betas=None,
             n_classes=10, n_critic=5, clip_value=0.01, gp_lambda=10.0, spectral_norm=False, compile=False,
             device=None):
    """(generator, discriminator, step, images per step): step(i) is one generator step of the seed GAN `kind`
    on x_m11 (float32 [N, H, W, C] in [-1, 1]) with the discriminator/critic step(s) before it.

    Options as train_gan. compile: run the networks under torch.compile; for WGAN-GP the generator only, since
    AOTAutograd cannot differentiate the critic twice (its gradient penalty). device: where the networks,
    the data and the noise live (None: the CPU).
    """
    torch.manual_seed(seed)
    image_shape = x_m11.shape[1:]
    if kind == "cgan" and labels is None:
        raise ValueError("cgan needs labels")
    g, d = make_gan(kind, image_shape, latent_dim, n_classes)
    if spectral_norm:
        for name, module in list(d.named_modules()):
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.utils.parametrizations.spectral_norm(module)
    device = device or "cpu"
    g, d = g.to(device), d.to(device)
    opt_name, default_lr, default_betas = GAN_DEFAULTS[kind]
    lr, betas = lr or default_lr, betas or default_betas
    opt_g = _optimizer(g.parameters(), opt_name, lr, betas)
    opt_d = _optimizer(d.parameters(), opt_name, lr, betas)
    x = (_nchw(x_m11) if kind in ("dcgan", "cgan") else _flat(x_m11)).to(device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).to(device) if labels is not None else None
    batches = (idx.to(device) for idx in epoch_batches(len(x), batch_size, seed))
    wgan = kind in ("wgan", "wgan_gp")
    run_g = torch.compile(g) if compile else g
    run_d = torch.compile(d) if compile and kind != "wgan_gp" else d

    def z():
        return torch.randn(batch_size, latent_dim, device=device)

    def step(_):
        if wgan:
            for _ in range(n_critic):
                _critic_step(kind, run_g, run_d, opt_d, x[next(batches)], z(), clip_value=clip_value,
                             gp_lambda=gp_lambda)
            _wgan_g_step(run_g, run_d, opt_g, z())
        else:
            idx = next(batches)
            _bce_d_step(kind, run_g, run_d, opt_d, x[idx], y[idx] if y is not None else None, z(), n_classes)
            _bce_g_step(kind, run_g, run_d, opt_g, z(), n_classes)

    g.train()
    d.train()
    return g, d, step, batch_size * (n_critic if wgan else 1)


def train_gan(kind, x_m11, labels=None, *, steps, batch_size=64, seed=0, latent_dim=100, lr=None,
              betas=None, n_classes=10, n_critic=5, clip_value=0.01, gp_lambda=10.0, num_threads=None,
              warmup=20, spectral_norm=False):
    """Trains a seed GAN on x_m11 (float32 [N, H, W, C] in [-1, 1]); labels (int [N]) are needed for "cgan".

    Args:
      kind: "gan", "dcgan", "cgan" (BCE; D step then G step, as in the seed), "wgan" (RMSprop, clipping) or
        "wgan_gp" (Adam, gradient penalty); the WGANs take n_critic critic steps per generator step.
      steps: GENERATOR steps. Every discriminator/critic step draws a fresh real batch.
      lr, betas: None picks the per-kind default in GAN_DEFAULTS (betas are ignored by RMSprop).
      spectral_norm: wrap every Linear/Conv2d of the discriminator in torch's spectral_norm (one power
        iteration per forward pass), as gen_jax's discriminator.spectral_norm.
    Returns:
      (GanSampler, images/s) where images/s counts real images drawn per second (n_critic * batch_size per
      generator step for the WGANs, batch_size otherwise), excluding the first `warmup` generator steps.
    """
    set_threads(num_threads)
    g, d, step, images_per_step = gan_step(kind, x_m11, labels, batch_size=batch_size, seed=seed,
                                           latent_dim=latent_dim, lr=lr, betas=betas, n_classes=n_classes,
                                           n_critic=n_critic, clip_value=clip_value, gp_lambda=gp_lambda,
                                           spectral_norm=spectral_norm)
    ips = timed_loop(step, steps, images_per_step, warmup)
    g.eval()
    d.eval()
    return GanSampler(kind, g, d, x_m11.shape[1:], latent_dim, n_classes), ips


# ----------------------------------------------------------------------------------------------------------
# Command line: the MNIST VAE reference number
# ----------------------------------------------------------------------------------------------------------

def main(argv=None):
    """Trains the seed VAE on MNIST and prints held-out neg-ELBO (nats) and training images/s."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--data_dir", default=os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "shared", "data", "mnist"), help="MNIST IDX files (default ../shared/data/mnist)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent_dim", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_threads", type=int, default=None)
    args = p.parse_args(argv)
    train_x, _ = load_mnist(args.data_dir, "train")
    test_x, _ = load_mnist(args.data_dir, "test")
    model, ips = train_autoencoder("vae", train_x, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                   seed=args.seed, latent_dim=args.latent_dim, num_threads=args.num_threads)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} steps={args.steps}")
    print(f"test neg-ELBO {vae_neg_elbo(model, test_x):.2f} nats  train neg-ELBO "
          f"{vae_neg_elbo(model, train_x[:10000]):.2f}  {ips:.0f} images/s")


if __name__ == "__main__":
    main()
