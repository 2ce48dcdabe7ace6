"""Each convolution of the conv VAE alone: forward, input gradient and kernel gradient, as XLA:CPU compiles them
by default (YNNPACK convolutions), with `parallel.CPU_COMPILER_OPTIONS` (XLA's own convolution kernels, what the
loop's step compiles with on CPU), and in PyTorch (oneDNN), at the per-device batch (64: the config's 128 on
two CPU devices), float32, on one core (`benchmarks.pin_to_core`): kernels against kernels, not thread pools.

  python benchmarks/conv_kernels.py          # prints the table, appends rows to the results file
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join("benchmarks", "conv_kernels_results.jsonl")
# configs/conv_vae.py's convolutions on 28x28 MNIST: name -> (height = width, input channels, output channels)
CONV_VAE_LAYERS = {"encoder Conv_0": (14, 4, 16), "encoder Conv_1": (7, 64, 32), "decoder Conv_0": (7, 32, 128),
                   "decoder Conv_1": (14, 32, 64), "decoder Conv_2": (28, 16, 1)}
PARTS = ("forward", "input gradient", "kernel gradient")


def best_ms(run, calls: int = 20, repeats: int = 5) -> float:
    """The fastest of `repeats` timings of `calls` calls of `run` (after one warm-up call), in ms per call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        times.append((time.perf_counter() - start) / calls)
    return 1e3 * min(times)


def xla_parts(hw: int, cin: int, cout: int, batch: int, compiler_options: dict | None) -> list[float]:
    """ms of `layers.conv_same`'s forward, input gradient and kernel gradient, compiled with the options."""
    import jax
    import numpy as np

    from gen_jax.models import layers
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, hw, hw, cin), np.float32)
    k = (0.1 * rng.standard_normal((3, 3, cin, cout))).astype(np.float32)
    g = rng.standard_normal((batch, hw, hw, cout), np.float32)
    parts = (lambda x, k, g: layers.conv_same(x, k),
             lambda x, k, g: jax.vjp(lambda x: layers.conv_same(x, k), x)[1](g)[0],
             lambda x, k, g: jax.vjp(lambda k: layers.conv_same(x, k), k)[1](g)[0])
    compiled = [jax.jit(part).lower(x, k, g).compile(compiler_options) for part in parts]
    return [best_ms(lambda: f(x, k, g).block_until_ready()) for f in compiled]


def torch_parts(hw: int, cin: int, cout: int, batch: int) -> list[float]:
    """ms of PyTorch's conv2d (padding 1, channels-last as the JAX side) forward and its two gradients."""
    import torch
    torch.set_num_threads(1)
    x = torch.randn(batch, cin, hw, hw).contiguous(memory_format=torch.channels_last)
    k = 0.1 * torch.randn(cout, cin, 3, 3)
    g = torch.randn(batch, cout, hw, hw).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return [best_ms(lambda: torch.nn.functional.conv2d(x, k, padding=1)),
                best_ms(lambda: torch.nn.grad.conv2d_input(x.shape, k, g, padding=1)),
                best_ms(lambda: torch.nn.grad.conv2d_weight(x, k.shape, g, padding=1))]


def measure(batch: int) -> list[dict]:
    import jax
    import torch

    from benchmarks import commit, cpu_model
    from gen_jax import parallel
    rows = []
    for name, (hw, cin, cout) in CONV_VAE_LAYERS.items():
        times = {"xla_ynnpack_ms": xla_parts(hw, cin, cout, batch, None),
                 "xla_own_ms": xla_parts(hw, cin, cout, batch, parallel.CPU_COMPILER_OPTIONS),
                 "torch_ms": torch_parts(hw, cin, cout, batch)}
        rows.append({"layer": name, "height_width": hw, "in_channels": cin, "out_channels": cout, "batch": batch,
                     "gflop_forward": 2 * batch * hw * hw * 9 * cin * cout / 1e9, "cores": len(os.sched_getaffinity(0)),
                     **{side: [round(t, 3) for t in ts] for side, ts in times.items()},
                     "commit": commit(), "jax": jax.__version__, "torch": torch.__version__, "cpu": cpu_model()})
    return rows



def table(rows: list[dict]) -> str:
    total = lambda row, side: sum(row[side])
    lines = ["| layer | forward GFLOP | XLA, YNNPACK convs (ms): fwd / input grad / kernel grad | XLA's own convs (ms) "
             "| PyTorch oneDNN (ms) | sums: YNNPACK / own / PyTorch |", "|---|---:|---:|---:|---:|---:|"]
    fmt = lambda ts: " / ".join(f"{t:.2f}" for t in ts)
    for row in rows:
        lines.append(f"| {row['layer']} ({row['height_width']}x{row['height_width']}, {row['in_channels']} -> "
                     f"{row['out_channels']}) | {row['gflop_forward']:.3f} | {fmt(row['xla_ynnpack_ms'])} | "
                     f"{fmt(row['xla_own_ms'])} | {fmt(row['torch_ms'])} | {total(row, 'xla_ynnpack_ms'):.2f} / "
                     f"{total(row, 'xla_own_ms'):.2f} / {total(row, 'torch_ms'):.2f} |")
    sums = [sum(total(row, side) for row in rows) for side in ("xla_ynnpack_ms", "xla_own_ms", "torch_ms")]
    lines.append(f"| all {len(rows)} | | | | | {sums[0]:.2f} / {sums[1]:.2f} / {sums[2]:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per convolution (the per-device batch)")
    parser.add_argument("--core", type=int, default=0, help="the core this process runs on")
    parser.add_argument("--out", default=RESULTS, help="append the rows here ('' : print only)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    from benchmarks import pin_to_core
    pin_to_core(args.core)  # before JAX starts
    rows = measure(args.batch)
    print(table(rows))
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
