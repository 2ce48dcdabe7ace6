"""Scoring samples in a classifier's space: cached reference statistics keyed by the extractor, the driver's
eval.json and one-line errors, and evaluation during training with a best checkpoint."""
import json
import os
import re

import jax
import numpy as np
import pytest

from gen_jax import data, evaluate
from gen_jax.config import gan_config, vae_config
from gen_jax.errors import CheckpointError, ConfigError, UserError
from gen_jax.evaluation import domain_classifier as classifier
from gen_jax.evaluation import sample_quality
from gen_jax.training import hooks
from gen_jax.training.loop import train

@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def classifier_dir(digits_classifier_dir):
    return digits_classifier_dir


@pytest.fixture(scope="module")
def model(classifier_dir):
    return classifier.load(classifier_dir)


def perturbed(model):
    params = jax.tree.map(np.array, model.params)
    jax.tree.leaves(params)[0].flat[0] += 0.5
    return classifier.Classifier(model.spec, params)


def test_reference_cache_is_keyed_by_the_extractor(tmp_path, model, digits, monkeypatch):
    cache = str(tmp_path / "cache")
    first = sample_quality.reference_stats(model, digits, cache_dir=cache)
    assert first.extractor == model.name and first.num_images == 297 and first.name == "digits:test"
    other = perturbed(model)
    second = sample_quality.reference_stats(other, digits, cache_dir=cache)  # a changed extractor: a new entry
    assert second.extractor == other.name != first.extractor
    assert len(os.listdir(cache)) == 2
    assert not np.allclose(first.mu, second.mu)
    assert sample_quality.reference_stats(model, digits, split="train", cache_dir=cache).num_images == 1500
    assert len(os.listdir(cache)) == 3
    # a hit reads the file and extracts nothing
    monkeypatch.setattr(classifier.Classifier, "features_and_probs",
                        lambda *a, **k: pytest.fail("a cached reference was recomputed"))
    again = sample_quality.reference_stats(model, digits, cache_dir=cache)
    np.testing.assert_array_equal(again.sigma, first.sigma)
    np.testing.assert_array_equal(again.features, first.features)


@pytest.mark.slow
def test_metrics_see_real_versus_collapsed_samples(model, digits):
    reference = sample_quality.reference_stats(model, digits)
    key = jax.random.key(0)
    real = sample_quality.generative_metrics(data.quantize(digits.train_images[:100]), digits.train_labels[:100],
                                       model, reference, key=key)
    ones = digits.train_images[digits.train_labels == 1][:100]
    collapsed = sample_quality.generative_metrics(data.quantize(ones), None, model, reference, key=key)
    assert real["fid"] < collapsed["fid"] and real["kid"] < collapsed["kid"]
    assert real["recall"] > 0.8 > 0.4 > collapsed["recall"] and collapsed["precision"] > 0.8
    assert real["coverage"] > collapsed["coverage"]
    assert real["classes_covered"] == 10 and collapsed["classes_covered"] <= 2
    assert real["is"] > 5 > collapsed["is"] and real["label_accuracy"] > 0.9
    assert real["extractor"] == model.name and real["reference"] == "digits:test"
    assert real["num_samples"] == 100 and real["num_reference"] == 297 and sum(real["class_counts"]) == 100
    with pytest.raises(UserError, match="computed with"):
        sample_quality.generative_metrics(data.quantize(ones), None, perturbed(model), reference, key=key)


def test_driver_scores_a_samples_file_into_eval_json(tmp_path, classifier_dir, digits, capsys):
    samples = tmp_path / "samples.npz"
    np.savez(samples, images=data.quantize(digits.train_images[:100]), labels=digits.train_labels[:100])
    (tmp_path / "eval.json").write_text(json.dumps({"neg_elbo": 30.0}))  # a run's own results are kept
    assert evaluate.main([f"--samples={samples}", "--data=digits", f"--classifier={classifier_dir}"]) == 0
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["neg_elbo"] == 30.0
    record = written["sample_metrics"]
    assert record["num_samples"] == 100 and record["reference"] == {"data": "digits", "split": "test",
                                                                     "num_images": 297}
    for name in ("fid", "kid", "is", "precision", "recall", "density", "coverage", "classes_covered"):
        entry = record["metrics"][name]
        assert entry["extractor"] == record["extractor"] and entry["num_samples"] == 100
        assert entry["reference"] == "digits:test" and np.isfinite(entry["value"])
    assert "std" in record["metrics"]["kid"] and "label_accuracy" in record["metrics"]
    assert "fid" in capsys.readouterr().out


@pytest.mark.parametrize("setup, message", [
    (lambda p: np.savez(p, images=np.zeros((20, 28, 28, 1), np.uint8)), r"\[N, 8, 8, 1\]"),
    (lambda p: np.savez(p, pictures=np.zeros((20, 8, 8, 1), np.uint8)), "no 'images' array"),
    (lambda p: np.savez(p, images=np.full((20, 8, 8, 1), 3.0)), "uint8 0..255 or float in"),
    (lambda p: open(p, "w").write("not a zip"), "is not a .npz file"),
    (lambda p: None, "does not exist"),
])
def test_driver_errors_are_one_line(tmp_path, classifier_dir, capsys, setup, message):
    path = str(tmp_path / "samples.npz")
    setup(path)
    assert evaluate.main([f"--samples={path}", "--data=digits", f"--classifier={classifier_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    assert re.search(message, err), err


def test_driver_needs_a_classifier(tmp_path, capsys):
    np.savez(tmp_path / "s.npz", images=np.zeros((20, 8, 8, 1), np.uint8))
    assert evaluate.main([f"--samples={tmp_path / 's.npz'}", "--data=digits",
                          f"--classifier={tmp_path / 'none'}"]) == 2
    assert "python -m gen_jax.classifier" in capsys.readouterr().err


def test_best_checkpoint_follows_the_mode(tmp_path):
    state = {"w": np.zeros(3, np.float32)}
    best = hooks.BestCheckpoint(str(tmp_path), "fid", "min")
    assert [best.update(s, state, {"fid": v}) for s, v in ((1, 5.0), (2, 7.0), (3, 4.0), (4, float("nan")))] \
        == [True, False, True, False]
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 3
    assert os.listdir(tmp_path / "best") == ["3"]
    assert hooks.BestCheckpoint(str(tmp_path), "fid", "min").value == 4.0  # read back on resume
    assert not hooks.BestCheckpoint(str(tmp_path), "fid").update(5, state, {"fid": 4.5})
    assert hooks.BestCheckpoint(str(tmp_path / "b"), "recall", "max").update(1, state, {"recall": 0.1})
    with pytest.raises(ConfigError, match="available: fid_std$"):
        best.update(6, state, {"fid_std": 1.0, "extractor": "lenet:0"})
    assert sorted(os.listdir(tmp_path)) == ["b", "best", "best.json"]  # written whole: no temporary file left
    (tmp_path / "best.json").write_text('{"step": 3, "metric": "fid", "mo')
    with pytest.raises(CheckpointError, match="best.json is unreadable .*delete it"):
        hooks.BestCheckpoint(str(tmp_path), "fid", "min")
    with pytest.raises(ConfigError, match="best_mode"):
        hooks.BestCheckpoint(str(tmp_path), "fid", "lower")


@pytest.mark.slow
def test_training_evaluates_in_classifier_space_and_keeps_the_best(tmp_path, classifier_dir, capsys):
    config = vae_config()
    config.train.update(steps=30, log_every=10, sample_every=30, checkpoint_every=30, eval_every=10, progress=False)
    config.model.update(hidden_dims=(32,), latent_dim=4)
    config.data.batch_size = 64
    config.eval.update(classifier_dir=classifier_dir, num_samples=100, best_metric="fid")
    workdir = str(tmp_path / "run")
    summary = train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    evals = [row for row in rows if "eval/fid" in row]
    assert [row["step"] for row in evals] == [10, 20, 30]
    assert all(row["eval/num_samples"] == 100 and row["eval/extractor"].startswith("lenet:") for row in evals)
    assert "neg_elbo" in summary["eval"] and "fid" in summary["eval"]  # the task's own results too
    best = json.loads(open(os.path.join(workdir, "best.json")).read())
    best_row = min(evals, key=lambda row: row["eval/fid"])
    assert best["step"] == best_row["step"] and best["value"] == pytest.approx(best_row["eval/fid"])
    assert os.listdir(os.path.join(workdir, "best")) == [str(best["step"])]
    assert os.path.exists(os.path.join(workdir, "curves.png"))
    # the driver samples the run's best checkpoint with the run's own classifier and data
    assert evaluate.main([f"--workdir={workdir}", "--checkpoint=best", "--num=100"]) == 0
    record = json.loads(open(os.path.join(workdir, "eval.json")).read())
    assert record["sample_metrics"]["step"] == best["step"] and record["sample_metrics"]["num_samples"] == 100
    assert "neg_elbo" in record  # the training evaluation stays
    capsys.readouterr()


def test_training_with_a_missing_classifier_fails_before_training(tmp_path):
    config = vae_config()
    config.eval.classifier_dir = str(tmp_path / "none")
    with pytest.raises(UserError, match="no classifier"):
        train(config, str(tmp_path / "run"))


@pytest.mark.slow
def test_gan_training_scores_its_samples_in_classifier_space(tmp_path, classifier_dir):
    """The GAN task plugs into the same eval hook: a conditional GAN's samples get FID and label accuracy."""
    config = gan_config()
    config.gan.conditional = True
    config.generator.hidden_dims = (32,)
    config.discriminator.hidden_dims = (32,)
    config.data.batch_size = 64
    config.train.update(steps=20, log_every=10, sample_every=20, checkpoint_every=20, eval_every=10, progress=False)
    config.eval.update(classifier_dir=classifier_dir, num_samples=100, best_metric="fid")
    workdir = str(tmp_path / "gan")
    summary = train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [row for row in map(json.loads, f) if "eval/fid" in row]
    assert [row["step"] for row in evals] == [10, 20]
    assert all("eval/label_accuracy" in row and row["eval/num_samples"] == 100 for row in evals)
    assert np.isfinite(summary["eval"]["fid"])
    assert json.loads(open(os.path.join(workdir, "best.json")).read())["metric"] == "fid"


def test_classification_accuracy_score_against_its_definition():
    """CAS trains the classifier on the samples and tests it on real images: real training images as the
    'samples' score exactly the real-trained accuracy; the same images with shuffled labels score near chance."""
    digits = data.load("digits")
    settings = dict(options={"widths": [8, 16], "feature_dim": 32, "dropout": 0.1}, epochs=8, batch_size=64,
                    learning_rate=5e-3)
    same = sample_quality.classification_accuracy_score(digits.train_images, digits.train_labels, digits, **settings)
    assert same["cas"] == same["real_accuracy"] > 0.8
    shuffled = np.random.default_rng(0).permutation(digits.train_labels)
    noise = sample_quality.classification_accuracy_score(data.quantize(digits.train_images), shuffled, digits,
                                                         with_real=False, **settings)
    assert noise["cas"] < 0.3 and "real_accuracy" not in noise
    with pytest.raises(UserError, match="conditional"):
        sample_quality.classification_accuracy_score(digits.train_images, None, digits)
