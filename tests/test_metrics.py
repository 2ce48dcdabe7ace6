"""Metrics against float64 NumPy/SciPy references written as plain loops, plus the properties that guard usage."""
import functools

import jax
import numpy as np
import pytest
import scipy.linalg

from gen_jax.evaluation import metrics
from gen_jax.errors import UserError


def _rng(seed):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- references
def _fid_reference_sqrtm(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _fid_reference_svd(a, b):
    """FID of two sample sets via Tr sqrt(S1 S2) = nuclear norm of A_c B_c^T / sqrt((n-1)(m-1)), any rank."""
    a_c, b_c = a - a.mean(0), b - b.mean(0)
    tr_covmean = np.linalg.svd(a_c @ b_c.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean


def _poly_kernel(x, y):
    return (x @ y / len(x) + 1) ** 3


def _mmd2_reference(a, b):
    n, m = len(a), len(b)
    k_aa = sum(_poly_kernel(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    k_bb = sum(_poly_kernel(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    k_ab = sum(_poly_kernel(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return k_aa + k_bb - 2 * k_ab


def _is_reference(probs, num_splits):
    n = len(probs)
    scores = []
    for s in range(num_splits):
        part = probs[s * n // num_splits:(s + 1) * n // num_splits]
        marginal = part.mean(0)
        kl = [sum(p[c] * np.log(p[c] / marginal[c]) for c in range(len(p)) if p[c] > 0) for p in part]
        scores.append(np.exp(np.mean(kl)))
    return np.mean(scores), np.std(scores)


def _knn_radius(x, i, k):
    return sorted(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i)[k - 1]


def _in_ball(point, centre, radius):
    return np.linalg.norm(point - centre) <= radius


def _pr_reference(real, fake, k):
    real_r = [_knn_radius(real, i, k) for i in range(len(real))]
    fake_r = [_knn_radius(fake, j, k) for j in range(len(fake))]
    precision = np.mean([any(_in_ball(f, r, rr) for r, rr in zip(real, real_r)) for f in fake])
    recall = np.mean([any(_in_ball(r, f, fr) for f, fr in zip(fake, fake_r)) for r in real])
    return precision, recall


def _dc_reference(real, fake, k):
    real_r = [_knn_radius(real, i, k) for i in range(len(real))]
    density = sum(_in_ball(f, r, rr) for f in fake for r, rr in zip(real, real_r)) / (k * len(fake))
    coverage = np.mean([any(_in_ball(f, r, rr) for f in fake) for r, rr in zip(real, real_r)])
    return density, coverage


# ----------------------------------------------------------------------------- FID
@pytest.mark.parametrize("seed", [0, 1])
def test_fid_from_stats_matches_scipy_sqrtm(seed):
    rng, d = _rng(seed), 24
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a1, a2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a1 @ a1.T / d + 0.1 * np.eye(d), a2 @ a2.T / d + 0.1 * np.eye(d)
    got = metrics.fid_from_stats(mu1, s1, mu2, s2)
    np.testing.assert_allclose(got, _fid_reference_sqrtm(mu1, s1, mu2, s2), rtol=1e-6)


def test_fid_of_features_matches_scipy_and_jit():
    rng = _rng(2)
    a = rng.normal(size=(300, 16)).astype(np.float32)
    b = (rng.normal(size=(200, 16)) * 1.3 + 0.2).astype(np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = _fid_reference_sqrtm(a64.mean(0), np.cov(a64, rowvar=False), b64.mean(0), np.cov(b64, rowvar=False))
    np.testing.assert_allclose(metrics.fid(a, b), want, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(metrics.fid)(a, b), want, rtol=1e-6)


def test_feature_stats_keep_float64_without_global_x64():
    x = 1e4 + _rng(3).normal(size=(50, 3)) * 1e-3  # float32 would round the offset and lose the spread
    with jax.enable_x64(False):
        mu, sigma = metrics.feature_stats(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-8, atol=1e-14)


def test_fid_rank_deficient_matches_svd_reference():
    rng = _rng(4)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 0.5  # fewer samples than dimensions
    got = metrics.fid(a, b)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, _fid_reference_svd(a, b), rtol=1e-5)


def test_fid_closed_forms_on_degenerate_sets():
    rng = _rng(5)
    a = rng.normal(size=(10, 32))  # rank 9 covariance in 32 dims
    shift = rng.normal(size=32)
    c1, c2 = rng.normal(size=32), rng.normal(size=32)
    collapsed1, collapsed2 = np.tile(c1, (20, 1)), np.tile(c2, (15, 1))  # all samples identical: sigma = 0
    scale = np.trace(np.cov(a, rowvar=False))
    np.testing.assert_allclose(metrics.fid(a, a), 0.0, atol=1e-5 * scale)
    np.testing.assert_allclose(metrics.fid(a, a + shift), np.sum(shift**2), rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(metrics.fid(a, collapsed1), np.sum((a.mean(0) - c1) ** 2) + scale, rtol=1e-6)
    np.testing.assert_allclose(metrics.fid(collapsed1, collapsed2), np.sum((c1 - c2) ** 2), rtol=1e-6)


# ----------------------------------------------------------------------------- KID
def test_kid_on_whole_sets_matches_double_loop():
    rng = _rng(6)
    a, b = rng.normal(size=(20, 5)), rng.normal(size=(20, 5)) * 1.2 + 0.3
    # subset_size >= N: every subset is a permutation of the whole set, which leaves MMD^2 unchanged.
    mean, std = metrics.kid(a, b, num_subsets=4, subset_size=1000, key=jax.random.key(0))
    np.testing.assert_allclose(mean, _mmd2_reference(a, b), rtol=1e-5)
    np.testing.assert_allclose(std, 0.0, atol=1e-6 * abs(float(mean)))


def test_kid_subsets_are_unbiased_without_replacement():
    rng = _rng(7)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(40, 4)) + 0.2
    # The mean over random subsets drawn without replacement equals the whole-set U-statistic in expectation.
    kid = jax.jit(functools.partial(metrics.kid, num_subsets=500, subset_size=8))
    mean, std = kid(a, b, key=jax.random.key(1))
    np.testing.assert_allclose(mean, _mmd2_reference(a, b), atol=5 * float(std) / np.sqrt(500))
    assert float(kid(a, b, key=jax.random.key(1))[0]) == float(mean)
    assert float(kid(a, b, key=jax.random.key(2))[0]) != float(mean)


# ----------------------------------------------------------------------------- Inception Score
def _random_probs(rng, n, c):
    logits = rng.normal(size=(n, c)) * 2
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_inception_score_matches_double_loop():
    probs = _random_probs(_rng(8), 31, 7).astype(np.float32)  # 31 rows: uneven splits
    key = jax.random.key(3)
    shuffled = np.asarray(jax.jit(metrics._order_free_shuffle)(probs, key), np.float64)
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, probs.astype(np.float64)))  # whole rows only move
    mean, std = metrics.inception_score(probs, num_splits=3, key=key)
    want_mean, want_std = _is_reference(shuffled, 3)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5)
    np.testing.assert_allclose(std, want_std, rtol=1e-4, atol=1e-6)


def test_inception_score_ignores_input_order():
    probs = _random_probs(_rng(9), 200, 10).astype(np.float32)
    key = jax.random.key(4)
    want = metrics.inception_score(probs, num_splits=5, key=key)
    for reordered in (probs[_rng(10).permutation(200)], probs[np.argsort(probs[:, 0])]):
        np.testing.assert_array_equal(metrics.inception_score(reordered, num_splits=5, key=key), want)
    assert float(metrics.inception_score(probs, num_splits=5, key=jax.random.key(5))[0]) != float(want[0])


@pytest.mark.slow
def test_inception_score_of_confident_predictions():
    num_classes = 10
    uniform = np.eye(num_classes, dtype=np.float32)[np.arange(1000) % num_classes]
    mean, std = metrics.inception_score(uniform, num_splits=1, key=jax.random.key(0))
    np.testing.assert_allclose((mean, std), (num_classes, 0.0), rtol=1e-5)
    mean, _ = metrics.inception_score(uniform, num_splits=10, key=jax.random.key(0))
    assert 0.9 * num_classes < float(mean) <= num_classes * (1 + 1e-5)  # splits are not exactly balanced
    collapsed = np.eye(num_classes, dtype=np.float32)[np.zeros(1000, int)]
    np.testing.assert_allclose(metrics.inception_score(collapsed, num_splits=10, key=jax.random.key(0))[0], 1.0)


def test_class_histogram():
    labels = np.array([0, 0, 0, 2, 2, 7])
    probs = np.eye(10, dtype=np.float32)[labels] * 0.9 + 0.01
    freq = np.array([3, 2, 1]) / 6
    want_kl = np.sum(freq * np.log(freq * 10))
    for hist in (metrics.class_histogram(probs), metrics.class_histogram(labels, num_classes=10)):
        np.testing.assert_array_equal(hist.counts, [3, 0, 2, 0, 0, 0, 0, 1, 0, 0])
        assert int(hist.num_covered) == 3
        np.testing.assert_allclose(hist.kl_to_uniform, want_kl, rtol=1e-6)
    np.testing.assert_allclose(metrics.class_histogram(np.arange(20) % 10, num_classes=10).kl_to_uniform, 0.0,
                               atol=1e-7)
    np.testing.assert_allclose(metrics.class_histogram(np.zeros(5, int), num_classes=10).kl_to_uniform,
                               np.log(10), rtol=1e-6)
    with pytest.raises(UserError, match="num_classes"):
        metrics.class_histogram(labels)
    # min_share: a class needs more than min_share * N / C samples (here 0.1 * 1000 / 10 = 10) to count
    stray = np.concatenate([np.repeat([0, 1, 2, 3, 4], 198), [5, 6, 7, 8, 9] * 2])
    assert int(metrics.class_histogram(stray, num_classes=10).num_covered) == 10
    assert int(metrics.class_histogram(stray, num_classes=10, min_share=0.1).num_covered) == 5


# ----------------------------------------------------------------------------- k-NN metrics
@pytest.mark.parametrize("block_size", [7, 256])
def test_precision_recall_and_density_coverage_match_double_loops(block_size):
    rng = _rng(11)
    real, fake = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) * 1.3 + 0.4
    precision, recall = metrics.precision_recall(real, fake, k=3, block_size=block_size)
    density, coverage = metrics.density_coverage(real, fake, k=5, block_size=block_size)
    np.testing.assert_allclose((precision, recall), _pr_reference(real, fake, 3), atol=1e-7)
    np.testing.assert_allclose((density, coverage), _dc_reference(real, fake, 5), atol=1e-6)
    assert 0.0 < float(recall) < 1.0 and 0.0 < float(coverage) < 1.0  # the references are not trivial


def test_knn_metrics_under_user_jit():
    rng = _rng(12)
    real, fake = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) + 0.3
    both = jax.jit(lambda r, f: (metrics.precision_recall(r, f, k=2), metrics.density_coverage(r, f, k=2)))
    np.testing.assert_allclose(both(real, fake), (_pr_reference(real, fake, 2), _dc_reference(real, fake, 2)),
                               atol=1e-6)


def test_mode_collapse_keeps_precision_and_loses_recall():
    rng = _rng(13)
    centres = rng.normal(size=(10, 4)) * 20  # ten well separated clusters

    def sample(clusters, n):
        return centres[np.resize(clusters, n)] + rng.normal(size=(n, 4))

    real = sample(np.arange(10), 400)
    collapsed = sample(np.arange(5), 400)  # only half of the modes
    full = sample(np.arange(10), 400)
    precision, recall = metrics.precision_recall(real, collapsed)
    _, coverage = metrics.density_coverage(real, collapsed)
    assert float(precision) > 0.8 and float(recall) < 0.55 and float(coverage) < 0.55
    precision, recall = metrics.precision_recall(real, full)
    _, coverage = metrics.density_coverage(real, full)
    assert float(precision) > 0.8 and float(recall) > 0.8 and float(coverage) > 0.9
    swapped_precision, swapped_recall = metrics.precision_recall(collapsed, real)  # arguments the wrong way round
    assert float(swapped_precision) < 0.55 and float(swapped_recall) > 0.8


def test_too_few_samples_raise():
    x = np.zeros((3, 4))
    for call in (lambda: metrics.precision_recall(x, x, k=3), lambda: metrics.density_coverage(x, x, k=3),
                 lambda: metrics.feature_stats(x[:1]), lambda: metrics.kid(x[:1], x, key=jax.random.key(0))):
        with pytest.raises(UserError, match="N >= |>= 2 rows"):
            call()
