"""InceptionV3 of the standard FID: the 2015-12-05 TF graph as ported by pytorch-fid, in Flax linen.

Nothing is downloaded. Download pytorch-fid's weights yourself (`pt_inception-2015-12-05-6726825d.pth`, from
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth)
and convert them once (reading a .pth needs torch: `pip install torch --index-url
https://download.pytorch.org/whl/cpu`):

    python -m gen_jax.inception_weights --torch_weights=pt_inception-2015-12-05-6726825d.pth \
        --out=inception_fid.npz

The .npz holds the variables keyed by '/'-joined paths ('params/Mixed_5b/branch1x1/conv/kernel',
'batch_stats/Mixed_5b/branch1x1/bn/mean', ...). Then score in Inception space:

    python -m gen_jax.evaluate --workdir=RUN --extractor=inception --inception_weights=inception_fid.npz

(or set GEN_JAX_INCEPTION_WEIGHTS to the .npz). In code: `convert(torch_path, out)`, `load_params(path)`,
`inception_features(variables, uint8_images)`, and `Extractor`, which `evaluation.sample_quality` scores with.
"""
from __future__ import annotations

import functools
import hashlib
import os
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gen_jax.data import map_padded_batches, quantize
from gen_jax.errors import UserError
from gen_jax.evaluation import sample_quality

WEIGHTS_ENV_VAR = "GEN_JAX_INCEPTION_WEIGHTS"
TORCH_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
MIN_INPUT_SIZE = 75  # smallest input that keeps every feature map non-empty


class MissingWeightsError(UserError, FileNotFoundError):
    """The FID Inception weights file is missing; the message says which file to make and how."""


# ----------------------------------------------------------------------------- network
class _ConvBN(nn.Module):
    """Conv without bias, BatchNorm on running statistics (eps 1e-3, as TF) and ReLU: torchvision's BasicConv2d."""

    features: int
    kernel: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = (self.kernel,) * 2 if isinstance(self.kernel, int) else self.kernel
        padding = (self.padding,) * 2 if isinstance(self.padding, int) else self.padding
        x = nn.Conv(self.features, kernel, strides=self.strides, padding=[(p, p) for p in padding],
                    use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average over unpadded pixels only: TF's SAME pool, torch's count_include_pad=False."""
    return nn.avg_pool(x, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2))


class _InceptionA(nn.Module):
    """Mixed_5b-d (pytorch-fid's FIDInceptionA): 1x1, 5x5, double 3x3 and avg-pool branches."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch5x5 = _ConvBN(48, 1, name="branch5x5_1")(x)
        branch3x3dbl = _ConvBN(64, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = _ConvBN(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        return jnp.concatenate([
            _ConvBN(64, 1, name="branch1x1")(x),
            _ConvBN(64, 5, padding=2, name="branch5x5_2")(branch5x5),
            _ConvBN(96, 3, padding=1, name="branch3x3dbl_3")(branch3x3dbl),
            _ConvBN(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3(x)),
        ], axis=-1)


class _InceptionB(nn.Module):
    """Mixed_6a: stride-2 reduction by a 3x3, a double 3x3 and a max pool."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch3x3dbl = _ConvBN(64, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = _ConvBN(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        return jnp.concatenate([
            _ConvBN(384, 3, strides=2, name="branch3x3")(x),
            _ConvBN(96, 3, strides=2, name="branch3x3dbl_3")(branch3x3dbl),
            _max_pool_3x3_stride2(x),
        ], axis=-1)


class _InceptionC(nn.Module):
    """Mixed_6b-e (FIDInceptionC): factorised 7x7 branches with `channels_7x7` inner channels."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        branch7x7 = _ConvBN(c7, 1, name="branch7x7_1")(x)
        branch7x7 = _ConvBN(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
        branch7x7dbl = _ConvBN(c7, 1, name="branch7x7dbl_1")(x)
        branch7x7dbl = _ConvBN(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(branch7x7dbl)
        branch7x7dbl = _ConvBN(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(branch7x7dbl)
        branch7x7dbl = _ConvBN(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(branch7x7dbl)
        return jnp.concatenate([
            _ConvBN(192, 1, name="branch1x1")(x),
            _ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7),
            _ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(branch7x7dbl),
            _ConvBN(192, 1, name="branch_pool")(_avg_pool_3x3(x)),
        ], axis=-1)


class _InceptionD(nn.Module):
    """Mixed_7a: stride-2 reduction by a 3x3, a 7x7-then-3x3 and a max pool."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch3x3 = _ConvBN(192, 1, name="branch3x3_1")(x)
        branch7x7x3 = _ConvBN(192, 1, name="branch7x7x3_1")(x)
        branch7x7x3 = _ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
        branch7x7x3 = _ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
        return jnp.concatenate([
            _ConvBN(320, 3, strides=2, name="branch3x3_2")(branch3x3),
            _ConvBN(192, 3, strides=2, name="branch7x7x3_4")(branch7x7x3),
            _max_pool_3x3_stride2(x),
        ], axis=-1)


class _InceptionE(nn.Module):
    """Mixed_7b (FIDInceptionE_1, pool='avg') and Mixed_7c (FIDInceptionE_2, pool='max', the TF graph's quirk)."""

    pool: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch3x3 = _ConvBN(384, 1, name="branch3x3_1")(x)
        branch3x3dbl = _ConvBN(448, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = _ConvBN(384, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        if self.pool == "avg":
            pooled = _avg_pool_3x3(x)
        else:
            pooled = nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1)))
        return jnp.concatenate([
            _ConvBN(320, 1, name="branch1x1")(x),
            _ConvBN(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
            _ConvBN(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
            _ConvBN(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(branch3x3dbl),
            _ConvBN(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(branch3x3dbl),
            _ConvBN(192, 1, name="branch_pool")(pooled),
        ], axis=-1)


class InceptionV3(nn.Module):
    """InceptionV3 (Szegedy et al. 2016) as in the FID graph: images [B, H, W, 3] in [-1, 1], H, W >= 75.

    Returns (pool3 [B, 2048], logits [B, 1008]). Submodule names follow torchvision (Conv2d_1a_3x3,
    Mixed_5b, ..., fc) so torch weights map by name.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = _ConvBN(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
        x = _ConvBN(32, 3, name="Conv2d_2a_3x3")(x)
        x = _ConvBN(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_stride2(x)
        x = _ConvBN(80, 1, name="Conv2d_3b_1x1")(x)
        x = _ConvBN(192, 3, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_stride2(x)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = _InceptionA(pool_features, name=name)(x)
        x = _InceptionB(name="Mixed_6a")(x)
        for name, channels_7x7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = _InceptionC(channels_7x7, name=name)(x)
        x = _InceptionD(name="Mixed_7a")(x)
        x = _InceptionE("avg", name="Mixed_7b")(x)
        x = _InceptionE("max", name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        return pool3, nn.Dense(1008, name="fc")(pool3)


# ----------------------------------------------------------------------------- inputs and features
def preprocess(images: jax.Array) -> jax.Array:
    """uint8 images [B, H, W], [B, H, W, 1] or [B, H, W, 3] -> float32 [B, 299, 299, 3] in [-1, 1].

    Resized on [0, 1] by bilinear interpolation with half-pixel centres and no antialiasing
    (`jax.image.resize(..., antialias=False)`), which is pytorch-fid's
    `F.interpolate(mode="bilinear", align_corners=False)`; then 2x - 1 and grey repeated to RGB, as there.
    """
    if images.dtype != jnp.uint8:
        raise UserError(f"Inception inputs must be uint8 images in [0, 255], got {images.dtype}")
    x = images[..., None] if images.ndim == 3 else images
    x = jax.image.resize(x.astype(jnp.float32) / 255.0, (x.shape[0], INPUT_SIZE, INPUT_SIZE, x.shape[3]),
                         method="bilinear", antialias=False)
    return jnp.broadcast_to(2.0 * x - 1.0, x.shape[:3] + (3,))


@jax.jit
def inception_features(variables: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """FID features of uint8 images (see `preprocess`).

    Args:
      variables: {'params', 'batch_stats'} from `load_params`.
      images: uint8 [B, H, W], [B, H, W, 1] or [B, H, W, 3].

    Returns:
      (pool3 [B, 2048] features for FID/KID/precision-recall, logits [B, 1008] whose softmax feeds IS).
    """
    return InceptionV3().apply(variables, preprocess(images))


# ----------------------------------------------------------------------------- weights
def variable_shapes() -> dict[str, tuple[int, ...]]:
    """Shape of every FID Inception variable under its `save_params` name (472 arrays), without allocating."""
    return dict(_variable_shapes())


@functools.cache
def _variable_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Cached: tracing the whole network's init is slow, and every load checks against it."""
    abstract = jax.eval_shape(InceptionV3().init, jax.random.key(0),
                              jax.ShapeDtypeStruct((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3), jnp.float32))
    return tuple((name, value.shape) for name, value in traverse_util.flatten_dict(abstract, sep="/").items())


def save_params(path: str, variables: dict) -> None:
    """Writes variables as an .npz of arrays keyed by '/'-joined paths, the format `load_params` reads."""
    flat = traverse_util.flatten_dict(variables, sep="/")
    np.savez(path, **{name: np.asarray(value) for name, value in flat.items()})


def _missing_weights_message(path: str | None) -> str:
    where = f"{path!r} does not exist" if path else f"no path was given and ${WEIGHTS_ENV_VAR} is not set"
    return (f"FID Inception weights not found: {where}. Download pytorch-fid's {TORCH_WEIGHTS_FILE}, convert it "
            f"once with `python -m gen_jax.inception_weights --torch_weights={TORCH_WEIGHTS_FILE} "
            f"--out=inception_fid.npz`, then pass --inception_weights=inception_fid.npz or set ${WEIGHTS_ENV_VAR}.")


def load_params(path: str | None = None) -> dict:
    """Reads FID Inception variables saved by `save_params`, checking every name and shape.

    Args:
      path: the .npz file; defaults to $GEN_JAX_INCEPTION_WEIGHTS.

    Returns:
      {'params', 'batch_stats'} for `inception_features`.

    Raises:
      MissingWeightsError (a FileNotFoundError) naming the file to make and how; UserError for a wrong layout.
    """
    path = path or os.environ.get(WEIGHTS_ENV_VAR)
    if not path or not os.path.isfile(path):
        raise MissingWeightsError(_missing_weights_message(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            flat = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, AttributeError, TypeError, zipfile.BadZipFile) as e:  # not an .npz of arrays
        raise UserError(f"{path} is not an .npz of arrays ({type(e).__name__}), so not the converted FID "
                        f"Inception: make it with `python -m gen_jax.inception_weights`") from None
    _check_layout(flat, source=path)
    return traverse_util.unflatten_dict({name: jnp.asarray(value) for name, value in flat.items()}, sep="/")


def _check_layout(flat: dict[str, np.ndarray], *, source: str) -> None:
    """Raises UserError unless `flat` has exactly the names and shapes of `variable_shapes()`."""
    got, expected = {name: value.shape for name, value in flat.items()}, variable_shapes()
    wrong = sorted(set(got) ^ set(expected)) + sorted(n for n in set(got) & set(expected) if got[n] != expected[n])
    if wrong:
        raise UserError(f"{source} does not hold the FID Inception: {len(wrong)} names missing, extra or "
                        f"mis-shaped, e.g. {wrong[:3]}")


# torch (module, leaf) -> (Flax collection, leaf, axis order taking the torch array to the Flax one)
_TORCH_LEAVES = {
    ("conv", "weight"): ("params", "kernel", (2, 3, 1, 0)),  # [O, I, kh, kw] -> [kh, kw, I, O]
    ("bn", "weight"): ("params", "scale", (0,)),
    ("bn", "bias"): ("params", "bias", (0,)),
    ("bn", "running_mean"): ("batch_stats", "mean", (0,)),
    ("bn", "running_var"): ("batch_stats", "var", (0,)),
    ("fc", "weight"): ("params", "kernel", (1, 0)),  # [1008, 2048] -> [2048, 1008]
    ("fc", "bias"): ("params", "bias", (0,)),
}


def params_from_torch_state_dict(state_dict: dict[str, np.ndarray]) -> dict:
    """Maps pytorch-fid's FID Inception state dict (torch names -> numpy arrays) onto `InceptionV3` variables.

    'Mixed_5b.branch1x1.conv.weight' -> params/Mixed_5b/branch1x1/conv/kernel (transposed to HWIO),
    '....bn.running_mean' -> batch_stats/.../bn/mean, and so on; 'num_batches_tracked' counters are dropped.

    Args:
      state_dict: torch parameter names to numpy arrays.

    Returns:
      {'params', 'batch_stats'} of float32 numpy arrays, ready for `save_params`.

    Raises:
      UserError for names or shapes that are not the FID Inception's (e.g. torchvision's ImageNet weights).
    """
    flat = {}
    for name, value in state_dict.items():
        *path, module, leaf = name.split(".")
        if leaf == "num_batches_tracked":
            continue
        if (module, leaf) not in _TORCH_LEAVES:
            raise UserError(f"unexpected parameter {name!r} in the torch state dict")
        collection, flax_leaf, axes = _TORCH_LEAVES[module, leaf]
        flat["/".join([collection, *path, module, flax_leaf])] = np.transpose(np.asarray(value, np.float32), axes)
    _check_layout(flat, source="the torch state dict")
    return traverse_util.unflatten_dict(flat, sep="/")


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """The state dict in `path` as numpy arrays: a torch .pth (read with torch, CPU only) or an .npz whose keys
    are the torch parameter names.

    Raises:
      UserError when the file is missing, or is a .pth and torch is not installed.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist (download pytorch-fid's {TORCH_WEIGHTS_FILE})")
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    try:
        import torch
    except ImportError:
        raise UserError(f"reading {path} needs torch: pip install torch --index-url "
                        "https://download.pytorch.org/whl/cpu (only for this one conversion)") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: value.numpy() for name, value in state.items()}


def convert(torch_weights: str, out: str) -> str:
    """Converts pytorch-fid's weights file (`read_torch_state_dict`) to the .npz `load_params` reads; returns out."""
    variables = params_from_torch_state_dict(read_torch_state_dict(torch_weights))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_params(out, variables)
    return out


class Extractor:
    """The FID Inception as a feature extractor with the domain classifier's interface (`name`,
    `features_and_probs`), so `evaluation.sample_quality` scores with it: pool3 features [N, 2048] for FID, KID
    and precision/recall, softmax over the 1008 logits for the Inception Score.

    The name holds a digest of the weights file, so cached reference statistics never mix weights.
    """

    num_classes = 1008

    def __init__(self, path: str | None = None):
        path = path or os.environ.get(WEIGHTS_ENV_VAR)
        self.variables = load_params(path)
        with open(path, "rb") as f:
            self.name = f"inception-fid:{hashlib.sha256(f.read()).hexdigest()[:12]}"
        self.path = os.path.abspath(path)

    def features_and_probs(self, images, *, batch_size: int = 50) -> tuple[jax.Array, jax.Array]:
        """(pool3 [N, 2048], softmax(logits) [N, 1008]) of uint8 images [N, H, W(, C)], in batches of
        `batch_size` (the last one zero-padded, so one compilation)."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise UserError(f"Inception inputs must be uint8 images in [0, 255], got {images.dtype}")

        def pool3_and_probs(chunk):
            pool3, logits = inception_features(self.variables, chunk)
            return pool3, jax.nn.softmax(logits, axis=-1)
        return map_padded_batches(pool3_and_probs, images, batch_size)

    def __repr__(self) -> str:
        return f"Extractor({self.name}, {self.path})"


def score(images, dataset, *, weights: str | None = None, split: str = "test", num_reference: int = 0,
          seed: int = 0, cache_dir: str | None = None, source: str = "", batch_size: int = 50) -> dict:
    """FID, KID, IS, precision/recall and density/coverage of `images` in the FID Inception's space, as the
    eval.json record `sample_quality.score` writes for the domain classifier.

    Args:
      images: [N, H, W, C] uint8 (float [0, 1] is quantised), any size: resized to 299x299, grey to RGB.
      dataset: the real images (`split`, its first `num_reference`; 0 = all) to compare with.
      weights: the .npz from `convert` (default: $GEN_JAX_INCEPTION_WEIGHTS).
      cache_dir: reference statistics cache (default: reference_stats/ next to the weights file).
    """
    extractor = Extractor(weights)
    images = np.asarray(images)
    images = images if images.dtype == np.uint8 else quantize(images)
    reference = sample_quality.reference_stats(
        extractor, dataset, split=split, num_images=num_reference,
        cache_dir=cache_dir or os.path.join(os.path.dirname(extractor.path), sample_quality.REFERENCE_CACHE))
    results = sample_quality.generative_metrics(images, None, extractor, reference, key=jax.random.key(seed),
                                                batch_size=batch_size)
    for name in ("classes_covered", "class_kl", "class_counts"):  # ImageNet classes say nothing about a domain
        results.pop(name, None)
    return {"samples": source, "extractor": extractor.name, "inception_weights": extractor.path,
            "num_samples": len(images),
            "reference": {"data": dataset.name, "split": split, "num_images": reference.num_images},
            "metrics": sample_quality.describe(results), "seed": seed}
