"""Sample-quality metrics as pure JAX functions on feature arrays: FID, KID, IS, precision/recall, density/coverage;
and two image-fidelity measures on pixels, PSNR and edge strength (denoising, super-resolution).

Features come from any embedding (e.g. `gen_jax.evaluation.inception`); rows are samples. Precision choices:
- FID statistics, matrix square roots and KID's kernel averages run in float64 inside a scoped
  `jax.enable_x64(True)`, so they keep double precision whether or not x64 is on globally. Inside a user's
  `jax.jit` with x64 off the inputs arrive as float32 and are promoted from there.
- `feature_stats` returns float64 arrays (stats are intermediates, as pytorch-fid stores them); FID and KID
  come back in JAX's default float dtype (float32 unless x64 is on).
- Nearest-neighbour metrics compare float32 squared distances, computed block by block (`block_size` query
  rows at a time) so 10k x 10k sets never hold the full distance matrix.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from gen_jax.errors import UserError

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_rows(x, minimum: int, what: str) -> None:
    if x.ndim != 2 or x.shape[0] < minimum:
        raise UserError(f"{what} must be [N, D] with N >= {minimum}, got shape {tuple(x.shape)}")


def _float32_rows(x, minimum: int, what: str) -> jax.Array:
    _check_rows(x, minimum, what)
    return jnp.asarray(x, jnp.float32)


def _to_default_float(x: jax.Array) -> jax.Array:
    """Casts a float64 result to JAX's default float dtype; call it outside the x64 scope."""
    return jnp.asarray(x, jax.dtypes.canonicalize_dtype(jnp.float64))


# ----------------------------------------------------------------------------- FID
def feature_stats(features: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and unbiased covariance of a feature set, in float64: the Gaussian that FID compares.

    Args:
      features: [N, D] array, N >= 2.

    Returns:
      (mu [D], sigma [D, D]), float64, sigma with ddof=1 as pytorch-fid's `np.cov`.
    """
    _check_rows(features, 2, "features")
    with jax.enable_x64(True):
        return _feature_stats64(jnp.asarray(features, jnp.float64))


@jax.jit
def _feature_stats64(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    mu = jnp.mean(x, axis=0)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)


def fid_from_stats(mu1: jax.Array, sigma1: jax.Array, mu2: jax.Array, sigma2: jax.Array) -> jax.Array:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), the FID of Heusel et al. 2017.

    ||mu1 - mu2||^2 + Tr S1 + Tr S2 - 2 Tr sqrt(S1 S2), where the last trace sums the square roots of the
    eigenvalues of the symmetric PSD sqrt(S1) S2 sqrt(S1) (same spectrum as S1 S2), clipped at 0: real and
    finite for rank-deficient covariances (fewer samples than dims, collapsed generators). Runs in float64.

    Args:
      mu1, mu2: [D] means.
      sigma1, sigma2: [D, D] covariances, e.g. from `feature_stats`.

    Returns:
      Scalar FID in the default float dtype; 0 for equal statistics up to round-off (which may be negative).
    """
    with jax.enable_x64(True):
        fid_value = _fid_from_stats64(*(jnp.asarray(a, jnp.float64) for a in (mu1, sigma1, mu2, sigma2)))
    return _to_default_float(fid_value)


def _psd_sqrt(sigma: jax.Array) -> jax.Array:
    """Symmetric square root [D, D] of a PSD matrix; round-off negative eigenvalues are clipped to 0."""
    eigvals, eigvecs = jnp.linalg.eigh(sigma)
    return (eigvecs * jnp.sqrt(jnp.maximum(eigvals, 0.0))) @ eigvecs.T


@jax.jit
def _fid_from_stats64(mu1, sigma1, mu2, sigma2) -> jax.Array:
    root1 = _psd_sqrt(sigma1)
    tr_covmean = jnp.sum(jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(root1 @ sigma2 @ root1), 0.0)))
    return jnp.sum((mu1 - mu2) ** 2) + jnp.trace(sigma1) + jnp.trace(sigma2) - 2.0 * tr_covmean


def fid(features_a: jax.Array, features_b: jax.Array) -> jax.Array:
    """Frechet Inception Distance (Heusel et al. 2017) between two feature sets [N, D] and [M, D].

    Returns:
      Scalar `fid_from_stats(*feature_stats(features_a), *feature_stats(features_b))`.
    """
    return fid_from_stats(*feature_stats(features_a), *feature_stats(features_b))


# ----------------------------------------------------------------------------- KID
def kid(features_a: jax.Array, features_b: jax.Array, *, num_subsets: int = 100, subset_size: int = 1000,
        key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3.

    Each of `num_subsets` draws takes m = min(subset_size, N, M) rows of each set without replacement; the
    estimate is unbiased, so it can be negative when the sets match. Gram matrices use
    float32 (HIGHEST matmul precision), the cubed kernel and its averages float64. Jittable with the sizes
    static (they fix the subset shapes).

    Args:
      features_a: [N, D] features.
      features_b: [M, D] features.
      num_subsets: number of subset pairs averaged.
      subset_size: rows per subset, capped at min(N, M); at least 2 rows are needed.
      key: PRNG key for the subset draws.

    Returns:
      (mean, std) of the per-subset MMD^2 (std with ddof=0, as torch-fidelity), default float dtype.
    """
    m = min(subset_size, features_a.shape[0], features_b.shape[0])
    if m < 2:
        raise UserError(f"kid needs subsets of >= 2 rows; min(subset_size, N, M) = {m}")
    with jax.enable_x64(True):
        mmd2 = _subset_mmd2(jnp.asarray(features_a, jnp.float32), jnp.asarray(features_b, jnp.float32),
                            jax.random.split(key, num_subsets), subset_size=m)
        mean, std = jnp.mean(mmd2), jnp.std(mmd2)
    return _to_default_float(mean), _to_default_float(std)


def _polynomial_kernel(x: jax.Array, y: jax.Array) -> jax.Array:
    """(x.y / D + 1)^3 for all row pairs [N, M]: float32 Gram, float64 cube (the cube amplifies round-off)."""
    gram = jnp.matmul(x, y.T, precision=_HIGHEST)
    return (gram.astype(jnp.float64) / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: jax.Array, y: jax.Array) -> jax.Array:
    """Unbiased MMD^2 between equal-size samples [m, D]: within-set means skip the diagonal."""
    m = x.shape[0]

    def off_diagonal_mean(k):
        return (jnp.sum(k) - jnp.trace(k)) / (m * (m - 1))

    return (off_diagonal_mean(_polynomial_kernel(x, x)) + off_diagonal_mean(_polynomial_kernel(y, y))
            - 2.0 * jnp.mean(_polynomial_kernel(x, y)))


@functools.partial(jax.jit, static_argnames="subset_size")
def _subset_mmd2(x: jax.Array, y: jax.Array, keys: jax.Array, *, subset_size: int) -> jax.Array:
    """MMD^2 [S] of one subset pair per key; sequential over keys so memory stays O(subset_size^2)."""

    def one(key):
        key_x, key_y = jax.random.split(key)
        x_rows = jax.random.choice(key_x, x.shape[0], (subset_size,), replace=False)
        y_rows = jax.random.choice(key_y, y.shape[0], (subset_size,), replace=False)
        return _unbiased_mmd2(x[x_rows], y[y_rows])

    return jax.lax.map(one, keys)


# ----------------------------------------------------------------------------- Inception Score
@functools.partial(jax.jit, static_argnames="num_splits")
def inception_score(probs: jax.Array, *, num_splits: int = 10, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) on each of `num_splits` splits.

    Rows are shuffled by `_order_free_shuffle`, so the score depends on the set of rows and the key, never
    on the input order. Split i holds shuffled rows [i N // S, (i + 1) N // S), as in the original code.

    Args:
      probs: [N, C] class probabilities p(y|x) (softmax outputs), N >= num_splits.
      num_splits: number of splits the score is computed on.
      key: PRNG key for the shuffle.

    Returns:
      (mean, std) of the per-split scores (std with ddof=0, as the original code); in [1, C].
    """
    _check_rows(probs, num_splits, "probs")
    probs = _order_free_shuffle(probs, key)
    n = probs.shape[0]
    bounds = [i * n // num_splits for i in range(num_splits + 1)]
    scores = jnp.stack([_split_score(probs[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])])
    return jnp.mean(scores), jnp.std(scores)


def _split_score(probs: jax.Array) -> jax.Array:
    """exp(mean KL(p(y|x) || p(y))) over one split [n, C]; xlogy makes 0 log 0 = 0."""
    marginal = jnp.mean(probs, axis=0)
    return jnp.exp(jnp.mean(jnp.sum(xlogy(probs, probs) - xlogy(probs, marginal), axis=1)))


def _order_free_shuffle(rows: jax.Array, key: jax.Array) -> jax.Array:
    """Random row order [N, C] that depends on the set of rows and `key` only, not on the input order.

    Rows are first sorted by a random projection (a canonical order; tied rows are identical), then permuted.
    """
    key_projection, key_permutation = jax.random.split(key)
    projection = jnp.sum(rows * jax.random.normal(key_projection, rows.shape[1:], rows.dtype), axis=1)
    canonical = rows[jnp.argsort(projection)]
    return canonical[jax.random.permutation(key_permutation, rows.shape[0])]


class ClassHistogram(NamedTuple):
    """Mode coverage of samples from their predicted classes."""

    counts: jax.Array  # [C] samples per predicted class
    num_covered: jax.Array  # scalar int: classes predicted more than min_share of a uniform share (0: at least once)
    kl_to_uniform: jax.Array  # KL(class frequencies || uniform): 0 when balanced, log C when one class


@functools.partial(jax.jit, static_argnames="num_classes")
def class_histogram(predictions: jax.Array, *, num_classes: int | None = None,
                    min_share: float = 0.0) -> ClassHistogram:
    """Modes covered and KL(class histogram || uniform), the mode-collapse measure of Metz et al. 2017.

    Args:
      predictions: [N, C] class probabilities or logits (their argmax is the class), or [N] integer labels.
      num_classes: C, needed for integer labels only; probabilities fix it by their last axis.
      min_share: a class counts as covered when it holds more than min_share * N / C samples (0: at least
        one). With a classifier's predictions, 0.1 keeps its few errors from counting as modes.

    Returns:
      A `ClassHistogram`.
    """
    if predictions.ndim == 2:
        labels, num_classes = jnp.argmax(predictions, axis=1), predictions.shape[1]
    elif num_classes is None:
        raise UserError("class_histogram needs num_classes for integer labels [N]")
    else:
        labels = predictions
    counts = jnp.bincount(labels, length=num_classes)
    freq = counts / labels.shape[0]
    covered = jnp.sum(counts > min_share * labels.shape[0] / num_classes)
    return ClassHistogram(counts, covered, jnp.sum(xlogy(freq, freq * num_classes)))


# ----------------------------------------------------------------------------- k-NN metrics
def _map_sq_distances(fn, queries: jax.Array, points: jax.Array, *, block_size: int) -> jax.Array:
    """fn(squared distances [M] from one query to all points), for each query [N, D], block_size at a time."""
    points_sq = jnp.sum(points**2, axis=1)

    def row(query):
        cross = jnp.dot(points, query, precision=_HIGHEST)
        return fn(jnp.maximum(jnp.sum(query**2) + points_sq - 2.0 * cross, 0.0))

    return jax.lax.map(row, queries, batch_size=block_size)


def _knn_sq_radii(x: jax.Array, *, k: int, block_size: int) -> jax.Array:
    """Squared distance [N] from each row of x [N, D] to its k-th nearest other row."""
    # The nearest row is the row itself (distance 0), so the k-th other one is the (k+1)-th smallest. It is
    # read with min() rather than [k]: XLA CPU turns top_k followed by a slice into a full sort.
    return _map_sq_distances(lambda d2: -jnp.min(jax.lax.top_k(-d2, k + 1)[0]), x, x, block_size=block_size)


def _fraction_in_any_ball(queries, centres, sq_radii, *, block_size: int) -> jax.Array:
    """Fraction of queries inside at least one closed ball (centres [M, D], squared radii [M])."""
    return jnp.mean(_map_sq_distances(lambda d2: jnp.any(d2 <= sq_radii), queries, centres,
                                      block_size=block_size))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def precision_recall(real_features: jax.Array, fake_features: jax.Array, *, k: int = 3,
                     block_size: int = 256) -> tuple[jax.Array, jax.Array]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) from k-NN balls in feature space.

    Precision (fidelity): fraction of fake samples inside the k-NN ball of at least one real sample.
    Recall (coverage): fraction of real samples inside the k-NN ball of at least one fake sample. A ball's
    radius is the distance from its centre to its k-th nearest neighbour in its own set, itself excluded;
    balls are closed (<=), as in the paper.

    Args:
      real_features: [N, D] features of real samples, N > k.
      fake_features: [M, D] features of generated samples, M > k.
      k: neighbourhood size of the balls.
      block_size: query rows per block of distances; memory is O(block_size * max(N, M)).

    Returns:
      (precision, recall), float32 scalars in [0, 1].
    """
    real = _float32_rows(real_features, k + 1, "real_features")
    fake = _float32_rows(fake_features, k + 1, "fake_features")
    real_radii = _knn_sq_radii(real, k=k, block_size=block_size)
    fake_radii = _knn_sq_radii(fake, k=k, block_size=block_size)
    return (_fraction_in_any_ball(fake, real, real_radii, block_size=block_size),
            _fraction_in_any_ball(real, fake, fake_radii, block_size=block_size))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def density_coverage(real_features: jax.Array, fake_features: jax.Array, *, k: int = 5,
                     block_size: int = 256) -> tuple[jax.Array, jax.Array]:
    """Density and coverage (Naeem et al. 2020), from k-NN balls around the real samples only.

    density = (1 / kM) sum_j sum_i 1[fake_j in ball(real_i)] (about 1 when fakes match reals, unbounded);
    coverage = (1 / N) sum_i 1[some fake_j in ball(real_i)]. Balls are closed, radii as in `precision_recall`.

    Args:
      real_features: [N, D] features of real samples, N > k.
      fake_features: [M, D] features of generated samples.
      k: neighbourhood size of the real balls.
      block_size: query rows per block of distances; memory is O(block_size * max(N, M)).

    Returns:
      (density, coverage), float32 scalars; coverage in [0, 1].
    """
    real = _float32_rows(real_features, k + 1, "real_features")
    fake = _float32_rows(fake_features, 1, "fake_features")
    real_radii = _knn_sq_radii(real, k=k, block_size=block_size)
    balls_hit = _map_sq_distances(lambda d2: jnp.sum(d2 <= real_radii), fake, real, block_size=block_size)
    nearest_fake = _map_sq_distances(jnp.min, real, fake, block_size=block_size)
    return jnp.sum(balls_hit) / (k * fake.shape[0]), jnp.mean(nearest_fake <= real_radii)


# ----------------------------------------------------------------------------- image fidelity
def psnr(predictions: jax.Array, targets: jax.Array, *, max_value: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB per image [B]: 10 log10(max^2 / MSE), MSE floored at 1e-10.

    The denoising figure of merit: PSNR(noisy, clean) before, PSNR(denoised, clean) after.
    """
    mse = jnp.mean(((predictions - targets) ** 2).reshape(predictions.shape[0], -1), axis=-1)
    return 10.0 * jnp.log10(max_value**2 / jnp.maximum(mse, 1e-10))


def edge_strength(images: jax.Array) -> jax.Array:
    """Mean absolute difference between neighbouring pixels (rows and columns) per image [B].

    How much edge an image has: an upscaler that averages the plausible answers scores below its targets, a
    sharp one near them (pix2pix's evaluation reports it for outputs, baseline and targets).
    """
    rows = jnp.abs(jnp.diff(images, axis=1)).reshape(images.shape[0], -1)
    cols = jnp.abs(jnp.diff(images, axis=2)).reshape(images.shape[0], -1)
    return (jnp.sum(rows, axis=-1) + jnp.sum(cols, axis=-1)) / (rows.shape[1] + cols.shape[1])
