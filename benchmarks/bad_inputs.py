"""A sweep of bad inputs across the four entry points (train.py, gen_jax.sample, gen_jax.evaluate,
gen_jax.applications), each run as a subprocess with a time limit.

    python benchmarks/bad_inputs.py [--jobs=2] [--only=SUBSTRING] [--write_docs]

Every case states what a good program does: `error` (exit code 2, no traceback, the last stderr line an
`error:` line, or argparse's `prog: error:` for malformed arguments), `ok` (exit code 0; some must also print a
warning, e.g. a corrupt checkpoint that was skipped) or `interrupt` (exit code 130 with one line). It counts raw
tracebacks, silent acceptances (exit 0 where an error was due) and other mismatches, prints the table and, with
--write_docs, replaces the table in docs/failure-modes.md. Exit status 1 if any case failed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "failure-modes.md")
TIMEOUT_S = 150
TINY = ["--config.train.steps=10", "--config.train.log_every=5", "--config.train.sample_every=10",
        "--config.train.checkpoint_every=5", "--config.train.progress=False", "--config.data.batch_size=32"]
VAE = TINY + ["--config.model.hidden_dims=16", "--config.model.latent_dim=2"]
GAN = TINY + ["--config=configs/gan.py", "--config.generator.hidden_dims=16", "--config.discriminator.hidden_dims=16"]
AE = TINY + ["--config=configs/ae.py", "--config.model.hidden_dims=16", "--config.model.code_dim=4"]
CYCLEGAN = TINY + ["--config=configs/cyclegan.py", "--config.data.batch_size=8"]


@dataclasses.dataclass
class Case:
    name: str
    tool: str                  # train | sample | evaluate | applications
    args: list[str]            # {tmp}, {vae}, {gan}, {ae}, {fixtures} are filled in
    expect: str = "error"      # error | ok | interrupt
    pattern: str = ""          # regex the relevant stderr line must match
    setup: Callable[[str, str], None] | None = None  # setup(tmp, fixtures) before the run
    recovery: str = ""         # what the user does next (for docs/failure-modes.md)
    signal_after_s: float = 0  # >0: send SIGINT after that many seconds


def command(case: Case) -> list[str]:
    if case.tool == "train":
        return [sys.executable, os.path.join(ROOT, "train.py")]
    return [sys.executable, "-m", f"gen_jax.{case.tool}"]


# ------------------------------------------------------------------------------------------------ fixtures
def _train(workdir: str, args: list[str]) -> None:
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", *args],
                            capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    if result.returncode:
        raise RuntimeError(f"fixture {workdir} failed:\n{result.stderr[-3000:]}")


def _env() -> dict:
    cache = os.path.join(tempfile.gettempdir(), "gen_jax_test_xla_cache")
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5", "PYTHONPATH": ROOT}


def _digit_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    return (digits.images[:n] / 16 * 255).astype(np.uint8), digits.target[:n]


def _write_idx(directory: str, *, gz: bool = True) -> None:
    os.makedirs(directory, exist_ok=True)
    images, labels = _digit_images(200)
    for prefix, sl in (("train", slice(0, 150)), ("t10k", slice(150, 200))):
        for kind, array in (("images-idx3-ubyte", images[sl]), ("labels-idx1-ubyte", labels[sl].astype(np.uint8))):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            path = os.path.join(directory, f"{prefix}-{kind}" + (".gz" if gz else ""))
            with (gzip.open if gz else open)(path, "wb") as f:
                f.write(header + array.tobytes())


def _write_folder(directory: str, n: int = 40, *, classes=("0", "1"), splits=None, size=8, bits=8) -> None:
    from PIL import Image
    images, labels = _digit_images(n)
    for i, (image, label) in enumerate(zip(images, labels)):
        cls = classes[label % len(classes)]
        split = "" if splits is None else splits[i % len(splits)]
        folder = os.path.join(directory, split, cls)
        os.makedirs(folder, exist_ok=True)
        im = Image.fromarray(image).resize((size, size))
        if bits == 16:
            im = Image.fromarray(np.asarray(im).astype(np.uint16) * 257)
        im.save(os.path.join(folder, f"{i}.png"))


def make_fixtures(fixtures: str) -> None:
    """Trained tiny runs (VAE, GAN, autoencoder), data folders and a classifier, shared by the cases."""
    os.makedirs(fixtures, exist_ok=True)
    steps = [("vae", VAE), ("gan", GAN), ("ae", AE)]
    for name, args in steps:
        if not os.path.exists(os.path.join(fixtures, name, "eval.json")):
            _train(os.path.join(fixtures, name), args)
    if not os.path.exists(os.path.join(fixtures, "classifier", "classifier.json")):
        subprocess.run([sys.executable, "-m", "gen_jax.classifier", "--data=digits",
                        f"--workdir={os.path.join(fixtures, 'classifier')}", "--epochs=1", "--batch_size=64",
                        '--options={"widths": [4, 8], "feature_dim": 16, "dropout": 0.0}'],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600, check=True)
    with open(os.path.join(fixtures, "a_file"), "w") as f:
        f.write("not a folder\n")


def _copy_run(name: str):
    def setup(tmp, fixtures):
        shutil.copytree(os.path.join(fixtures, name), os.path.join(tmp, "run"))
    return setup


def _then(*setups):
    def setup(tmp, fixtures):
        for s in setups:
            s(tmp, fixtures)
    return setup


def _latest_step_dir(tmp: str) -> str:
    root = os.path.join(tmp, "run", "checkpoints")
    return os.path.join(root, str(max(int(d) for d in os.listdir(root) if d.isdigit())))


def _files(directory: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(directory) for f in files]


def _garble(tmp, fixtures):
    for path in _files(_latest_step_dir(tmp)):
        with open(path, "wb") as f:
            f.write(b"\x00garbage")


def _truncate_data(tmp, fixtures):
    for path in _files(_latest_step_dir(tmp)):
        if os.sep + "d" + os.sep in path:
            os.truncate(path, os.path.getsize(path) // 2)


def _flip_bytes(tmp, fixtures):
    for path in _files(_latest_step_dir(tmp)):
        if os.sep + "d" + os.sep in path:
            data = bytearray(open(path, "rb").read())
            for i in range(len(data) // 3, min(len(data), len(data) // 3 + 64)):
                data[i] ^= 0xFF
            open(path, "wb").write(bytes(data))


def _drop_metadata(tmp, fixtures):
    os.remove(os.path.join(_latest_step_dir(tmp), "default", "_METADATA"))


def _empty_step(tmp, fixtures):
    os.makedirs(os.path.join(tmp, "run", "checkpoints", "999"))


def _stray_files(tmp, fixtures):
    os.makedirs(os.path.join(tmp, "run", "checkpoints", "notes"))
    open(os.path.join(tmp, "run", "checkpoints", "1000"), "w").write("a file named like a step\n")


def _garble_all(tmp, fixtures):
    for step in os.listdir(os.path.join(tmp, "run", "checkpoints")):
        for path in _files(os.path.join(tmp, "run", "checkpoints", step)):
            open(path, "wb").write(b"\x00garbage")


def _config_json(text: str):
    def setup(tmp, fixtures):
        open(os.path.join(tmp, "run", "config.json"), "w").write(text)
    return setup


def _file(relative: str, text: str = "", mode: str = "w"):
    def setup(tmp, fixtures):
        path = os.path.join(tmp, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(text)
    return setup


def _mkdir(relative: str):
    return lambda tmp, fixtures: os.makedirs(os.path.join(tmp, relative), exist_ok=True)


def _idx(gz=True, then=None):
    def setup(tmp, fixtures):
        _write_idx(os.path.join(tmp, "idx"), gz=gz)
        if then:
            then(os.path.join(tmp, "idx"))
    return setup


def _truncate_file(name, keep):
    def edit(directory):
        path = os.path.join(directory, name)
        data = open(path, "rb").read()
        open(path, "wb").write(data[:keep] if keep >= 0 else data[:len(data) + keep])
    return edit


def _folder(**kwargs):
    return lambda tmp, fixtures: _write_folder(os.path.join(tmp, "images"), **kwargs)


def _folder_then(edit, **kwargs):
    def setup(tmp, fixtures):
        _write_folder(os.path.join(tmp, "images"), **kwargs)
        edit(os.path.join(tmp, "images"))
    return setup


def _npz(**arrays):
    return lambda tmp, fixtures: np.savez(os.path.join(tmp, "s.npz"), **arrays)


# ------------------------------------------------------------------------------------------------ the cases
def cases() -> list[Case]:
    w = ["--workdir={tmp}/run"]
    c = []

    def train(name, extra, expect="error", pattern="", setup=None, recovery="", base=VAE):
        c.append(Case(name, "train", [*w, *base, *extra], expect, pattern, setup, recovery))

    fix_key = "fix the named key (the message says what is allowed)"
    # config values (each checked in config.finalize, before data, model or compilation)
    for key, value, pat in [
        ("optim.learning_rate", "0", "learning_rate must be a positive"),
        ("optim.learning_rate", "-1e-3", "learning_rate must be a positive"),
        ("optim.learning_rate", "nan", "learning_rate must be a positive"),
        ("optim.learning_rate", "inf", "learning_rate must be a positive"),
        ("model.latent_dim", "0", "latent_dim must be a positive"),
        ("model.latent_dim", "-3", "latent_dim must be a positive"),
        ("model.hidden_dims", "0", "hidden_dims must be positive"),
        ("model.hidden_dims", "-5,3", "hidden_dims must be positive"),
        ("loss.likelihood", "poisson", "likelihood must be one of"),
        ("loss.beta", "-1", "beta must be >= 0"),
        ("loss.kl_warmup_steps", "-10", "kl_warmup_steps must be >= 0"),
        ("train.steps", "0", "train.steps must be positive"),
        ("train.steps", "-5", "train.steps must be positive"),
        ("train.steps", "abc", "train.steps=abc"),
        ("train.steps", "1.5", "train.steps=1.5"),
        ("train.steps_per_call", "0", "steps_per_call must be positive"),
        ("train.log_every", "0", "log_every must be positive"),
        ("train.sample_every", "-1", "sample_every must be positive"),
        ("train.checkpoint_every", "0", "checkpoint_every must be positive"),
        ("train.keep_checkpoints", "0", "keep_checkpoints must be positive"),
        ("train.eval_every", "-1", "eval_every must be >= 0"),
        ("train.on_nonfinite", "ignore", "on_nonfinite must be one of"),
        ("train.progress", "maybe", "expected true or false"),
        ("train.stpes", "5", "Did you mean"),
        ("data.batch_size", "0", "batch size must be positive"),
        ("data.batch_size", "-64", "batch size must be positive"),
        ("data.batch_size", "5000", "larger than the training set"),
        ("data.source", "mnist", "unknown data source"),
        ("data.source", "", "unknown data source"),
        ("data.source", "idx:no-such-folder/mnist", "does not exist"),
        ("data.source", "folder:no-such-folder/images", "does not exist"),
        ("data.exclude_labels", "42", "not classes of"),
        ("data.exclude_labels", "0,1,2,3,4,5,6,7,8,9", "leave no training images"),
        ("optim.name", "adagrad", "optim.name must be one of"),
        ("optim.schedule", "linear", "schedule must be one of"),
        ("optim.b1", "1.5", "b1 must be in"),
        ("optim.b2", "-0.1", "b2 must be in"),
        ("optim.grad_clip_norm", "-1", "grad_clip_norm must be >= 0"),
        ("optim.weight_decay", "-0.1", "weight_decay must be >= 0"),
        ("model.name", "mlp_vea", "unknown model"),
        ("model.name", "mlp_generator", "model|latent|option"),
        ("model", "3", "is a section"),
        ("eval.batch_size", "0", "eval.batch_size must be positive"),
        ("eval.best_mode", "median", "best_mode must be one of"),
        ("eval.classifier_dir", "no-such-folder/classifier", "no classifier"),
        ("eval.iwae_samples", "-5", "iwae_samples must be >= 0"),
        ("eval.iwae_images", "-1", "iwae_images must be >= 0"),
        ("seed", "abc", "seed=abc"),
        ("task", "gan", "task"),
        ("task", "diffusion", "task"),
    ]:
        train(f"train --config.{key}={value}", [f"--config.{key}={value}"], pattern=pat, recovery=fix_key)
    train("train --config.train.steps (no =)", ["--config.train.steps"], pattern="section.key=value")
    train("train --nonsense=1 (unknown flag)", ["--nonsense=1"], pattern="bad flag|nonsense")
    for key, value, pat in [
        ("gan.loss", "foo", "gan.loss must be one of"),
        ("gan.n_critic", "0", "n_critic must be >= 1"),
        ("gan.n_critic", "3", "n_critic=3 must be >= 1 and divide"),
        ("gan.ema_decay", "2", "ema_decay must be in"),
        ("gan.real_label", "1.5", "real_label must be in"),
        ("gan.gp_weight", "-1", "gp_weight must be >= 0"),
        ("generator.latent_dim", "0", "latent_dim must be a positive"),
        ("discriminator.hidden_dims", "0", "hidden_dims must be positive"),
        ("optim_g.learning_rate", "0", "optim_g.learning_rate must be a positive"),
        ("optim_d.learning_rate", "-1", "optim_d.learning_rate must be a positive"),
        ("generator.name", "mlp_vae", "model|option|generator"),
        ("gan.clusters", "1", "clusters must be 0 .off. or at least 2"),
    ]:
        train(f"train gan --config.{key}={value}", [f"--config.{key}={value}"], pattern=pat, base=GAN,
              recovery=fix_key)
    train("train gan: batch 20 in 4 critic shares on 2 CPU devices (10 each)",
          ["--config.data.batch_size=20", "--config.gan.n_critic=4", "--config.train.cpu_devices=2"],
          pattern=r"per-device batch 10 .* must split into 4 equal shares \(gan.n_critic=4", base=GAN, recovery=fix_key)
    train("train cyclegan --config.data.exclude_labels=3", ["--config.data.exclude_labels=3"],
          pattern="exclude_labels applies to one-domain", base=CYCLEGAN, recovery=fix_key)
    for key, value, pat in [
        ("loss.reconstruction", "l2", "reconstruction must be one of"),
        ("loss.sparsity", "l3", "sparsity must be one of"),
        ("loss.corruption", "salt", "corruption must be one of"),
        ("loss.sparsity", "kl", "code_activation='sigmoid'"),
        ("model.code_dim", "0", "code_dim must be a positive"),
        ("loss.mask_rate", "2", "mask_rate must be in"),
        ("loss.noise_factor", "-1", "noise_factor must be >= 0"),
    ]:
        train(f"train ae --config.{key}={value}", [f"--config.{key}={value}"], pattern=pat, base=AE,
              recovery=fix_key)

    # config files
    cfg = lambda text: _file("cfg/bad.py", text)
    for name, text, pat in [
        ("a syntax error", "def get_config(:\n", "SyntaxError"),
        ("that raises on import", "raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("without get_config", "x = 1\n", "defines no get_config"),
        ("whose get_config raises", "def get_config():\n    return 1 / 0\n", "ZeroDivisionError"),
        ("whose get_config returns a dict", "def get_config():\n    return {'task': 'vae'}\n", "must return a ConfigDict"),
        ("that is empty", "", "defines no get_config"),
        ("that is binary", "\x00\x01\x02", "failed to load"),
    ]:
        c.append(Case(f"train --config: a file {name}", "train", [*w, "--config={tmp}/cfg/bad.py"], "error", pat,
                      cfg(text), "fix the config file"))
    c.append(Case("train --config: a missing file", "train", [*w, "--config={tmp}/nope.py"], "error", "No such file",
                  recovery="pass an existing config file"))
    c.append(Case("train --config: a folder", "train", [*w, "--config={tmp}/cfg"], "error", "No such file|config",
                  _mkdir("cfg")))

    # workdirs
    c.append(Case("train --workdir is a file", "train", ["--workdir={fixtures}/a_file", *VAE], "error", "is a file",
                  recovery="pass a folder"))
    c.append(Case("train --workdir under a file", "train", ["--workdir={fixtures}/a_file/run", *VAE], "error",
                  "cannot be created", recovery="pass a folder path"))
    c.append(Case("train --workdir not writable", "train", ["--workdir=/proc/gen_jax_run", *VAE], "error",
                  "cannot be created or written", recovery="pass a writable folder"))
    c.append(Case("train --workdir empty string", "train", ["--workdir=", *VAE], "error", "workdir"))

    # data files
    idx = ["--config.data.source=idx:{tmp}/idx"]
    train("train idx: a truncated .gz", idx, pattern="cannot read IDX file|truncated",
          setup=_idx(then=_truncate_file("train-images-idx3-ubyte.gz", -100)), recovery="download the file again")
    train("train idx: a .gz cut to its header", idx, pattern="cannot read IDX|truncated|magic",
          setup=_idx(then=_truncate_file("train-images-idx3-ubyte.gz", 12)))
    train("train idx: a raw file truncated", idx, pattern="truncated",
          setup=_idx(gz=False, then=_truncate_file("train-images-idx3-ubyte", -100)))
    train("train idx: a bad magic number", idx, pattern="bad magic",
          setup=_idx(gz=False, then=lambda d: open(os.path.join(d, "t10k-labels-idx1-ubyte"), "wb").write(b"PK\x03\x04")))
    train("train idx: labels missing", idx, pattern="has no",
          setup=_idx(then=lambda d: os.remove(os.path.join(d, "train-labels-idx1-ubyte.gz"))))
    train("train idx: images and labels disagree", idx, pattern="labels",
          setup=_idx(then=lambda d: shutil.copy(os.path.join(d, "t10k-labels-idx1-ubyte.gz"),
                                                os.path.join(d, "train-labels-idx1-ubyte.gz"))))
    train("train idx: a .gz that is not gzip", idx, pattern="cannot read IDX|gzip|magic",
          setup=_idx(then=lambda d: open(os.path.join(d, "train-images-idx3-ubyte.gz"), "wb").write(b"plain bytes")))
    folder = ["--config.data.source=folder:{tmp}/images", "--config.data.batch_size=8"]
    train("train folder: test split lacks a class", folder, pattern="test lacks",
          setup=_folder_then(lambda d: shutil.rmtree(os.path.join(d, "test", "1")), n=80, splits=("train", "test")),
          recovery="give train/ and test/ the same class folders")
    train("train folder: test split has an extra class", folder, pattern="test has extra",
          setup=_folder_then(lambda d: shutil.copytree(os.path.join(d, "test", "1"), os.path.join(d, "test", "7")),
                             n=80, splits=("train", "test")))
    train("train folder: no class subfolders", folder, pattern="no class subfolders",
          setup=_file("images/loose.png", "x"))
    train("train folder: class folders without images", folder, pattern="no PNG or JPEG",
          setup=_then(_mkdir("images/a"), _mkdir("images/b")))
    train("train folder: a corrupt PNG", folder, pattern="unreadable image",
          setup=_then(_folder(n=20), _file("images/0/broken.png", "not a png")))
    train("train folder: mixed image sizes", folder, pattern="mixed sizes",
          setup=_then(_folder(n=20), lambda tmp, fx: _write_folder(os.path.join(tmp, "images"), n=4, size=12,
                                                                    classes=("1",))))
    train("train folder: batch larger than a small folder", ["--config.data.source=folder:{tmp}/images",
                                                            "--config.data.batch_size=64"],
          pattern="larger than the training set", setup=_folder(n=40))
    train("train folder: 16-bit PNGs (trains, read as 16-bit)", folder, "ok", setup=_folder(n=40, bits=16))
    train("train folder: 40 images (small data trains and evaluates)", folder, "ok", setup=_folder(n=40))

    # resuming a workdir
    vae_run = _copy_run("vae")
    train("resume: corrupt config.json", [], pattern="config.json is corrupt",
          setup=_then(vae_run, _config_json("{not json")), recovery="restore config.json, or allow_config_change")
    train("resume: config.json names no task", [], pattern="no known task", setup=_then(vae_run, _config_json("[]")))
    train("resume: another learning rate", ["--config.optim.learning_rate=0.01"], pattern="optim.learning_rate",
          setup=vae_run, recovery="use the saved settings, a fresh --workdir, or allow_config_change")
    train("resume: another seed", ["--config.seed=3"], pattern="seed", setup=vae_run)
    train("resume: another data source", ["--config.data.source=folder:{tmp}/images", "--config.data.batch_size=8"],
          pattern="data.source", setup=_then(vae_run, _folder(n=40)))
    train("resume: another model size", ["--config.model.latent_dim=3"], pattern="model.latent_dim", setup=vae_run)
    train("resume: another model, allowed", ["--config.model.latent_dim=3", "--config.train.allow_config_change=True"],
          pattern="another model", setup=vae_run, recovery="use the config that trained it, or a fresh --workdir")
    train("resume: more steps (allowed: ok)", ["--config.train.steps=15"], "ok", setup=vae_run)
    warn = "corrupt.*newest good checkpoint"
    train("resume: latest checkpoint garbled (falls back)", ["--config.train.steps=15"], "ok", warn,
          _then(vae_run, _garble), "none: the run resumes from the newest good checkpoint")
    train("resume: latest checkpoint truncated (falls back)", ["--config.train.steps=15"], "ok", warn,
          _then(vae_run, _truncate_data))
    train("resume: latest checkpoint bytes flipped (falls back)", ["--config.train.steps=15"], "ok", warn,
          _then(vae_run, _flip_bytes))
    train("resume: latest checkpoint lacks metadata (falls back)", ["--config.train.steps=15"], "ok", warn,
          _then(vae_run, _drop_metadata))
    train("resume: an empty step folder (falls back)", ["--config.train.steps=15"], "ok", warn,
          _then(vae_run, _empty_step))
    train("resume: stray files in checkpoints/ (ignored)", ["--config.train.steps=15"], "ok", "",
          _then(vae_run, _stray_files))
    train("resume: every checkpoint corrupt", ["--config.train.steps=15"], pattern="every checkpoint .* is corrupt",
          setup=_then(vae_run, _garble_all), recovery="a fresh --workdir")
    train("resume: learning rate 1e10 (NaN stops, naming the step)",
          ["--config.train.steps=20", "--config.optim.learning_rate=1e10", "--config.train.allow_config_change=True"],
          pattern=r"non-finite .* at step \d+", setup=vae_run,
          recovery="rerun with a lower learning rate: the last good checkpoint is kept")
    train("resume: learning rate 1e10, on_nonfinite=skip (ok, counted)",
          ["--config.train.steps=20", "--config.optim.learning_rate=1e10", "--config.train.allow_config_change=True",
           "--config.train.on_nonfinite=skip"], "ok", "updates were skipped", setup=vae_run)
    c.append(Case("train SIGINT during start-up", "train", [*w, *VAE, "--config.train.steps=100000"], "interrupt",
                  "interrupted", signal_after_s=2.5, recovery="rerun the same command"))

    # gen_jax.sample
    run = ["--workdir={tmp}/run"]
    sample = lambda name, args, expect="error", pattern="", setup=vae_run, rec="": c.append(
        Case(f"sample {name}", "sample", args, expect, pattern, setup, rec))
    sample("--workdir missing", ["--workdir={tmp}/nope", "--out={tmp}/s.npz"], pattern="does not exist", setup=None)
    sample("--workdir is a file", ["--workdir={fixtures}/a_file", "--out={tmp}/s.npz"], pattern="not a folder",
           setup=None)
    sample("--workdir without config.json", ["--workdir={tmp}/empty", "--out={tmp}/s.npz"],
           pattern="not a training run", setup=_mkdir("empty"))
    sample("--num=0", [*run, "--num=0", "--out={tmp}/s.npz"], pattern="--num must be positive")
    sample("--num=-5", [*run, "--num=-5", "--out={tmp}/s.npz"], pattern="--num must be positive")
    sample("--num=abc", [*run, "--num=abc", "--out={tmp}/s.npz"], pattern="invalid int")
    sample("--out is a folder", [*run, "--out={tmp}/outdir.npz"], pattern="is a folder", setup=_then(
        vae_run, _mkdir("outdir.npz")))
    sample("--out lacks .npz", [*run, "--out={tmp}/samples"], pattern="must be a .npz")
    sample("--out not writable", [*run, "--out=/proc/samples.npz"], pattern="cannot")
    sample("--out under a file", [*run, "--out={fixtures}/a_file/s.npz"], pattern="cannot create")
    sample("--checkpoint=best without a best checkpoint", [*run, "--checkpoint=best", "--out={tmp}/s.npz"],
           pattern="holds no checkpoint")
    sample("--checkpoint=worst", [*run, "--checkpoint=worst", "--out={tmp}/s.npz"], pattern="invalid choice")
    sample("without --out", [*run], pattern="required")
    sample("a run with a corrupt config.json", [*run, "--out={tmp}/s.npz"], pattern="config.json is corrupt",
           setup=_then(vae_run, _config_json("{")))
    sample("an autoencoder run (cannot sample)", ["--workdir={tmp}/run", "--out={tmp}/s.npz"],
           pattern="cannot sample", setup=_copy_run("ae"))
    sample("a run whose checkpoints folder is gone", [*run, "--out={tmp}/s.npz"], pattern="holds no checkpoint",
           setup=_then(vae_run, lambda tmp, fx: shutil.rmtree(os.path.join(tmp, "run", "checkpoints"))))
    sample("a run whose latest checkpoint is corrupt (falls back)", [*run, "--num=10", "--out={tmp}/s.npz"], "ok",
           "corrupt", _then(vae_run, _garble))
    sample("a run whose every checkpoint is corrupt", [*run, "--out={tmp}/s.npz"], pattern="every checkpoint",
           setup=_then(vae_run, _garble_all))

    # gen_jax.evaluate
    clf = "--classifier={fixtures}/classifier"
    evaluate = lambda name, args, expect="error", pattern="", setup=vae_run: c.append(
        Case(f"evaluate {name}", "evaluate", args, expect, pattern, setup))
    evaluate("--num=-1", [*run, clf, "--num=-1"], pattern="--num must be positive")
    evaluate("--num=0", [*run, clf, "--num=0"], pattern="--num must be positive")
    evaluate("without --workdir or --samples", [clf], pattern="pass either")
    evaluate("with both --workdir and --samples", [*run, "--samples={tmp}/s.npz"], pattern="pass either")
    evaluate("--samples without --data", ["--samples={tmp}/s.npz", clf], pattern="needs --data")
    evaluate("--samples missing", ["--samples={tmp}/nope.npz", "--data=digits", clf], pattern="does not exist")
    evaluate("--samples not an npz", ["--samples={tmp}/s.npz", "--data=digits", clf], pattern="not a .npz",
             setup=_file("s.npz", "garbage"))
    evaluate("--samples without images", ["--samples={tmp}/s.npz", "--data=digits", clf], pattern="no 'images'",
             setup=_npz(labels=np.zeros(3, np.int32)))
    evaluate("--samples with the wrong image size", ["--samples={tmp}/s.npz", "--data=digits", clf],
             pattern="image|shape|size", setup=_npz(images=np.zeros((10, 5, 5, 1), np.uint8)))
    evaluate("--samples with 1-D images", ["--samples={tmp}/s.npz", "--data=digits", clf], pattern="must be",
             setup=_npz(images=np.zeros((10,), np.uint8)))
    evaluate("--data unknown", ["--samples={tmp}/s.npz", "--data=mnist", clf], pattern="unknown data source",
             setup=_npz(images=np.zeros((10, 8, 8, 1), np.uint8)))
    evaluate("--workdir missing", ["--workdir={tmp}/nope", clf], pattern="does not exist", setup=None)
    evaluate("a run without a classifier", [*run], pattern="no classifier")
    evaluate("--classifier missing", [*run, "--classifier={tmp}/nope"], pattern="no classifier")
    evaluate("--checkpoint=best without one", [*run, clf, "--checkpoint=best"], pattern="holds no checkpoint")
    evaluate("--split=valid", [*run, clf, "--split=valid"], pattern="invalid choice")
    evaluate("an autoencoder run", ["--workdir={tmp}/run", clf], pattern="cannot sample", setup=_copy_run("ae"))
    evaluate("a run with a corrupt config.json", [*run, clf], pattern="config.json is corrupt",
             setup=_then(vae_run, _config_json("nope")))
    evaluate("--out not writable", [*run, clf, "--num=20", "--out=/proc/eval.json"], pattern="cannot write")

    # gen_jax.applications
    apps = lambda name, args, expect="error", pattern="", setup=None: c.append(
        Case(f"applications {name}", "applications", args, expect, pattern, setup))
    for task in ("reduce", "denoise", "generate", "iwae"):
        apps(f"{task} on a missing workdir", [task, "--workdir={tmp}/nope"], pattern="does not exist")
    apps("compress with a missing workdir", ["compress", "--workdir={tmp}/run", "--workdir={tmp}/nope"],
         pattern="does not exist", setup=_copy_run("ae"))
    apps("reduce on a GAN run", ["reduce", "--workdir={tmp}/run"], pattern="need an autoencoder or VAE",
         setup=_copy_run("gan"))
    apps("reduce on an empty folder", ["reduce", "--workdir={tmp}/empty"], pattern="not a training run",
         setup=_mkdir("empty"))
    apps("iwae on an autoencoder run", ["iwae", "--workdir={tmp}/run"], pattern="VAE|vae", setup=_copy_run("ae"))
    apps("iwae --samples=0", ["iwae", "--workdir={tmp}/run", "--samples=0"], pattern="samples", setup=vae_run)
    apps("iwae --samples=-1", ["iwae", "--workdir={tmp}/run", "--samples=-1"], pattern="samples", setup=vae_run)
    apps("iwae --images=-1", ["iwae", "--workdir={tmp}/run", "--images=-1"], pattern="images", setup=vae_run)
    apps("iwae --samples=75 (not a multiple of the chunk of 50: ok)",
         ["iwae", "--workdir={tmp}/run", "--samples=75", "--images=20"], "ok", setup=vae_run)
    apps("denoise --noise_factor=-1", ["denoise", "--workdir={tmp}/run", "--noise_factor=-1"], pattern="noise_factor",
         setup=_copy_run("ae"))
    apps("denoise --corruption=masking --mask_rate=2", ["denoise", "--workdir={tmp}/run", "--corruption=masking",
                                                         "--mask_rate=2"], pattern="mask_rate", setup=_copy_run("ae"))
    apps("reduce --out not writable", ["reduce", "--workdir={tmp}/run", "--out=/proc/reduce.png"],
         pattern="cannot write", setup=_copy_run("ae"))
    apps("reduce --out lacks .png", ["reduce", "--workdir={tmp}/run", "--out={tmp}/picture"], pattern=r"\.png",
         setup=_copy_run("ae"))
    apps("anomaly without --config", ["anomaly", "--workdir={tmp}/root"], pattern="needs --config")
    apps("anomaly --held_out=abc", ["anomaly", "--config=configs/ae.py", "--workdir={tmp}/root", "--held_out=abc"],
         pattern="held_out")
    apps("anomaly --held_out=42", ["anomaly", "--config=configs/ae.py", "--workdir={tmp}/root", "--held_out=42",
                                   "--steps=5"], pattern="not classes of|held_out")
    apps("anomaly --steps=-5", ["anomaly", "--config=configs/ae.py", "--workdir={tmp}/root", "--steps=-5"],
         pattern="steps")
    apps("anomaly --config missing", ["anomaly", "--config={tmp}/nope.py", "--workdir={tmp}/root"],
         pattern="No such file")
    apps("an unknown task", ["cluster", "--workdir={tmp}/run"], pattern="invalid choice")
    apps("without --workdir", ["reduce"], pattern="required")
    return c


# ------------------------------------------------------------------------------------------------ running
def run_case(case: Case, fixtures: str) -> dict:
    tmp = tempfile.mkdtemp(prefix="bad_input_")
    try:
        if case.setup:
            case.setup(tmp, fixtures)
        args = [a.replace("{tmp}", tmp).replace("{fixtures}", fixtures) for a in case.args]
        start = time.perf_counter()
        proc = subprocess.Popen(command(case) + args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if case.signal_after_s:
            time.sleep(case.signal_after_s)
            proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            code = None
        seconds = time.perf_counter() - start
        verdict = judge(case, code, stderr)
        if not verdict["message"] and stdout.strip():  # an accepted input: what it printed last
            verdict["message"] = stdout.strip().splitlines()[-1]
        return {"case": case, **verdict, "seconds": seconds, "code": code}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _message(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    for line in reversed(lines):
        if line.startswith(("error:", "warning:", "interrupted")) or ": error:" in line:
            return line
    return lines[-1] if lines else ""


def judge(case: Case, code, stderr: str) -> dict:
    message = _message(stderr)
    if code is None:
        return {"verdict": "timeout", "message": message}
    if "Traceback (most recent call last)" in stderr:
        return {"verdict": "traceback", "message": message}
    if case.expect == "error":
        if code == 0:
            return {"verdict": "silent", "message": message}
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        clean = code == 2 and (last.startswith("error:") or ": error:" in last)
        if not clean:
            return {"verdict": "unclear", "message": message}
        if case.pattern and not re.search(case.pattern, last):
            return {"verdict": "wrong message", "message": last}
        return {"verdict": "clear error", "message": last}
    if case.expect == "interrupt":
        ok = code == 130 and re.search(case.pattern, stderr)
        return {"verdict": "interrupted" if ok else "unclear", "message": message}
    if code != 0:
        return {"verdict": "failed", "message": message}
    if case.pattern:
        line = next((l for l in stderr.splitlines() if re.search(case.pattern, l)), None)
        return {"verdict": "ok" if line else "silent", "message": line or message}
    return {"verdict": "ok", "message": message}


GOOD = ("clear error", "ok", "interrupted")


def table(results: list[dict]) -> str:
    rows = ["| # | entry point | input | expected | verdict | what the program says |", "| --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(results, 1):
        case = r["case"]
        message = r["message"].replace("|", "\\|").replace("\n", " ")
        message = message if len(message) < 260 else message[:257] + "..."
        message = re.sub(r"/tmp/bad_input_\w+", "TMP", message).replace(ROOT + "/", "")
        message = re.sub(r"/tmp/[\w./-]*?fixtures\w*", "FIXTURES", message)  # no path of this machine in docs
        rows.append(f"| {i} | {case.tool} | {case.name.replace('|', '/')} | {case.expect} | {r['verdict']} | "
                    f"`{message}` |")
    return "\n".join(rows)


def summary(results: list[dict]) -> str:
    counts = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    tools = {}
    for r in results:
        tools[r["case"].tool] = tools.get(r["case"].tool, 0) + 1
    return (f"{len(results)} bad inputs ({', '.join(f'{k} {v}' for k, v in sorted(tools.items()))}): "
            f"{', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}; raw tracebacks: "
            f"{counts.get('traceback', 0)}; silent acceptances: {counts.get('silent', 0)}")


def write_docs(results: list[dict]) -> None:
    text = open(DOC).read()
    start, end = "<!-- sweep:start -->", "<!-- sweep:end -->"
    body = (f"{start}\n{summary(results)}.\n\n{table(results)}\n{end}")
    text = text.split(start)[0] + body + text.split(end, 1)[1]
    with open(DOC, "w") as f:
        f.write(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the cases whose name contains one of these "
                                                   "(comma-separated)")
    parser.add_argument("--fixtures", default=os.path.join(tempfile.gettempdir(), "gen_jax_bad_input_fixtures"))
    parser.add_argument("--write_docs", action="store_true")
    args = parser.parse_args(argv)
    make_fixtures(args.fixtures)
    wanted = [part for part in args.only.split(",") if part]
    selected = [c for c in cases() if not wanted or any(part in c.name for part in wanted)]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda c: run_case(c, args.fixtures), selected))
    for i, r in enumerate(results, 1):
        mark = " " if r["verdict"] in GOOD else "!"
        print(f"{mark} {i:3d} {r['seconds']:5.1f}s {r['verdict']:13s} {r['case'].tool:12s} {r['case'].name}: "
              f"{r['message'][:160]}")
    print(summary(results))
    if args.write_docs and not args.only:
        write_docs(results)
    return 0 if all(r["verdict"] in GOOD for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
