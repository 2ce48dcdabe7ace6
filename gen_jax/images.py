"""Pictures people look at: image grids written as PNG during training, and plots of curves."""
from __future__ import annotations

import json
import os

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def grid(images: np.ndarray, *, ncols: int = 8, pad: int = 1) -> np.ndarray:
    """Tiles images [N, H, W, C] in [0, 1] into one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] picture."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    out = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = image
    return (out * 255 + 0.5).astype(np.uint8)


def enlarged_grid(images: np.ndarray, *, ncols: int = 8, min_cell: int = 56) -> np.ndarray:
    """`grid(images)` enlarged by nearest neighbour until each cell is at least `min_cell` pixels high, so small
    images such as 8x8 digits stay visible."""
    picture = grid(images, ncols=ncols)
    scale = max(1, -(-min_cell // np.shape(images)[1]))
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)


def save_grid(path: str, images: np.ndarray, *, ncols: int = 8, min_cell: int = 56) -> str:
    """Writes `enlarged_grid(images)` as a PNG."""
    picture = enlarged_grid(images, ncols=ncols, min_cell=min_cell)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(path)
    return path


def save_animation(frame_paths: list[str], out_path: str, *, duration_ms: int = 400) -> str | None:
    """Writes PNG frames (e.g. one fixed-noise grid per step) as a looping animated GIF; None if < 2 frames."""
    if len(frame_paths) < 2:
        return None
    frames = [Image.open(path).convert("RGB") for path in frame_paths]
    frames[0].save(out_path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return out_path


def animate_grids(samples_dir: str) -> list[str]:
    """One GIF per picture name from the grids `NAME_STEP.png` in `samples_dir` (step order): NAME.gif.

    Shows how a fixed-noise sample grid evolves over training.
    """
    if not os.path.isdir(samples_dir):
        return []
    series: dict[str, list[tuple[int, str]]] = {}
    for file in os.listdir(samples_dir):
        stem, ext = os.path.splitext(file)
        name, _, step = stem.rpartition("_")
        if ext == ".png" and name and step.isdigit():
            series.setdefault(name, []).append((int(step), os.path.join(samples_dir, file)))
    written = [save_animation([p for _, p in sorted(frames)], os.path.join(samples_dir, f"{name}.gif"))
               for name, frames in sorted(series.items())]
    return [path for path in written if path]


def plot_curves(metrics_path: str, out_path: str) -> str | None:
    """Plots every training metric in a metrics.jsonl against step (one panel each) as a PNG."""
    with open(metrics_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    series: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(row["step"])
                ys.append(value)
    if not series:
        return None
    ncols = min(3, len(series))
    nrows = -(-len(series) // ncols)
    fig = Figure(figsize=(4 * ncols, 2.8 * nrows))  # no pyplot: no global backend, nothing left open
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (key, (xs, ys)) in zip(axes.flat, sorted(series.items())):
        ax.plot(xs, ys, marker="." if len(xs) < 20 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    for ax in axes.flat[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    return out_path
