"""Scaling benchmark: resident vs streaming input on an image folder, and 1 vs several processes.

  python benchmarks/scaling.py memory [--images=50000 --folder=DIR]   # writes the PNGs first (not committed)
  python benchmarks/scaling.py processes                              # MNIST VAE: 1x1, 1x2, 2x1 processes x devices
  python benchmarks/scaling.py report                                 # docs/scaling.md's tables from the rows

Every measurement is `train.py` (configs/vae.py) in its own subprocess: its peak resident memory (the child's
ru_maxrss), the trainer's logged images/s (median over log steps after the first) and startup_seconds. Rows go
to benchmarks/scaling_results.jsonl with the commit; docs/scaling.md quotes them.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import benchmarks  # noqa: E402

MNIST = os.path.join("..", "shared", "data", "mnist")  # relative to the repository, as everywhere
RESULTS = os.path.join(ROOT, "benchmarks", "scaling_results.jsonl")
VAE = ["--config=configs/vae.py", "--config.train.progress=False", "--config.train.sample_every=100000",
       "--config.train.checkpoint_every=100000"]

# Runs one command and prints its peak RSS: RUSAGE_CHILDREN of a fresh wrapper holds only that child.
_PEAK = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
         "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'RC', rc)")


def write_folder(folder: str, num: int) -> None:
    """The first `num` MNIST training images as PNGs in FOLDER/train/CLASS and the test set in FOLDER/test/CLASS."""
    from PIL import Image

    from gen_jax import data
    marker = os.path.join(folder, f".complete_{num}")
    if os.path.exists(marker):
        return
    mnist = data.load(f"idx:{os.path.join(ROOT, MNIST)}")
    for split, images, labels in (("train", mnist.train_images[:num], mnist.train_labels[:num]),
                                  ("test", mnist.test_images, mnist.test_labels)):
        for i, (image, label) in enumerate(zip(data.quantize(images)[..., 0], labels)):
            directory = os.path.join(folder, split, str(label))
            os.makedirs(directory, exist_ok=True)
            Image.fromarray(image).save(os.path.join(directory, f"{i:05d}.png"))
    open(marker, "w").close()


def measure(args: list[str], *, workdir: str, processes: int = 1, devices: int = 1) -> dict:
    """Runs train.py with `args` as `processes` processes of `devices` forced CPU devices each; returns peak RSS
    (MB, the largest process), images/s and startup seconds from process 0's metrics."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for p in range(processes):
        extra = [f"--coordinator=127.0.0.1:{port}", f"--num_processes={processes}", f"--process_id={p}"] \
            if processes > 1 else []
        cmd = [sys.executable, "-c", _PEAK, sys.executable, "train.py", f"--workdir={workdir}", *args, *extra]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True))
    peaks = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        line = next(ln for ln in out.splitlines() if ln.startswith("PEAK_RSS_KB"))
        _, kb, _, rc = line.split()
        if rc != "0":
            raise RuntimeError(f"train.py failed ({rc}): {' '.join(args)}")
        peaks.append(int(kb) / 1024)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    speeds = [r["images_per_sec"] for r in rows if "images_per_sec" in r][1:]
    startup = next(r["startup_seconds"] for r in rows if "startup_seconds" in r)
    return {"peak_rss_mb": round(max(peaks), 1), "images_per_sec": round(statistics.median(speeds), 1),
            "startup_seconds": round(startup, 2)}


def record(row: dict) -> None:
    row = {"commit": benchmarks.commit(), "date": time.strftime("%Y-%m-%d"), "machine": benchmarks.cpu_model(),
           "cpus": os.cpu_count(), **row}
    print(json.dumps(row), flush=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")


def memory(args) -> None:
    folder = args.folder or os.path.join(tempfile.gettempdir(), f"gen_jax_mnist_pngs_{args.images}")
    started = time.perf_counter()
    write_folder(folder, args.images)
    print(f"{args.images} PNGs in {folder} ({time.perf_counter() - started:.0f} s)", flush=True)
    for rnd in range(args.rounds):
        for pipeline in ("resident", "stream"):
            with tempfile.TemporaryDirectory() as workdir:
                result = measure([*VAE, f"--config.data.source=folder:{folder}", f"--config.data.pipeline={pipeline}",
                                  f"--config.train.steps={args.steps}"], workdir=workdir)
            record({"benchmark": "memory", "images": args.images, "pipeline": pipeline, "round": rnd,
                    "steps": args.steps, "batch": 128, **result})


def processes(args) -> None:
    for rnd in range(args.rounds):
        for procs, devices, pipeline in ((1, 1, "resident"), (1, 2, "resident"), (2, 1, "resident"),
                                         (1, 1, "stream"), (2, 1, "stream")):
            with tempfile.TemporaryDirectory() as workdir:
                result = measure([*VAE, f"--config.data.source=idx:{MNIST}", f"--config.data.pipeline={pipeline}",
                                  f"--config.train.steps={args.steps}"], workdir=workdir, processes=procs,
                                 devices=devices)
            record({"benchmark": "processes", "processes": procs, "devices_per_process": devices,
                    "pipeline": pipeline, "round": rnd, "steps": args.steps, "batch": 128, **result})


def report(path: str = RESULTS) -> str:
    """The two markdown tables of docs/scaling.md from the raw rows: medians and min-max over rounds."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]

    def cell(group, key):
        values = sorted(r[key] for r in group)
        middle = statistics.median(values)
        return f"{middle:.0f} ({values[0]:.0f}-{values[-1]:.0f})" if len(values) > 1 else f"{middle:.0f}"

    out = []
    memory_groups = {}
    for r in rows:
        if r["benchmark"] == "memory":
            memory_groups.setdefault((r["images"], r["pipeline"]), []).append(r)
    if memory_groups:
        out += ["| training images (PNG) | pipeline | peak RSS, MB | images/s | start-up, s | rounds | commit |",
                "|---|---|---|---|---|---|---|"]
        for (images, pipeline), group in sorted(memory_groups.items()):
            out.append(f"| {images:,} | {pipeline} | {cell(group, 'peak_rss_mb')} | {cell(group, 'images_per_sec')} | "
                       f"{cell(group, 'startup_seconds')} | {len(group)} | "
                       f"{', '.join(sorted({g['commit'] for g in group}))} |")
        out.append("")
    process_groups = {}
    for r in rows:
        if r["benchmark"] == "processes":
            process_groups.setdefault((r["processes"], r["devices_per_process"], r["pipeline"]), []).append(r)
    if process_groups:
        out += ["| processes x devices | pipeline | images/s | peak RSS per process, MB | start-up, s | rounds | commit |",
                "|---|---|---|---|---|---|---|"]
        for (procs, devices, pipeline), group in sorted(process_groups.items(), key=lambda kv: (kv[0][2], kv[0][:2])):
            out.append(f"| {procs} x {devices} | {pipeline} | {cell(group, 'images_per_sec')} | "
                       f"{cell(group, 'peak_rss_mb')} | {cell(group, 'startup_seconds')} | {len(group)} | "
                       f"{', '.join(sorted({g['commit'] for g in group}))} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("memory", "processes", "report"))
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--folder", default="", help="where the PNGs go (default: a folder in the temp dir)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.what == "report":
        print(report())
        return
    memory(args) if args.what == "memory" else processes(args)


if __name__ == "__main__":
    main()
