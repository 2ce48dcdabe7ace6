"""Command line: translate your own images with a trained translation run (CycleGAN or pix2pix).

    python -m gen_jax.translate --workdir=RUN --direction=a2b|b2a --input=FOLDER_OR_NPZ --output=FOLDER

--input is a folder of PNG/JPEG images or an .npz with 'images' (uint8 0..255 or float [0, 1], [N, H, W, C]);
every image must have the size and channels of the direction's source domain (a pix2pix run: a2b only, its
inputs' size). Writes one PNG per image
(the input's file name, or 000000.png... for an .npz) in --output, in batches. The run opens through
`training.runs.restore_run`; bad input is one `error:` line (exit status 2).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image

from gen_jax import data
from gen_jax.data.lazy import image_files
from gen_jax.errors import UserError
from gen_jax.evaluation import sample_quality
from gen_jax.families import translation
from gen_jax.training.runs import restore_run

DIRECTIONS = {"a2b": ("g_ab", "shape_a"), "b2a": ("g_ba", "shape_b")}
_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_folder(folder: str, channels: int) -> tuple[list[str], np.ndarray]:
    """(file names, float32 [N, H, W, channels] in [0, 1]) of the images in `folder`, decoded as training decodes
    image folders (`data.lazy.image_files`); grey images are repeated to RGB, colour ones become their luma
    (ITU-R 601, as PIL's grey conversion) for a grey domain."""
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(_SUFFIXES))
    if not names:
        raise UserError(f"{folder} holds no PNG or JPEG images")
    images = np.asarray(image_files([os.path.join(folder, n) for n in names], where=folder))
    if channels == 1 and images.shape[-1] == 3:
        images = (images @ np.float32([0.299, 0.587, 0.114]))[..., None]
    elif channels == 3 and images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return names, images


def read_input(path: str, channels: int) -> tuple[list[str], np.ndarray]:
    """(output names, images [N, H, W, C] in [0, 1]) from a folder of images or an .npz with 'images'."""
    if os.path.isdir(path):
        names, images = read_folder(path, channels)
        return [os.path.splitext(n)[0] + ".png" for n in names], images
    if not os.path.exists(path):
        raise UserError(f"--input {path} does not exist")
    images, _ = sample_quality.load_samples(path)
    images = images[..., None] if images.ndim == 3 else images
    return [f"{i:06d}.png" for i in range(len(images))], images.astype(np.float32) / 255.0


def check_shape(images: np.ndarray, shape: tuple, direction: str) -> None:
    if tuple(images.shape[1:]) != tuple(shape):
        raise UserError(f"--direction={direction} takes images of {shape[0]}x{shape[1]} with {shape[2]} channel(s); "
                        f"got {images.shape[1]}x{images.shape[2]} with {images.shape[3]}")


def write_pngs(folder: str, names: list[str], images01: np.ndarray) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, image in zip(names, data.quantize(images01)):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(os.path.join(folder, name))


def translate_files(workdir: str, direction: str, source: str, output: str, *, batch_size: int = 256) -> int:
    """Translates the images at `source` with the run in `workdir` into PNGs in `output`; returns how many."""
    if direction not in DIRECTIONS:
        raise UserError(f"--direction must be a2b or b2a, got {direction!r}")
    run = restore_run(workdir)
    if run.config.task == "cyclegan":
        network, shape_of = DIRECTIONS[direction]
        shape = getattr(run.dataset, shape_of)
    elif run.config.task == "pix2pix":  # one direction: inputs to targets
        if direction != "a2b":
            raise UserError("a pix2pix run translates one way, inputs to targets: --direction=a2b")
        network, shape = "generator", run.dataset.input_shape
    else:
        raise UserError(f"{workdir} holds a {run.config.task!r} run, not a translation (cyclegan or pix2pix) run")
    names, images = read_input(source, shape[-1])
    check_shape(images, shape, direction)
    translated = translation.translate_all(run.task.modules[network], run.state[network].params, images,
                                           batch_size=batch_size)
    write_pngs(output, names, translated)
    return len(names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.translate", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a translation run (train.py --config=configs/cyclegan.py)")
    parser.add_argument("--direction", default="a2b", help="a2b or b2a")
    parser.add_argument("--input", required=True, help="a folder of PNG/JPEG images, or an .npz with 'images'")
    parser.add_argument("--output", required=True, help="folder for the translated PNGs")
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        count = translate_files(args.workdir, args.direction, args.input, args.output, batch_size=args.batch_size)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"translated {count} images ({args.direction}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
