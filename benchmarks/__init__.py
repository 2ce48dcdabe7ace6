"""Benchmarks comparing gen_jax with reference implementations (torch_seed: the seed tutorial in PyTorch)."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commit() -> str:
    """The checkout's short HEAD hash, marked when the tree has uncommitted changes (results name their code)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        return (head or "unknown") + ("+uncommitted changes" if dirty.strip() else "")
    except OSError:
        return "unknown"
