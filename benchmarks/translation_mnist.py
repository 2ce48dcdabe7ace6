"""Whether CycleGAN's translations keep their digit, measured on a pair with a paired test split: MNIST <->
MNIST-M (`mnist_m:SOURCE`, issue 14's pair (b)) or digits <-> inverted, thickened digits (`style:SOURCE`).

Given a finished run of configs/cyclegan.py on such a pair, reports
- B -> A (to domain A's style): a LeNet classifier of SOURCE's accuracy on the translated test images against
  its accuracy on the untranslated ones (made grey by averaging the channels), and their FID to SOURCE's test
  set in that classifier's feature space;
- A -> B (to domain B's style): whether the digit is kept, read by a classifier trained on real domain-B
  images (B's training half with its labels): its accuracy on the translated test digits, beside its accuracy
  on the true domain-B test images;
- the per-pixel error of A -> B against the true B images beside a constant image's (the per-pixel median of
  B's training images), the baseline a translation that ignores its input reaches;
- with --paired_control_steps=N (style pairs, whose every A image has a true B image): the run's A -> B generator
  architecture trained from scratch for N steps on those pairs with L1 alone (the run's optim_g and batch), and
  the same two measures of its translations: whether the network can express the map at all.
Appends one JSON row to --out.

    python benchmarks/translation_mnist.py --workdir=runs/cyclegan_mnist_m [--judge=DIR] [--colour=DIR]
    python benchmarks/translation_mnist.py --workdir=runs/cyclegan --judge=runs/classifier_digits \
        --colour=runs/classifier_digits_style --epochs=20 --paired_control_steps=2000 \
        [--trained_at=COMMIT --train_command="..." --training="2 cores, 66 s"]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import benchmarks  # noqa: E402
from gen_jax import data  # noqa: E402
from gen_jax.data import domains  # noqa: E402
from gen_jax.evaluation import domain_classifier, sample_quality  # noqa: E402
from gen_jax.families import translation  # noqa: E402
from gen_jax.training.optim import make_optimizer  # noqa: E402
from gen_jax.training.runs import restore_run  # noqa: E402


def classifier_in(directory: str, dataset: data.Dataset, **train_options) -> domain_classifier.Classifier:
    """The classifier saved in `directory`, trained there on `dataset` first when absent; one trained on other
    data is refused rather than reused."""
    if not os.path.exists(os.path.join(directory, domain_classifier.SPEC_FILE)):
        domain_classifier.save(domain_classifier.train(dataset, progress=False, **train_options), directory)
    classifier = domain_classifier.load(directory)
    if classifier.spec.get("data") != dataset.name or classifier.image_shape != tuple(dataset.image_shape):
        raise SystemExit(f"{directory} holds a classifier of {classifier.spec.get('data')!r}, not of "
                         f"{dataset.name!r}: pass another folder")
    return classifier


def fid_to(judge, reference, images01) -> float:
    """FID of [0, 1] images to the reference in the judge's feature space."""
    return sample_quality.generative_metrics(data.quantize(images01), None, judge, reference,
                                             key=jax.random.key(0))["fid"]


def paired_control(run, steps: int):
    """The run's A -> B generator architecture trained from scratch for `steps` steps on (A image, its true B
    image) pairs with L1 alone; returns its translations of the test A images."""
    generator, pair, config = run.task.modules["g_ab"], run.dataset, run.config
    inputs = np.asarray(pair.train_a)
    targets = domains.true_style(inputs)
    params = generator.init(jax.random.key(config.seed), jnp.zeros((1, *pair.shape_a)))["params"]
    tx = make_optimizer(config.optim_g, steps)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        grads = jax.grad(lambda p: jnp.mean(jnp.abs(translation.translate(generator, p, x) - y)))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rows = data.batch_indices(config.seed, 0, steps, num_examples=len(inputs), batch_size=config.data.batch_size)
    for batch in rows:
        params, opt_state = step(params, opt_state, inputs[batch], targets[batch])
    return translation.translate_all(generator, params, pair.test_a)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished configs/cyclegan.py run on mnist_m: or style:")
    parser.add_argument("--judge", default="", help="a LeNet classifier folder of the pair's SOURCE, trained there "
                        "when absent (default: runs/classifier_NAME, NAME the source's last path part)")
    parser.add_argument("--colour", default="", help="a classifier folder of domain B's training half, trained "
                        "there when absent (default: runs/classifier_NAME_KIND)")
    parser.add_argument("--epochs", type=float, default=3.0, help="passes of each classifier trained here")
    parser.add_argument("--paired_control_steps", type=int, default=0,
                        help="style pairs: also train the A -> B generator on the true pairs with L1 (0: off)")
    parser.add_argument("--trained_at", default="", help="provenance for the row: the commit the run trained at")
    parser.add_argument("--train_command", default="", help="provenance for the row: the command that trained it")
    parser.add_argument("--training", default="", help="provenance for the row: e.g. '2 cores, 66 s'")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "translation_results.jsonl"))
    args = parser.parse_args(argv)
    run = restore_run(args.workdir)
    pair = run.dataset
    kind, _, source = run.config.data.source.partition(":")
    if kind not in ("mnist_m", "style"):
        raise SystemExit(f"{args.workdir} trained on {run.config.data.source}: needs mnist_m:SOURCE or style:SOURCE")
    if args.paired_control_steps and kind != "style":
        raise SystemExit("--paired_control_steps needs a style: pair (only there does every A image have a true B)")
    name = os.path.basename(source.rstrip("/").partition(":")[2] or source)
    judge_dir = args.judge or os.path.join(ROOT, "runs", f"classifier_{name}")
    colour_dir = args.colour or os.path.join(ROOT, "runs", f"classifier_{name}_{kind}")
    base = data.load(source)
    judge = classifier_in(judge_dir, base, epochs=args.epochs)
    reference = sample_quality.reference_stats(judge, base, split="test",
                                               cache_dir=sample_quality.default_cache_dir(judge_dir))
    b2a = translation.translate_all(run.task.modules["g_ba"], run.state["g_ba"].params, pair.test_b)
    grey_b = pair.test_b.mean(axis=-1, keepdims=True)
    colour_data = data.Dataset(f"{kind} train half", pair.train_b, pair.train_b_labels, pair.test_b,
                               pair.test_labels, base.num_classes)
    colour = classifier_in(colour_dir, colour_data, arch="lenet", epochs=args.epochs)
    a2b = translation.translate_all(run.task.modules["g_ab"], run.state["g_ab"].params, pair.test_a)
    labels = pair.test_labels
    constant_b = np.median(np.asarray(pair.train_b), axis=0)
    eval_path = os.path.join(args.workdir, "eval.json")
    provenance = {k: v for k, v in (("trained_at", args.trained_at), ("train_command", args.train_command),
                                    ("training", args.training)) if v}
    row = {"benchmark": f"{kind}_cyclegan", "commit": benchmarks.commit(), **provenance, "workdir_step": run.step,
           "data": run.config.data.source,
           "run_eval": json.load(open(eval_path)) if os.path.exists(eval_path) else None,
           "config": run.config.to_dict()["generator"], "num_test_images": len(labels),
           "judge": judge.name, "judge_test_accuracy": judge.spec["test_accuracy"],
           "b2a_judge_accuracy": domain_classifier.accuracy(judge, b2a, labels),
           "untranslated_grey_judge_accuracy": domain_classifier.accuracy(judge, grey_b, labels),
           "b2a_fid_to_source_test": fid_to(judge, reference, b2a),
           "untranslated_grey_fid_to_source_test": fid_to(judge, reference, grey_b),
           "colour_classifier": colour.name, "colour_classifier_test_accuracy": colour.spec["test_accuracy"],
           "a2b_colour_accuracy": domain_classifier.accuracy(colour, a2b, labels),
           "true_b_colour_accuracy": domain_classifier.accuracy(colour, pair.test_b, labels),
           "a2b_error": float(np.mean(np.abs(a2b - pair.test_b))),
           "constant_b_error": float(np.mean(np.abs(constant_b - pair.test_b)))}
    if args.paired_control_steps:
        control = paired_control(run, args.paired_control_steps)
        row.update(paired_control_steps=args.paired_control_steps,
                   paired_control_a2b_error=float(np.mean(np.abs(control - pair.test_b))),
                   paired_control_colour_accuracy=domain_classifier.accuracy(colour, control, labels))
    print(json.dumps(row, indent=2))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
