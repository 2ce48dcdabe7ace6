"""How the metrics behave on MNIST in a LeNet classifier's space (the numbers in docs/evaluation.md).

Reference: the 10k test images. Checks: the classifier's test accuracy; FID/KID/precision/recall of 10k
training images (near zero / near one); FID as Gaussian noise of growing strength is added to them
(monotonic); a set that drops classes 5-9 (recall and coverage fall, precision stays, 5 classes in the
histogram); the classifier Inception Score of the real test images (near 10); the time of a 10k-sample FID
(feature extraction included) and of the whole metric suite.

    python -m benchmarks.metrics_mnist [--data=../shared/data/mnist] [--classifier=runs/lenet_mnist]
        [--out=runs/metrics_mnist.json]

Trains the classifier into --classifier first if that folder holds none (3 epochs, a few minutes on 2 cores).
"""
import argparse
import json
import os
import time

import jax
import numpy as np

from gen_jax import data
from gen_jax.evaluation import domain_classifier as classifier_lib
from gen_jax.evaluation import metrics, sample_quality

NOISE = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def fid_10k(model, images, reference) -> float:
    """The timed path: uint8 images -> features -> statistics -> FID against cached reference statistics."""
    features, _ = model.features_and_probs(images)
    return float(metrics.fid_from_stats(*metrics.feature_stats(features), reference.mu, reference.sigma))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "mnist"))
    parser.add_argument("--classifier", default="runs/lenet_mnist")
    parser.add_argument("--num", type=int, default=10000, help="samples per scored set")
    parser.add_argument("--out", default="runs/metrics_mnist.json")
    args = parser.parse_args()
    dataset = data.load(f"idx:{args.data}")
    if not os.path.exists(os.path.join(args.classifier, classifier_lib.SPEC_FILE)):
        classifier_lib.save(classifier_lib.train(dataset), args.classifier)
    model = classifier_lib.load(args.classifier)
    accuracy = classifier_lib.accuracy(model, dataset.test_images, dataset.test_labels)
    print(f"classifier {model.name}: test accuracy {accuracy:.4f} "
          f"(trained {model.spec['train']['steps']} steps in {model.spec['train']['seconds']} s)")
    reference = sample_quality.reference_stats(model, dataset, split="test")  # not cached: timed below
    out = {"extractor": model.name, "test_accuracy": accuracy, "reference": reference.name,
           "num_reference": reference.num_images, "num_samples": args.num}
    key = jax.random.key(0)
    train = data.quantize(dataset.train_images[:args.num])

    # the cost of one FID: first call (compiles) and warm calls (what a run pays at every eval)
    _, out["fid_seconds_first"] = timed(lambda: fid_10k(model, train, reference))
    out["fid_seconds"] = min(timed(lambda: fid_10k(model, train, reference))[1] for _ in range(3))
    suite, _ = timed(lambda: sample_quality.generative_metrics(train, None, model, reference, key=key))
    _, out["suite_seconds"] = timed(lambda: sample_quality.generative_metrics(train, None, model, reference, key=key))
    out["train_vs_test"] = suite
    print(f"10k-sample FID: {out['fid_seconds']:.2f} s warm ({out['fid_seconds_first']:.2f} s first call); "
          f"all metrics: {out['suite_seconds']:.2f} s")
    print("train[:{}] vs test: ".format(args.num) + ", ".join(
        f"{k} {suite[k]:.4g}" for k in ("fid", "kid", "is", "precision", "recall", "density", "coverage")))

    rng = np.random.default_rng(0)
    out["noise"] = []
    for sigma in NOISE:
        noisy = data.quantize(dataset.train_images[:args.num] + sigma * rng.standard_normal(train.shape))
        row = sample_quality.generative_metrics(noisy, None, model, reference, key=key)
        out["noise"].append({"sigma": sigma, **{k: row[k] for k in ("fid", "kid", "precision", "recall")}})
        print(f"noise sigma {sigma:.2f}: fid {row['fid']:.4g}  kid {row['kid']:.4g}  precision "
              f"{row['precision']:.3f}  recall {row['recall']:.3f}")
    fids = [row["fid"] for row in out["noise"]]
    out["fid_monotonic_in_noise"] = bool(np.all(np.diff(fids) > 0))

    half = dataset.train_images[dataset.train_labels < 5][:args.num]
    dropped = sample_quality.generative_metrics(data.quantize(half), None, model, reference, key=key)
    out["classes_0_to_4"] = dropped
    print(f"classes 0-4 only ({len(half)}): " + ", ".join(
        f"{k} {dropped[k]:.4g}" for k in ("fid", "precision", "recall", "density", "coverage", "classes_covered",
                                          "class_kl")) + f"; histogram {dropped['class_counts']}")

    _, test_probs = model.features_and_probs(data.quantize(dataset.test_images))
    is_mean, is_std = metrics.inception_score(test_probs, key=key)
    out["test_inception_score"] = [float(is_mean), float(is_std)]
    print(f"classifier Inception Score of the test images: {float(is_mean):.3f} +- {float(is_std):.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
