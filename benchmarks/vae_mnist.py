"""The seed's VAE on MNIST, gen_jax against the PyTorch seed code, trained the same way in the same run.

Same architecture (784-256-128-20), batch 128, Adam 1e-3, 3000 steps, the same batches in the same order
(both sides use gen_jax.data.batch_indices' permutations); scored on the 10k test images as the negative ELBO
in nats (one posterior sample per image) plus per-pixel reconstruction MSE. Prints both and the images/s of
each (training only, compilation/warm-up excluded).

    python -m benchmarks.vae_mnist [--data=../shared/data/mnist] [--steps=3000] [--workdir=runs/bench_vae_mnist]
"""
import argparse
import json
import os
import shutil
import subprocess

import numpy as np

from benchmarks import torch_seed
from gen_jax import data
from gen_jax.config import vae_config
from gen_jax.training.loop import train

HERE = os.path.dirname(os.path.abspath(__file__))


def run_jax(data_dir: str, steps: int, workdir: str) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    config = vae_config()
    config.data.source = f"idx:{data_dir}"
    config.data.batch_size = 128
    config.train.steps, config.train.steps_per_call, config.train.progress = steps, 20, False
    config.train.log_every = config.train.sample_every = config.train.checkpoint_every = 500
    result = train(config, workdir)["eval"]
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    speeds = [r["images_per_sec"] for r in rows if "images_per_sec" in r]
    return {"neg_elbo": result["neg_elbo"], "recon_mse": result["recon_mse"],
            "images_per_sec": float(np.median(speeds))}


def run_torch(data_dir: str, steps: int) -> dict:
    ds = data.load(f"idx:{data_dir}")
    model, ips = torch_seed.train_autoencoder("vae", ds.train_images, steps=steps, batch_size=128, lr=1e-3,
                                              latent_dim=20, num_threads=os.cpu_count())
    return {"neg_elbo": torch_seed.vae_neg_elbo(model, ds.test_images),
            "recon_mse": torch_seed.reconstruction_mse(model, ds.test_images), "images_per_sec": ips}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "mnist"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--workdir", default="runs/bench_vae_mnist")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    results = {"gen_jax": run_jax(args.data, args.steps, args.workdir), "torch seed": run_torch(args.data, args.steps)}
    print(f"VAE on MNIST, {args.steps} steps, batch 128, Adam 1e-3 (commit {commit}, {os.cpu_count()} CPU cores)")
    print(f"{'':12s} {'test neg-ELBO (nats)':>22s} {'recon MSE':>10s} {'images/s':>10s}")
    for name, r in results.items():
        print(f"{name:12s} {r['neg_elbo']:22.2f} {r['recon_mse']:10.5f} {r['images_per_sec']:10.0f}")
    ratio = results["gen_jax"]["images_per_sec"] / results["torch seed"]["images_per_sec"]
    print(f"speed ratio gen_jax / torch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
