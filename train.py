"""Command-line trainer: `python train.py --config=configs/vae.py --workdir=DIR [--config.key=value ...]`.

Kept short on purpose (as in the Flax examples): flags, then one call into `gen_jax.loop.train`.
Bad input (a config file or key, a data source, a checkpoint) is reported as one line, without a traceback.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "vae.py")
_PARSE_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError)


def _fail(error: Exception) -> None:
    text = str(error.args[0] if error.args else error).replace("\\n", " ").replace("\\'", "'")
    print(f"error: bad flag or config ({type(error).__name__}): {' '.join(text.split())}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv):
    """Defines and parses the flags; config overrides are checked here (ml_collections reads sys.argv)."""
    try:
        config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Config file with get_config().",
                                        lock_config=True)
        flags.DEFINE_string("workdir", "runs/default", "Where checkpoints, samples, metrics and eval.json go.")
        remaining = flags.FLAGS(argv)
        flags.FLAGS.config.task  # a config file that failed to load raises here, inside this try
        return remaining
    except _PARSE_ERRORS as e:
        _fail(e)


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
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
