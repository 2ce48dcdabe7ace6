"""Pseudo-classes without labels: k-means clusters of the training images' pixels, for a GAN conditioned on
its own clusters (a self-conditioned GAN, after Liu et al. 2020 and Sage et al. 2018, with the clusters fixed
before training). The generator stays unconditional to the outside: it samples a cluster by its share of the
training set, then an image of that cluster.
"""
from __future__ import annotations

import dataclasses

import numpy as np

FIT_SUBSET = 20_000  # images the centres are fitted on (all of them when fewer)
CHUNK = 5_000        # images assigned at a time


@dataclasses.dataclass(frozen=True)
class Clusters:
    """k-means centres of flattened images and the training set's cluster of each image."""

    centres: np.ndarray       # [k, H * W * C]
    train_labels: np.ndarray  # int32 [N]

    @property
    def num(self) -> int:
        return len(self.centres)

    @property
    def shares(self) -> np.ndarray:
        """Each cluster's share of the training images, float64 [k] summing to 1."""
        return np.bincount(self.train_labels, minlength=self.num) / len(self.train_labels)

    def assign(self, images) -> np.ndarray:
        """The nearest centre of each image (int32 [N]); `images` may be an array or `LazyImages`."""
        out = []
        for start in range(0, len(images), CHUNK):
            flat = np.asarray(images[start:start + CHUNK], np.float32).reshape(-1, self.centres.shape[1])
            dist = (flat**2).sum(1, keepdims=True) - 2 * flat @ self.centres.T + (self.centres**2).sum(1)
            out.append(np.argmin(dist, axis=1))
        return np.concatenate(out).astype(np.int32)

    def quota_labels(self, num: int) -> np.ndarray:
        """`num` cluster ids in proportion to the shares, deterministically (stratified quantiles), sorted."""
        cumulative = np.cumsum(self.shares)
        return np.minimum(np.searchsorted(cumulative, (np.arange(num) + 0.5) / num), self.num - 1).astype(np.int32)


def fit(images, num_clusters: int, *, seed: int) -> Clusters:
    """k-means (scikit-learn, k-means++ starts) on a seeded subset of `images` [N, H, W, C], then every
    training image assigned to its nearest centre. Deterministic given the images and the seed."""
    from sklearn.cluster import KMeans
    if num_clusters < 2:
        raise ValueError(f"need at least 2 clusters, got {num_clusters}")
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(len(images), min(FIT_SUBSET, len(images)), replace=False))
    flat = np.asarray(images[subset], np.float32).reshape(len(subset), -1)
    centres = KMeans(num_clusters, n_init=1, random_state=seed).fit(flat).cluster_centers_.astype(np.float32)
    clusters = Clusters(centres, np.zeros(0, np.int32))
    return dataclasses.replace(clusters, train_labels=clusters.assign(images))
