"""Command line: train the domain classifier that evaluation measures samples with, and save it.

    python -m gen_jax.classifier --data=idx:../shared/data/mnist --workdir=runs/lenet_mnist [--arch=lenet|resnet]

The classifier itself is `evaluation.domain_classifier`; bad input is one `error:` line (exit status 2).
"""
from __future__ import annotations

import argparse
import json
import sys

from gen_jax import data
from gen_jax.errors import UserError
from gen_jax.evaluation.domain_classifier import ARCHITECTURES, save, train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.classifier", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data source: digits | idx:DIR | folder:DIR | tfds:NAME")
    parser.add_argument("--workdir", required=True, help="where the classifier is saved")
    parser.add_argument("--arch", default=None, choices=sorted(ARCHITECTURES),
                        help="default: lenet for grey images, resnet for colour")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", default="{}", help='architecture options as JSON, e.g. \'{"widths": [16, 32]}\'')
    args = parser.parse_args(argv)
    try:
        try:
            options = json.loads(args.options)
        except json.JSONDecodeError as e:
            raise UserError(f"--options is not JSON: {e}") from None
        if not isinstance(options, dict):
            raise UserError(f"--options must be a JSON object of architecture fields, e.g. '{{\"widths\": [16, 32]}}', "
                            f"got {args.options!r}")
        dataset = data.load(args.data)
        classifier = train(dataset, arch=args.arch, options=options, epochs=args.epochs,
                           batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed)
        save(classifier, args.workdir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    spec = classifier.spec
    print(f"test accuracy {spec['test_accuracy']:.4f} on {spec['num_test_images']} images "
          f"({spec['train']['steps']} steps, {spec['train']['seconds']} s) -> {args.workdir} [{classifier.name}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
