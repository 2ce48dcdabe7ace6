"""Regenerates docs/gallery/: one small PNG per model family, each the final sample (or reconstruction) grid of
its config trained on the bundled digits through the one train loop (`train.py` does the same).

    python docs/gallery.py                    # every config in GALLERY, its default steps (a few minutes each)
    python docs/gallery.py --steps=300 --only=vae,gan
    python docs/gallery.py --data=idx:../shared/data/mnist --only=vae,gan   # writes NAME_mnist.png

The README's gallery section shows these files with this command; rerun it after changing a default config.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gen_jax import config as config_lib  # noqa: E402  (after the path insert, so a checkout runs as is)
from gen_jax.training.loop import train  # noqa: E402

# name -> (config file, picture the loop writes, what the picture shows)
GALLERY = {
    "vae": ("vae.py", "samples", "VAE prior samples"),
    "ae": ("ae.py", "reconstructions", "autoencoder: test digits and reconstructions"),
    "denoising_ae": ("denoising_ae.py", "reconstructions", "denoising autoencoder: digits and reconstructions"),
    "gan": ("gan.py", "samples", "GAN samples"),
    "dcgan": ("dcgan.py", "samples", "DCGAN samples"),
    "cgan": ("cgan.py", "class_samples", "conditional GAN: row c is digit c"),
    "wgan_gp": ("wgan_gp.py", "samples", "WGAN-GP samples"),
    "cyclegan": ("cyclegan.py", "a2b", "CycleGAN: digits, their translations, the translations carried back"),
    "superres": ("superres.py", "translations", "super-resolution: input, bicubic, output, target"),
}


def final_picture(workdir: str, picture: str) -> str:
    """The last `picture`_STEP.png the loop wrote in workdir/samples."""
    folder = os.path.join(workdir, "samples")
    files = sorted(f for f in os.listdir(folder) if f.startswith(picture + "_") and f[len(picture) + 1:-4].isdigit())
    return os.path.join(folder, files[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery"))
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: each config's default)")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(GALLERY))
    parser.add_argument("--data", default="", help="another data source (e.g. idx:../shared/data/mnist); the "
                                                   "pictures are then NAME_mnist.png (the source's last word)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(GALLERY)
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        config_file, picture, caption = GALLERY[name]
        overrides = {"train.progress": False, **({"data.source": args.data} if args.data else {})}
        if args.steps:
            overrides.update({"train.steps": args.steps, "train.sample_every": args.steps,
                              "train.checkpoint_every": args.steps})
        config = config_lib.load(os.path.join(ROOT, "configs", config_file), overrides)
        with tempfile.TemporaryDirectory() as workdir:
            start = time.perf_counter()
            train(config, workdir)
            suffix = f"_{os.path.basename(args.data.rstrip('/')).split(':')[-1]}" if args.data else ""
            out = os.path.join(args.out, f"{name}{suffix}.png")
            shutil.copyfile(final_picture(workdir, picture), out)
        print(f"{out}: {caption}, configs/{config_file}, {config.train.steps} steps, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
