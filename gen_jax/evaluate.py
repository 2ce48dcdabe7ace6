"""Command line: sample quality of a trained run, or of a samples file, in a domain classifier's feature space.

    python -m gen_jax.evaluate --workdir=RUN [--classifier=DIR] [--num=N] [--checkpoint=latest|best]
    python -m gen_jax.evaluate --samples=FILE.npz --data=SOURCE --classifier=DIR
    python -m gen_jax.evaluate --workdir=RUN --extractor=inception --inception_weights=inception_fid.npz
    python -m gen_jax.evaluate --workdir=CONDITIONAL_RUN --cas     # + classification accuracy score (60k samples)

`--extractor=inception` scores in the FID InceptionV3's space instead (numbers comparable with papers); its
weights come from pytorch-fid's file, converted once: python -m gen_jax.inception_weights --help.

Writes the record under 'sample_metrics' in RUN/eval.json (or next to the samples). The work is
`evaluation.sample_quality`; runs open through `training.runs.restore_run`. Bad input is one `error:` line.
"""
from __future__ import annotations

import argparse
import os
import sys

import jax

from gen_jax import data
from gen_jax.errors import UserError
from gen_jax.evaluation import domain_classifier, inception, sample_quality
from gen_jax.training.runs import restore_run


def _score_samples_file(args) -> tuple[dict, str]:
    if not args.data:
        raise UserError("--samples needs --data=SOURCE (the real images to compare with)")
    if not args.classifier and args.extractor == "classifier":
        raise UserError("--samples needs --classifier=DIR (train one with python -m gen_jax.classifier)")
    images, labels = sample_quality.load_samples(args.samples)
    record = _score(args, images, labels, data.load(args.data), args.classifier, os.path.abspath(args.samples))
    return record, args.out or os.path.join(os.path.dirname(os.path.abspath(args.samples)), "eval.json")


def _score_run(args) -> tuple[dict, str]:
    run = restore_run(args.workdir, args.checkpoint, source=args.data or None)
    if run.task.sample is None:
        raise UserError(f"task {run.config.task!r} of {args.workdir} cannot sample")
    classifier_dir = args.classifier or run.config.eval.classifier_dir
    if not classifier_dir and args.extractor == "classifier":
        raise UserError("no classifier: pass --classifier=DIR (train one with python -m gen_jax.classifier "
                        f"--data={run.config.data.source} --workdir=DIR)")
    num = (60_000 if args.cas else len(run.dataset.test_images)) if args.num is None else args.num
    images, labels = run.task.sample(run.state, jax.random.fold_in(jax.random.key(args.seed), 1), num)
    record = _score(args, data.quantize(images), labels, run.dataset, classifier_dir,
                    f"{os.path.abspath(args.workdir)} ({args.checkpoint} checkpoint, step {run.step})")
    record["step"] = run.step
    if args.cas:  # the judge's own architecture and training settings, trained on the samples
        spec = domain_classifier.load(classifier_dir).spec if classifier_dir else {}
        settings = {k: v for k, v in spec.get("train", {}).items() if k in ("epochs", "batch_size", "learning_rate")}
        record["classification_accuracy_score"] = sample_quality.classification_accuracy_score(
            data.quantize(images), labels, run.dataset, arch=spec.get("arch"), options=spec.get("options"),
            seed=args.seed, **settings)
    return record, args.out or os.path.join(args.workdir, "eval.json")


def _score(args, images, labels, dataset, classifier_dir: str, source: str) -> dict:
    """The eval.json record in the domain classifier's space, or the FID Inception's (--extractor=inception)."""
    common = dict(split=args.split, num_reference=args.num_reference, seed=args.seed, cache_dir=args.cache_dir,
                  source=source)
    if args.extractor == "inception":
        return inception.score(images, dataset, weights=args.inception_weights or None, **common)
    return sample_quality.score(images, labels, classifier_dir, dataset, **common)


def _print(record: dict, out: str) -> None:
    ref = record["reference"]
    print(f"{record['num_samples']} samples vs {ref['data']}:{ref['split']} ({ref['num_images']} images), "
          f"extractor {record['extractor']}")
    for name, entry in record["metrics"].items():
        std = f" +- {entry['std']:.4g}" if "std" in entry else ""
        print(f"  {name:16s} {entry['value']:.5g}{std}")
    if "class_counts" in record:
        print(f"  class_counts     {record['class_counts']}")
    if "classification_accuracy_score" in record:
        cas = record["classification_accuracy_score"]
        print(f"  CAS              {cas['cas']:.4f} (trained on {cas['num_samples']} samples; on real images: "
              f"{cas['real_accuracy']:.4f})")
    print(f"-> {out} (sample_metrics)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="", help="a training run to sample (its latest or best checkpoint)")
    parser.add_argument("--samples", default="", help=".npz with 'images' uint8 [N, H, W, C] (and 'labels')")
    parser.add_argument("--data", default="", help="reference data source (default with --workdir: the run's)")
    parser.add_argument("--classifier", default="", help="a gen_jax.classifier folder (default: the run's "
                                                         "eval.classifier_dir)")
    parser.add_argument("--extractor", default="classifier", choices=("classifier", "inception"),
                        help="feature space: the domain classifier (--classifier) or the FID InceptionV3")
    parser.add_argument("--inception_weights", default="", help="with --extractor=inception: the .npz from "
                        f"python -m gen_jax.inception_weights (default: ${inception.WEIGHTS_ENV_VAR})")
    parser.add_argument("--num", type=int, default=None, help="samples drawn with --workdir (default: as many as "
                                                              "test images)")
    parser.add_argument("--checkpoint", default="latest", choices=("latest", "best"))
    parser.add_argument("--split", default="test", choices=("train", "test"), help="reference split")
    parser.add_argument("--num_reference", type=int, default=0, help="first N reference images (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", default="", help="reference statistics cache (default: CLASSIFIER/"
                                                        f"{sample_quality.REFERENCE_CACHE})")
    parser.add_argument("--out", default="", help="JSON file to write (default: eval.json in the run's folder or "
                                                  "next to the samples); other keys in it are kept")
    parser.add_argument("--cas", action="store_true", help="with --workdir of a conditional model: also the "
                        "classification accuracy score (a classifier trained on --num samples, default 60000, "
                        "tested on the real test split, beside one trained on the real training split)")
    args = parser.parse_args(argv)
    try:
        if args.num is not None and args.num <= 0:
            raise UserError(f"--num must be positive (leave it out for as many as test images), got {args.num}")
        if args.out and os.path.isdir(args.out):
            raise UserError(f"--out {args.out} is a folder: pass a .json file path")
        if bool(args.workdir) == bool(args.samples):
            raise UserError("pass either --workdir=RUN (sample a trained run) or --samples=FILE.npz --data=SOURCE")
        if args.cas and not args.workdir:
            raise UserError("--cas needs --workdir=RUN (a conditional model to sample)")
        record, out = _score_samples_file(args) if args.samples else _score_run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        sample_quality.write_record(out, record)
    except OSError as e:
        _print(record, out)  # the scores are shown, though not saved
        print(f"error: cannot write {out}: {e.strerror or e}; pass a writable --out", file=sys.stderr)
        return 2
    _print(record, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
