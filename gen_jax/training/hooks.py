"""Hooks the train loop calls at eval steps: score samples in a domain classifier's space, and keep the best
checkpoint by one eval metric."""
from __future__ import annotations

import json
import math
import os
import shutil
from typing import Callable

import jax

from gen_jax import data, distributed, files
from gen_jax.checkpoint import Checkpointer
from gen_jax.errors import CheckpointError, ConfigError
from gen_jax.evaluation import domain_classifier, sample_quality


def sample_scorer(config, dataset, task) -> Callable | None:
    """The loop's hook: score(state, key) -> `generative_metrics` of `task.sample`'s samples, or None when
    config.eval.classifier_dir is empty or the family scores its own outputs with it (`Task.scores_outputs`).

    Scores config.eval.num_samples samples (0: as many as test images) against the test split; the
    classifier and the reference statistics are loaded once, here.
    """
    directory = config.eval.get("classifier_dir", "")
    if not directory or task.scores_outputs:
        return None
    if task.sample is None:
        raise ConfigError(f"eval.classifier_dir is set, but task {config.task!r} cannot sample: unset it")
    classifier = domain_classifier.load(directory)
    if classifier.image_shape != tuple(dataset.image_shape):
        raise ConfigError(f"eval.classifier_dir {directory} takes {classifier.image_shape} images, "
                          f"the data {dataset.name} has {tuple(dataset.image_shape)}")
    reference = sample_quality.reference_stats(classifier, dataset, split="test",
                                               cache_dir=sample_quality.default_cache_dir(directory))
    num = config.eval.get("num_samples", 0) or len(dataset.test_images)

    def score(state, key) -> dict:
        sample_key, metric_key = jax.random.split(key)
        images, labels = task.sample(state, sample_key, num)
        return sample_quality.generative_metrics(data.quantize(images), labels, classifier, reference,
                                                 key=metric_key)

    return score


class BestCheckpoint:
    """Keeps the checkpoint with the best value of one eval metric in WORKDIR/best (one step) and its results
    in WORKDIR/best.json; survives resumes (the previous best is read back from best.json)."""

    def __init__(self, workdir: str, metric: str, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ConfigError(f"eval.best_mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.mode = metric, mode
        self.directory = os.path.join(workdir, "best")
        self.record_path = os.path.join(workdir, "best.json")
        self.value = None
        if os.path.exists(self.record_path):
            try:
                with open(self.record_path) as f:
                    record = json.load(f)
                if record.get("metric") == metric and record.get("mode") == mode:
                    self.value = float(record["value"])
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
                raise CheckpointError(f"{self.record_path} is unreadable ({type(e).__name__}): delete it and "
                                  f"{self.directory} to start the best-checkpoint record afresh") from None

    def _better(self, value: float) -> bool:
        if self.value is None:
            return True
        return value < self.value if self.mode == "min" else value > self.value

    def update(self, step: int, state, results: dict) -> bool:
        """Saves `state` as the best if results[metric] beats the best so far; returns whether it did."""
        if not isinstance(results.get(self.metric), (int, float)):
            numeric = sorted(k for k, v in results.items() if isinstance(v, (int, float)))
            raise ConfigError(f"eval.best_metric {self.metric!r} is not an eval result; available: "
                              f"{', '.join(numeric)}")
        value = float(results[self.metric])
        # process 0 decides for all (every process saves the checkpoint together)
        if not distributed.primary_value(math.isfinite(value) and self._better(value)):
            return False
        if distributed.is_primary():
            shutil.rmtree(self.directory, ignore_errors=True)  # one step only, even if a resume went back
        distributed.barrier("best_checkpoint_cleared")
        checkpointer = Checkpointer(self.directory, keep=1)
        checkpointer.save(step, state)
        checkpointer.close()
        self.value = value
        if distributed.is_primary():
            files.write_json(self.record_path, {"step": step, "metric": self.metric, "mode": self.mode,
                                                "value": value, "results": results})
        return True


def best_checkpoint(config, workdir: str) -> BestCheckpoint | None:
    """A `BestCheckpoint` for config.eval.best_metric / best_mode, or None when best_metric is empty."""
    metric = config.eval.get("best_metric", "")
    return BestCheckpoint(workdir, metric, config.eval.get("best_mode", "min")) if metric else None
