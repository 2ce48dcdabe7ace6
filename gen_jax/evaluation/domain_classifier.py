"""Domain classifiers: the feature extractor for FID/KID/precision-recall "in the classifier's space".

A LeNet-style net (28x28 grey, also 8x8 digits) or a small ResNet (32x32 colour) is trained by gen_jax on a
data set's training split and saved in a folder: an orbax checkpoint of its parameters (`gen_jax.checkpoint`)
plus `classifier.json`, which says how to rebuild it (architecture, options, input shape, classes, data,
test accuracy). Its penultimate layer (post-ReLU) gives the features, its softmax the class probabilities
(classifier Inception Score, class histogram). For MNIST-like data this is the advised extractor; the FID
Inception (`evaluation.inception`) is for natural images.

Every number computed with a classifier names it: `Classifier.name` is "ARCH:HASH", the hash covering the
architecture and every parameter, so a retrained classifier never shares cached statistics with the old one.
`python -m gen_jax.classifier --data=idx:../shared/data/mnist --workdir=runs/lenet_mnist` trains and saves one.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from gen_jax import data, files
from gen_jax.checkpoint import Checkpointer
from gen_jax.errors import UserError

SPEC_FILE = "classifier.json"
CHECKPOINT_DIR = "checkpoint"


# ----------------------------------------------------------------------------- networks
class LeNet(nn.Module):
    """LeNet-style net: [5x5 conv + ReLU + 2x2 max-pool] per width, a ReLU feature layer, a linear head.

    padding 'VALID' is LeNet-5's layout for 28x28 (28 -> 24 -> 12 -> 8 -> 4); 'SAME' keeps small inputs such
    as 8x8 digits from vanishing. Inputs [B, H, W, C] in [0, 1]; returns (features [B, feature_dim], logits).
    """

    num_classes: int
    widths: Sequence[int] = (32, 64)
    feature_dim: int = 128
    dropout: float = 0.25
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        x = x * 2.0 - 1.0
        for width in self.widths:
            x = nn.max_pool(nn.relu(nn.Conv(width, (5, 5), padding=self.padding)(x)), (2, 2), strides=(2, 2))
        features = nn.relu(nn.Dense(self.feature_dim)(x.reshape(x.shape[0], -1)))
        logits = nn.Dense(self.num_classes)(nn.Dropout(self.dropout, deterministic=not train)(features))
        return features, logits


class _ResidualBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016) with GroupNorm, so the net has no batch statistics."""

    width: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        norm = lambda: nn.GroupNorm(num_groups=min(8, self.width))
        h = nn.relu(norm()(x))
        shortcut = x if self.strides == 1 and x.shape[-1] == self.width else \
            nn.Conv(self.width, (1, 1), strides=self.strides, use_bias=False)(h)
        h = nn.Conv(self.width, (3, 3), strides=self.strides, padding="SAME", use_bias=False)(h)
        h = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False)(nn.relu(norm()(h)))
        return shortcut + h


class SmallResNet(nn.Module):
    """A small ResNet for 32x32 colour: a 3x3 stem, `blocks` residual blocks per width (stride 2 from the
    second width on), global average pooling into a ReLU feature layer, a linear head.

    Inputs [B, H, W, C] in [0, 1]; returns (features [B, feature_dim], logits).
    """

    num_classes: int
    widths: Sequence[int] = (32, 64, 128)
    blocks: int = 1
    feature_dim: int = 128
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        x = nn.Conv(self.widths[0], (3, 3), padding="SAME", use_bias=False)(x * 2.0 - 1.0)
        for stage, width in enumerate(self.widths):
            for block in range(self.blocks):
                x = _ResidualBlock(width, strides=2 if stage > 0 and block == 0 else 1)(x)
        x = nn.relu(nn.GroupNorm(num_groups=min(8, self.widths[-1]))(x)).mean(axis=(1, 2))
        features = nn.relu(nn.Dense(self.feature_dim)(x))
        logits = nn.Dense(self.num_classes)(nn.Dropout(self.dropout, deterministic=not train)(features))
        return features, logits


ARCHITECTURES = {"lenet": LeNet, "resnet": SmallResNet}


def default_arch(image_shape: Sequence[int]) -> str:
    """'lenet' for grey images, 'resnet' for colour."""
    return "lenet" if image_shape[-1] == 1 else "resnet"


def default_options(arch: str, image_shape: Sequence[int]) -> dict:
    """Architecture options that fit the input size (LeNet: VALID convolutions from 28x28 up)."""
    if arch == "lenet":
        return {"padding": "VALID" if min(image_shape[:2]) >= 28 else "SAME"}
    return {}


def build_module(arch: str, num_classes: int, options: dict | None = None) -> nn.Module:
    """The Flax module of architecture `arch` ('lenet' | 'resnet') with `options` (its fields)."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown classifier architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in (options or {}).items()}
    try:
        return ARCHITECTURES[arch](num_classes=num_classes, **options)
    except TypeError as e:
        raise UserError(f"bad options for classifier {arch!r}: {e}") from None


# ----------------------------------------------------------------------------- a trained classifier
def _to_unit(images: jax.Array) -> jax.Array:
    """uint8 0..255 or float [0, 1] images -> float32 [0, 1]."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def _forward(module: nn.Module, params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    features, logits = module.apply({"params": params}, _to_unit(images))
    return features, jax.nn.softmax(logits)


def fingerprint(spec: dict, params) -> str:
    """12 hex digits of SHA-256 over the architecture spec and every parameter's bytes, in tree order."""
    digest = hashlib.sha256(json.dumps({k: spec[k] for k in ("arch", "options", "image_shape", "num_classes")},
                                       sort_keys=True).encode())
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]:
        leaf = np.ascontiguousarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode() + str(leaf.dtype).encode() + leaf.tobytes())
    return digest.hexdigest()[:12]


class Classifier:
    """A trained classifier: `features_and_probs(images)` and the extractor `name` ("lenet:1a2b3c4d5e6f").

    spec: the contents of classifier.json (arch, options, image_shape, num_classes, data, test_accuracy, ...).
    """

    def __init__(self, spec: dict, params):
        self.spec = dict(spec)
        self.module = build_module(spec["arch"], spec["num_classes"], spec["options"])
        self.params = params
        self.name = f"{spec['arch']}:{fingerprint(spec, params)}"
        self._apply = jax.jit(functools.partial(_forward, self.module))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.spec["image_shape"])

    @property
    def num_classes(self) -> int:
        return int(self.spec["num_classes"])

    def features_and_probs(self, images, *, batch_size: int = 500) -> tuple[jax.Array, jax.Array]:
        """See the module-level `features_and_probs`."""
        return features_and_probs(self, images, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"Classifier({self.name}, input {self.image_shape}, {self.num_classes} classes)"


def check_images(images, image_shape: Sequence[int], what: str = "images") -> np.ndarray:
    """`images` as an array [N, H, W, C] of the classifier's input shape ([N, H, W] is taken as grey), uint8
    or float in [0, 1]; anything else is a UserError saying what was expected."""
    images = np.asarray(images) if not isinstance(images, jax.Array) else images
    if images.ndim == 3 and image_shape[-1] == 1:
        images = images[..., None]
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise UserError(f"{what} must be [N, {', '.join(map(str, image_shape))}] to match the classifier's input, "
                        f"got shape {tuple(images.shape)}")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise UserError(f"{what} must be uint8 (0..255) or float in [0, 1], got dtype {images.dtype}")
    return images


def features_and_probs(classifier: Classifier, images, *, batch_size: int = 500) -> tuple[jax.Array, jax.Array]:
    """Penultimate features and softmax probabilities of `images`, in jitted batches.

    Args:
      classifier: a `Classifier`.
      images: [N, H, W, C] (or [N, H, W] grey) of the classifier's input shape: uint8 0..255 or float [0, 1].
      batch_size: images per compiled call; the last partial batch is zero-padded to it (one compilation)
        and its padding rows dropped.

    Returns:
      (features float32 [N, feature_dim], probs float32 [N, num_classes]); a pure function of the inputs.
    """
    images = check_images(images, classifier.image_shape)
    return data.map_padded_batches(lambda chunk: classifier._apply(classifier.params, chunk), images, batch_size)


def accuracy(classifier: Classifier, images, labels, *, batch_size: int = 500) -> float:
    """Fraction of `images` whose argmax class is `labels`."""
    _, probs = features_and_probs(classifier, images, batch_size=batch_size)
    return float(np.mean(np.asarray(jnp.argmax(probs, axis=1)) == np.asarray(labels)))


# ----------------------------------------------------------------------------- saving and loading
def save(classifier: Classifier, directory: str) -> None:
    """Writes `directory`/checkpoint (orbax) and `directory`/classifier.json (how to rebuild it)."""
    os.makedirs(directory, exist_ok=True)
    checkpointer = Checkpointer(os.path.join(directory, CHECKPOINT_DIR), keep=1)
    step = int(classifier.spec.get("train", {}).get("steps", 0))
    checkpointer.save(step, classifier.params)
    checkpointer.close()
    spec = {**classifier.spec, "extractor": classifier.name, "checkpoint_step": step}
    files.write_json(os.path.join(directory, SPEC_FILE), spec)


def load(directory: str) -> Classifier:
    """The classifier saved in `directory` by `save` (or `python -m gen_jax.classifier`)."""
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.exists(path):
        raise UserError(f"no classifier in {directory} (missing {SPEC_FILE}): train one with "
                        f"`python -m gen_jax.classifier --data=SOURCE --workdir={directory}`")
    try:
        with open(path) as f:
            spec = json.load(f)
        arch, num_classes, options, image_shape = (spec[k] for k in ("arch", "num_classes", "options",
                                                                     "image_shape"))
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path} is unreadable or incomplete ({type(e).__name__}: {e}): retrain the classifier with "
                        f"`python -m gen_jax.classifier --data=SOURCE --workdir={directory}`") from None
    module = build_module(arch, num_classes, options)
    template = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *image_shape)))["params"])
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
    checkpointer = Checkpointer(os.path.join(directory, CHECKPOINT_DIR), keep=1)
    if checkpointer.latest_step() is None:
        raise UserError(f"classifier {directory} has {SPEC_FILE} but no checkpoint in {directory}/{CHECKPOINT_DIR}")
    params = checkpointer.restore(template)
    checkpointer.close()
    return Classifier(spec, params)


# ----------------------------------------------------------------------------- training
def _train_step(module, tx, params, opt_state, train_images, train_labels, idx, key):
    images, labels = train_images[idx], train_labels[idx]  # gathered on the device

    def loss_fn(p):
        _, logits = module.apply({"params": p}, images, train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def train(dataset, *, arch: str | None = None, options: dict | None = None, epochs: float = 3.0,
          batch_size: int = 128, learning_rate: float = 2e-3, seed: int = 0, progress: bool = True) -> Classifier:
    """Trains a classifier on `dataset`'s training split (Adam, cosine-decayed learning rate, dropout).

    Args:
      dataset: a `gen_jax.data.Dataset`.
      arch: 'lenet' | 'resnet' (default: lenet for grey, resnet for colour).
      options: the architecture's fields (widths, feature_dim, dropout, ...); defaults otherwise.
      epochs: passes over the training split (fractional allowed); batches as `gen_jax.data.batch_indices`.
      batch_size, learning_rate, seed: the usual.
      progress: show a progress bar (loss every 50 steps).

    Returns:
      The `Classifier`, its spec holding the data, training settings and test accuracy.
    """
    arch = arch or default_arch(dataset.image_shape)
    options = {**default_options(arch, dataset.image_shape), **(options or {})}
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    module = build_module(arch, dataset.num_classes, options)
    num_train = len(dataset.train_images)
    batch_size = data.check_batching(num_train, batch_size, 1)
    steps = max(1, int(round(epochs * (num_train // batch_size))))
    init_key, dropout_key = jax.random.split(jax.random.key(seed))
    params = jax.jit(module.init)(init_key, jnp.zeros((1, *dataset.image_shape)))["params"]
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    opt_state = tx.init(params)
    step_fn = jax.jit(functools.partial(_train_step, module, tx), donate_argnums=(0, 1))
    images = jnp.asarray(dataset.train_images)
    labels = jnp.asarray(dataset.train_labels)
    indices = data.batch_indices(seed, 0, steps, num_examples=num_train, batch_size=batch_size)
    start = time.perf_counter()
    with tqdm(total=steps, disable=not progress, desc=f"classifier ({arch})", dynamic_ncols=True) as bar:
        for step in range(steps):
            params, opt_state, loss = step_fn(params, opt_state, images, labels, indices[step],
                                              jax.random.fold_in(dropout_key, step))
            if (step + 1) % 50 == 0 or step + 1 == steps:
                bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)  # host sync at display steps only
                bar.update(step + 1 - bar.n)
    seconds = time.perf_counter() - start
    spec = {"format": 1, "arch": arch, "options": options, "image_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes, "data": dataset.name,
            "train": {"steps": steps, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                      "seed": seed, "seconds": round(seconds, 1)}}
    classifier = Classifier(spec, jax.device_get(params))
    test_accuracy = accuracy(classifier, dataset.test_images, dataset.test_labels)
    classifier.spec.update(test_accuracy=test_accuracy, num_test_images=len(dataset.test_images))
    return classifier
