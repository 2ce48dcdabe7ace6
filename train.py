"""Command-line trainer: `python train.py --config=configs/vae.py --workdir=DIR [--config.key=value ...]`.

Kept short on purpose (as in the Flax examples): flags, then one call into `gen_jax.loop.train`.
Bad input (a config key, a data source, a checkpoint) is reported as one line, without a traceback.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
config_flags.DEFINE_config_file("config", os.path.join(_HERE, "configs", "vae.py"), "Config file (get_config()).",
                                lock_config=True)
flags.DEFINE_string("workdir", "runs/default", "Where checkpoints, samples, metrics and eval.json go.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from gen_jax.errors import UserError
    from gen_jax.loop import train
    try:
        summary = train(flags.FLAGS.config, flags.FLAGS.workdir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary["interrupted"]:
        print(f"interrupted at step {summary['step']}; checkpoint saved in {flags.FLAGS.workdir}/checkpoints; "
              f"rerun the same command to resume", file=sys.stderr)
        return 128 + summary["interrupted"]
    print(f"done: step {summary['step']}, eval {summary['eval']} -> {flags.FLAGS.workdir}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
