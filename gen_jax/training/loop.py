"""The one train loop: every family (VAE, autoencoders, GANs) runs through `train(config, workdir)`.

The loop maps the task's per-device step over all local devices with `jax.pmap` (axis 'batch'), keeps the
training set resident on the devices and gathers each batch there from indices computed on the host, runs
`train.steps_per_call` steps per compiled call (`lax.scan`), reads metrics only at log steps, writes sample
grids, checkpoints and metrics under the workdir, resumes from the latest checkpoint, and saves one on SIGINT
or SIGTERM before returning.
"""
from __future__ import annotations

import functools
import json
import math
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from tqdm.auto import tqdm

from gen_jax import config as config_lib
from gen_jax import data, images
from gen_jax.parallel import replicate, unreplicate
from gen_jax.training import hooks, tasks, tensorboard
from gen_jax.training.checkpoint import Checkpointer

AXIS = "batch"


def device_steps(train_step, state, train_images, train_labels, indices, first_step, *, key):
    """Runs indices.shape[0] consecutive steps on one device; batches are gathered from resident data.

    indices: int32 [k, local_batch] rows of this device's share of each global batch. The key of step s is
    fold_in(key, s). Metrics are averaged over the k steps.
    """

    def one_step(state, idx, step):
        batch = {"image": train_images[idx], "label": train_labels[idx]}
        return train_step(state, batch, jax.random.fold_in(key, step))

    if indices.shape[0] == 1:  # no scan: XLA:CPU runs convolutions inside scan far slower (jax#12868)
        return one_step(state, indices[0], first_step)
    state, metrics = lax.scan(lambda s, xs: one_step(s, *xs), state,
                              (indices, first_step + jnp.arange(indices.shape[0])))
    return state, jax.tree.map(lambda m: m.mean(axis=0), metrics)


def _next_chunk(step: int, train) -> int:
    """Steps to run in the next call: steps_per_call, cut short at the next log/sample/save/eval point."""
    periods = [train.log_every, train.sample_every, train.checkpoint_every] + ([train.eval_every] * (train.eval_every > 0))
    to_event = min(p - step % p for p in periods)
    return min(train.steps_per_call, to_event, train.steps - step)


class _StopOnSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks between calls, so it can save before exiting."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _write_jsonl(path: str, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _host_metrics(metrics, step: int) -> dict:
    """Device metrics -> floats at a log step; a NaN or inf stops training with the step that produced it."""
    values = {k: float(v) for k, v in jax.device_get(unreplicate(metrics)).items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite {', '.join(bad)} at step {step}: {values}")
    return values


def _write_pictures(task, state, dataset, key, workdir: str, step: int, board=None) -> None:
    pictures = task.pictures(state, dataset, key)
    for name, pics in pictures.items():
        images.save_grid(os.path.join(workdir, "samples", f"{name}_{step:06d}.png"), np.asarray(pics))
    if board is not None:
        board.pictures(step, pictures)


def _evaluate(task, state, dataset, key, workdir: str, step: int, scorer=None, best=None, board=None) -> dict:
    results = task.evaluate(state, dataset, key)
    if scorer is not None:  # sample quality in a classifier's space (eval.classifier_dir)
        results = {**results, **scorer(state, key)}
    row = {f"eval/{k}": v for k, v in results.items()}
    _write_jsonl(os.path.join(workdir, "metrics.jsonl"), {"step": step, **row})
    if board is not None:
        board.scalars(step, row)
    if best is not None:  # keep the best checkpoint by eval.best_metric
        best.update(step, state, results)
    return results


def train(config, workdir: str) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns a summary.

    Returns {"step": last step, "interrupted": signal number or None, "eval": final eval results}.
    """
    config = config_lib.finalize(config)
    train_cfg = config.train
    os.makedirs(workdir, exist_ok=True)
    devices = jax.local_devices()
    num_devices = len(devices)
    dataset = data.from_config(config.data)
    num_train = len(dataset.train_images)
    local_batch = data.check_batching(num_train, config.data.batch_size, num_devices)
    task = tasks.build(config, dataset)
    scorer, best = hooks.sample_scorer(config, dataset, task), hooks.best_checkpoint(config, workdir)

    root = jax.random.key(config.seed)  # one stream per purpose
    init_key, train_key, picture_key, eval_key = (jax.random.fold_in(root, i) for i in range(4))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=train_cfg.keep_checkpoints)
    state = jax.jit(task.init_state)(init_key)
    step = checkpointer.latest_step() or 0
    if step:
        state = checkpointer.restore(state, step)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    board = tensorboard.Writer(workdir, start_step=step)  # workdir/tensorboard/: tensorboard --logdir=workdir
    board.config(config, step)

    parallel_steps = jax.pmap(functools.partial(device_steps, task.train_step, key=train_key),
                              axis_name=AXIS, donate_argnums=(0,))
    # XLA:CPU's cross-device all-reduce can deadlock when calls are queued back to back (seen with 2 forced
    # host devices): on CPU with several devices, wait for each call to finish.
    wait_each_call = num_devices > 1 and devices[0].platform == "cpu"
    state_r, train_images, train_labels = replicate(
        (state, dataset.train_images, dataset.train_labels), devices, AXIS)
    del state

    summary = {"interrupted": None}
    with _StopOnSignal() as stop, tqdm(total=train_cfg.steps, initial=step, disable=not train_cfg.progress,
                                       dynamic_ncols=True, desc=config.task) as bar:
        timer_step, timer_start, first_call = step, time.perf_counter(), True
        while step < train_cfg.steps and stop.signum is None:
            k = _next_chunk(step, train_cfg)
            idx = data.batch_indices(config.seed, step, k, num_examples=num_train, batch_size=config.data.batch_size)
            idx = idx.reshape(k, num_devices, local_batch).transpose(1, 0, 2)
            state_r, metrics = parallel_steps(state_r, train_images, train_labels, idx,
                                              np.full((num_devices,), step, np.int32))
            if wait_each_call or first_call:
                jax.block_until_ready(state_r)
            step += k
            bar.update(k)
            if first_call:  # exclude compilation from the throughput
                timer_step, timer_start, first_call = step, time.perf_counter(), False
            if step % train_cfg.log_every == 0 or step == train_cfg.steps:
                values = _host_metrics(metrics, step)
                now = time.perf_counter()
                if step > timer_step:
                    values["images_per_sec"] = (step - timer_step) * config.data.batch_size / (now - timer_start)
                timer_step, timer_start = step, now
                _write_jsonl(metrics_path, {"step": step, **values})
                board.scalars(step, values)
                bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "images_per_sec")
                                 or k.endswith("_loss")}, refresh=False)
            if step % train_cfg.sample_every == 0:
                _write_pictures(task, unreplicate(state_r), dataset, picture_key, workdir, step, board)
            if step % train_cfg.checkpoint_every == 0:
                checkpointer.save(step, unreplicate(state_r))
            if train_cfg.eval_every and step % train_cfg.eval_every == 0 and step < train_cfg.steps:
                _evaluate(task, unreplicate(state_r), dataset, eval_key, workdir, step, scorer, best, board)
        state = jax.device_get(unreplicate(state_r))
        checkpointer.save(step, state)
        summary["interrupted"] = stop.signum

    summary["step"] = step
    if stop.signum is None:
        _write_pictures(task, state, dataset, picture_key, workdir, step, board)
        results = _evaluate(task, state, dataset, eval_key, workdir, step, scorer, best, board)
        summary["eval"] = results
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump({"step": step, "data": config.data.source, **results}, f, indent=2)
        images.plot_curves(metrics_path, os.path.join(workdir, "curves.png"))
        images.animate_grids(os.path.join(workdir, "samples"))  # samples/NAME.gif: each grid over training
    checkpointer.close()
    board.close()
    return summary

