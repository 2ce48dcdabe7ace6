"""k-means pseudo-classes (`data.clusters`) and the GAN conditioned on them (`gan.clusters`): no labels used,
unconditional to the outside."""
import os

import jax
import numpy as np
import pytest

from gen_jax import config as config_lib
from gen_jax import data
from gen_jax.errors import ConfigError
from gen_jax.training import tasks
from gen_jax.training.loop import train
from gen_jax.training.runs import restore_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blobs(sizes, seed=0):
    """Images [N, 4, 4, 1] in three far-apart groups of the given sizes, and each image's group."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    centres = np.eye(len(sizes), 16)[:, :16] * 0.9
    images = centres[groups] + rng.normal(0, 0.02, (len(groups), 16))
    order = rng.permutation(len(groups))
    return images[order].reshape(-1, 4, 4, 1).astype(np.float32), groups[order]


def test_clusters_recover_separated_groups_and_their_shares():
    images, groups = blobs([500, 300, 200])
    clusters = data.clusters.fit(images, 3, seed=0)
    # the same partition as the groups, up to renaming
    mapping = {g: clusters.train_labels[groups == g][0] for g in range(3)}
    assert len(set(mapping.values())) == 3
    np.testing.assert_array_equal(clusters.train_labels, [mapping[g] for g in groups])
    np.testing.assert_allclose(sorted(clusters.shares), [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(clusters.assign(images), clusters.train_labels)
    again = data.clusters.fit(images, 3, seed=0)
    np.testing.assert_array_equal(again.centres, clusters.centres)  # deterministic given the seed


def test_quota_labels_follow_the_shares():
    images, _ = blobs([500, 300, 200])
    clusters = data.clusters.fit(images, 3, seed=1)
    labels = clusters.quota_labels(100)
    np.testing.assert_array_equal(np.bincount(labels, minlength=3), np.round(clusters.shares * 100))
    assert np.all(np.diff(labels) >= 0)


def gan_config(**overrides):
    return config_lib.load(os.path.join(ROOT, "configs", "gan_recommended.py"),
                           {"train.steps": 30, "train.log_every": 10, "train.sample_every": 30,
                            "train.checkpoint_every": 30, "train.progress": False, **overrides})


def test_cluster_conditioned_gan_trains_on_cluster_ids_and_samples_without_labels(tmp_path):
    config = gan_config(**{"gan.clusters": 6})
    dataset = data.load("digits")
    task = tasks.build(config, dataset)
    expected = data.clusters.fit(dataset.train_images, 6, seed=config.seed).train_labels
    np.testing.assert_array_equal(task.train_data["examples"]["label"], expected)  # what the steps see
    assert task.modules["generator"].num_classes == 6
    summary = train(config, str(tmp_path))
    assert summary["step"] == 30 and np.isfinite(summary["eval"]["pixel_fid"])
    run = restore_run(str(tmp_path))
    images, labels = run.task.sample(run.state, jax.random.key(0), 20)
    assert labels is None and images.shape == (20, 8, 8, 1)  # unconditional to the outside


def test_clusters_and_labels_exclude_each_other():
    with pytest.raises(ConfigError, match="exclude each other"):
        tasks.build(gan_config(**{"gan.clusters": 4, "gan.conditional": True}), data.load("digits"))
