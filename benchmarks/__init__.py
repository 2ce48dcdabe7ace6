"""Benchmarks comparing gen_jax with reference implementations (torch_seed: the seed tutorial in PyTorch)."""
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commit() -> str:
    """The checkout's short HEAD hash, marked when the tree has uncommitted changes (results name their code;
    results files, *.jsonl, that a benchmark appends to do not count)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        changed = [line for line in dirty.splitlines() if line.strip() and not line.endswith(".jsonl")]
        return (head or "unknown") + ("+uncommitted changes" if changed else "")
    except OSError:
        return "unknown"


def cpu_model() -> str:
    """This machine's CPU model name (/proc/cpuinfo), or the platform's machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def pin_to_core(cpu: int) -> None:
    """Runs this process on core `cpu` with one XLA thread and one CPU device (a config's train.cpu_devices
    yields to the forced count), so two benchmarks can share the 2-core box without either getting more than
    one core, and pinned rows stay comparable. Call it before JAX starts its thread pools."""
    os.sched_setaffinity(0, {cpu})
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1 --xla_force_host_platform_device_count=1").strip()
