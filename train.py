"""Command-line trainer: `python train.py --config=configs/vae.py --workdir=DIR [--config.section.key=value ...]`.

Several processes (hosts, or one per GPU) train one model together with --coordinator=HOST:PORT
--num_processes=N --process_id=I on each, or --distributed on a cluster JAX detects (docs/scaling.md).

Kept short on purpose (as in the Flax examples): flags, `gen_jax.config.load`, then one call into
`gen_jax.training.loop.train`. Bad input (a config file or key, a data source, a checkpoint) is one `error:` line.
"""
import os
import signal
import sys


def _interrupted(signum, frame):
    """Ctrl-C outside the training steps (the loop saves and exits on its own): one line, no traceback.

    Exits with os._exit, not SystemExit: Python runs the handler in whatever frame is current, and an exception
    raised inside a callback such as JAX's garbage-collection hook is printed as a traceback and swallowed.
    """
    print("interrupted before training started or after it finished: checkpoints already saved are kept; "
          "rerun the same command to continue", file=sys.stderr, flush=True)
    os._exit(128 + signum)


signal.signal(signal.SIGINT, _interrupted)  # first, so even an interrupt during the imports below is one line

from absl import app, flags, logging  # noqa: E402

from gen_jax import config as config_lib  # noqa: E402
from gen_jax.errors import UserError  # noqa: E402
from gen_jax import distributed  # noqa: E402
from gen_jax.training.loop import train  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "vae.py")
OVERRIDE_PREFIX = "--config."

flags.DEFINE_string("config", DEFAULT_CONFIG, "Config file with get_config(); override its keys with "
                    "--config.section.key=value.")
flags.DEFINE_string("workdir", "runs/default", "Where checkpoints, samples, metrics and eval.json go.")
flags.DEFINE_string("coordinator", "", "Multi-process run: HOST:PORT of process 0, the same for every process.")
flags.DEFINE_integer("num_processes", 0, "Multi-process run: how many processes (with --coordinator).")
flags.DEFINE_integer("process_id", -1, "Multi-process run: this process's number, 0..num_processes-1.")
flags.DEFINE_bool("distributed", False, "Multi-process run on a cluster JAX detects by itself (SLURM, Open MPI, "
                  "Cloud TPU): no --coordinator needed.")


def parse_flags(argv) -> tuple[list[str], list[str]]:
    """absl parses --config and --workdir; --config.KEY=VALUE overrides are kept for `config.load`.

    Returns (the arguments absl left, the overrides as KEY=VALUE strings).
    """
    overrides = [a[len(OVERRIDE_PREFIX):] for a in argv[1:] if a.startswith(OVERRIDE_PREFIX)]
    try:
        remaining = flags.FLAGS([a for a in argv if not a.startswith(OVERRIDE_PREFIX)])
    except flags.Error as e:
        print(f"error: bad flag: {e}", file=sys.stderr)
        sys.exit(2)
    return remaining, overrides


def main(parsed: tuple[list[str], list[str]]) -> int:
    remaining, overrides = parsed
    if len(remaining) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(remaining[1:])}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    workdir = flags.FLAGS.workdir
    try:
        config = config_lib.load(flags.FLAGS.config, overrides)
        distributed.initialize(coordinator=flags.FLAGS.coordinator, num_processes=flags.FLAGS.num_processes,
                               process_id=flags.FLAGS.process_id, auto=flags.FLAGS.distributed)
        summary = train(config, workdir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary.get("skipped_nonfinite"):
        print(f"warning: {summary['skipped_nonfinite']} updates were skipped for NaN/inf (train.on_nonfinite=skip; "
              f"skipped_steps in {workdir}/metrics.jsonl)", file=sys.stderr)
    if summary["interrupted"]:
        print(f"interrupted at step {summary['step']}; checkpoint saved in {workdir}/checkpoints; "
              f"rerun the same command to resume", file=sys.stderr)
        return 128 + summary["interrupted"]
    if distributed.is_primary():
        ended = " (train.time_budget spent: rerun to continue)" if summary["out_of_time"] else ""
        print(f"done: step {summary['step']}{ended}, eval {summary['eval']} -> {workdir}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
