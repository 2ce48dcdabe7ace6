"""The one train loop: every family (VAE, autoencoders, GANs, CycleGAN, pix2pix) runs through
`train(config, workdir)`.

The loop maps the task's per-device step over all local devices with `jax.pmap` (axis 'batch'), on one host or
many; it either keeps the training set resident on the devices and gathers each batch there from indices
computed on the host, or streams batches read ahead on host threads when the set does not fit
(`data.choose_pipeline`). It runs `train.steps_per_call` steps per compiled call (`lax.scan`), reads metrics
only at log steps, writes sample grids, checkpoints and metrics under the workdir, resumes from the latest
checkpoint, and saves one on SIGINT or SIGTERM before returning.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from tqdm.auto import tqdm

from gen_jax import config as config_lib
from gen_jax import data, distributed, files, images
from gen_jax.checkpoint import Checkpointer
from gen_jax.errors import ConfigError, DataError, UserError
from gen_jax.parallel import compiled_per_shapes, cpu_compiler_options, replicate, unreplicate, use_cpu_devices
from gen_jax.training import hooks, runs, steps, tasks, tensorboard

AXIS = "batch"


def _mean_of_applied(values, applied):
    """Mean over the steps whose update was applied (NaN when none was); the plain mean when all were."""
    kept = jnp.sum(jnp.where(applied, values, 0), axis=0) / jnp.maximum(jnp.sum(applied), 1)
    return jnp.where(jnp.all(applied), values.mean(axis=0), jnp.where(jnp.any(applied), kept, jnp.nan))


def device_steps(train_step, carry, batches, first_step, *, key, on_nonfinite: str = "stop"):
    """Runs k consecutive steps on one device, every update guarded against NaN and inf.

    train_step: step(state, batch, key) -> (state, metrics), a `steps` factory's; carry: (state, health), health
    as `steps.init_health`. batches: {batch key: [k, local_batch, ...]}, this device's share of k global batches.
    The key of step s is fold_in(key, s). Metrics are averaged over the k steps (over those whose update was
    applied). on_nonfinite: `steps.guard_nonfinite`'s mode.

    Over k > 1 steps the guard's select (a `jnp.where` over the whole state) runs only in a call where a step
    was not finite: the steps run unguarded, recording whether each one's metrics and updated state are finite,
    and their result stands when all were (it is then what the guarded steps give, bit for bit); otherwise the
    call runs again from its first state with every step guarded, which keeps the last good state and records
    the first bad step.
    """
    guarded = steps.guard_nonfinite(train_step, mode=on_nonfinite)
    step_key = lambda step: jax.random.fold_in(key, step)
    step_numbers = first_step + jnp.arange(next(iter(batches.values())).shape[0])
    if step_numbers.shape[0] == 1:  # one step: no loop around it
        carry, metrics = guarded(carry, jax.tree.map(lambda b: b[0], batches), step_key(first_step), first_step)
        return carry, {k: v for k, v in metrics.items() if k != "_ok"}

    def unguarded(state, xs):
        batch, step = xs
        state, metrics = train_step(state, batch, step_key(step))
        return state, (metrics, steps.update_is_finite(state, metrics))

    def all_guarded(carry):
        return lax.scan(lambda c, xs: guarded(c, xs[0], step_key(xs[1]), xs[1]), carry, (batches, step_numbers))

    state, health = carry
    new_state, (metrics, finite) = lax.scan(unguarded, state, (batches, step_numbers))
    accepted = steps.update_allowed(jnp.all(finite), health, on_nonfinite)
    carry, metrics = lax.cond(accepted, lambda: ((new_state, health), {**metrics, "_ok": finite}),
                              lambda: all_guarded(carry))
    applied = metrics.pop("_ok")
    return carry, jax.tree.map(lambda m: _mean_of_applied(m, applied), metrics)


def resident_steps(train_step, carry, train_data, indices, first_step, *, key, on_nonfinite: str = "stop"):
    """`device_steps` on batches gathered from resident data: train_data is `Task.train_data` on this device,
    indices {stream: int32 [k, local_batch]} the rows of this device's share of each global batch.

    All k batches are gathered before the steps: resident data read inside the scan's body would be copied into
    XLA's while loop on every call (a read-only argument cannot be aliased by the loop's buffers).
    """
    batches = {name: array[indices[stream]] for stream, arrays in train_data.items() for name, array in arrays.items()}
    return device_steps(train_step, carry, batches, first_step, key=key, on_nonfinite=on_nonfinite)


def _agreed(flag: bool, host_point: bool, multi_process: bool) -> bool:
    """A stop condition every process acts on at the same step: alone, at once; several, decided together at
    host points (any process's flag stops them all)."""
    if not multi_process:
        return flag
    return host_point and distributed.any_process(flag)


def _event_periods(train) -> list[int]:
    """How often the host reads the devices: log, sample, checkpoint and (when set) eval periods, in steps."""
    return [train.log_every, train.sample_every, train.checkpoint_every] + ([train.eval_every] * (train.eval_every > 0))


def _next_chunk(step: int, train) -> int:
    """Steps to run in the next call: steps_per_call, cut short at the next log/sample/save/eval point."""
    to_event = min(p - step % p for p in _event_periods(train))
    return min(train.steps_per_call, to_event, train.steps - step)


def _is_host_point(step: int, train) -> bool:
    """Whether the host reads device values after `step`: an event step, or the last."""
    return step == train.steps or any(step % p == 0 for p in _event_periods(train))


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


class NonFiniteError(UserError):
    """Training stopped at a NaN or inf (train.on_nonfinite='stop'); nothing non-finite was saved."""


def _host_metrics(metrics, step: int, skip_nonfinite: bool = False) -> dict:
    """Device metrics -> floats at a log step; a NaN or inf stops training with the step that produced it
    (with skip_nonfinite, they are left out: every update of the logged steps was skipped)."""
    values = {k: float(v) for k, v in unreplicate(metrics).items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad and skip_nonfinite:
        return {k: v for k, v in values.items() if k not in bad}
    if bad:
        raise NonFiniteError(f"non-finite {', '.join(bad)} at step {step}: {values}")
    return values


def _check_health(health_r, metric_names, train_cfg, checkpointer) -> int:
    """Reads the device's record of rejected (non-finite) updates at a host point; returns how many were
    skipped, or, with train.on_nonfinite='stop', raises NonFiniteError naming the step and the quantity."""
    health = {k: int(v) for k, v in unreplicate(health_r).items()}
    if train_cfg.on_nonfinite == "skip" or health["first_bad_step"] < 0:
        return health["rejected"]
    last = checkpointer.latest_step()
    checkpointer.close()
    names = ", ".join(steps.nonfinite_names(health["what"], metric_names)) or "a value"
    resume = (f"the last good checkpoint is step {last} in {checkpointer.directory}, which a rerun resumes from"
              if last is not None else "no checkpoint was saved before it")
    raise NonFiniteError(
        f"non-finite {names} at step {health['first_bad_step'] + 1}: that update was not applied and nothing "
        f"after it was saved; {resume}. Lower the learning rate, set optim.grad_clip_norm, or pass "
        f"--config.train.on_nonfinite=skip to skip such updates")


PICTURE_IMAGES = 32  # the test images a family's picture grids show (reconstructions: 4 rows of 8)


def _write_pictures(task, state, dataset, key, workdir: str, step: int, board=None) -> None:
    if isinstance(dataset, data.Dataset) and len(dataset.test_images) < PICTURE_IMAGES:  # a small data set:
        # its test images repeat to fill the grids
        rows = np.resize(np.arange(len(dataset.test_images)), PICTURE_IMAGES)
        dataset = dataclasses.replace(dataset, test_images=dataset.test_images[rows],
                                      test_labels=dataset.test_labels[rows])
    pictures = task.pictures(state, dataset, key)
    for name, pics in pictures.items():
        images.save_grid(os.path.join(workdir, "samples", f"{name}_{step:06d}.png"), np.asarray(pics))
    if board is not None:
        board.pictures(step, pictures)


def _evaluate(task, state, dataset, key, workdir: str, step: int, scorer=None, best=None, board=None,
              write: bool = True) -> dict:
    """Evaluates on every process (the best checkpoint is saved by all of them); only `write` ones write rows."""
    results = task.evaluate(state, dataset, key)
    if scorer is not None:  # sample quality in a classifier's space (eval.classifier_dir)
        results = {**results, **scorer(state, key)}
    row = {f"eval/{k}": v for k, v in results.items()}
    if write:
        _write_jsonl(os.path.join(workdir, "metrics.jsonl"), {"step": step, **row})
    if board is not None:
        board.scalars(step, row)
    if best is not None:  # keep the best checkpoint by eval.best_metric
        best.update(step, state, results)
    return results


def enable_compile_cache(directory: str) -> None:
    """JAX's persistent compilation cache in `directory`: a later run of the same model skips compiling."""
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program: a rerun compiles nothing


def _local_indices(config, step: int, num_steps: int, stream_sizes: dict, local_batch: int) -> dict:
    """This process's rows of the next global batches: {stream: int32 [local devices, num_steps, local_batch]}.

    Each global batch is split over all devices of all processes in order; process p feeds devices
    p * local_count ... (p + 1) * local_count - 1 of the pmapped axis.
    """
    local = jax.local_device_count()
    first = jax.process_index() * local
    return {name: data.batch_indices(config.seed, step, num_steps, num_examples=n, batch_size=config.data.batch_size,
                                     stream=i).reshape(num_steps, jax.device_count(), local_batch)
            [:, first:first + local].transpose(1, 0, 2)
            for i, (name, n) in enumerate(stream_sizes.items())}


def _resident_inputs(config, train_data, stream_sizes, local_batch, devices):
    """The resident pipeline: the training set copied to every local device once; each call's inputs are the
    data and the rows of its batches, gathered on the devices (`resident_steps`)."""
    resident = replicate(data.materialize(train_data), devices, AXIS)
    return lambda step, k: (resident, _local_indices(config, step, k, stream_sizes, local_batch))


def _streamed_inputs(config, train_data, first_step, local_batch, devices):
    """The streaming pipeline: this process's block of each step's batch read on host threads (Grain), k steps
    stacked per call as {batch key: [local devices, k, local_batch, ...]} (`device_steps`). Its position is the
    step, which the checkpoint holds, so a resumed run reads the batches an uninterrupted one would."""
    batches = data.step_batches(train_data, seed=config.seed, batch_size=config.data.batch_size,
                                first_step=first_step, num_steps=config.train.steps - first_step,
                                process_index=jax.process_index(), process_count=jax.process_count(),
                                threads=config.data.stream_threads, prefetch=config.data.stream_prefetch)

    def inputs(step, k):
        chunk = [next(batches) for _ in range(k)]
        return ({key: np.stack([b[key] for b in chunk]).reshape(k, len(devices), local_batch, *chunk[0][key].shape[1:])
                 .swapaxes(0, 1) for key in chunk[0]},)

    return inputs


def train(config, workdir: str) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns a summary.

    In a multi-process run (`distributed.initialize` first) every process calls this with the same config and
    workdir: each feeds its own devices, all save checkpoints together, and process 0 writes the other files.
    Returns {"step": last step, "interrupted": signal number or None, "out_of_time": whether train.time_budget
    ended it, "pipeline": 'resident' or 'stream' (how the training set reached the devices,
    `data.choose_pipeline`), "devices": how many devices of all processes trained it, "eval": final eval
    results}.
    """
    started = time.perf_counter()
    config = config_lib.finalize(config)
    train_cfg = config.train
    use_cpu_devices(train_cfg.cpu_devices)  # before anything starts JAX
    if train_cfg.compile_cache:
        enable_compile_cache(train_cfg.compile_cache)
    runs.prepare_workdir(workdir, config)  # usable, and a resume keeps the saved config; writes nothing
    primary, multi_process = distributed.is_primary(), jax.process_count() > 1
    report = (lambda line: print(line, file=sys.stderr)) if primary else (lambda line: None)
    devices = jax.local_devices()
    num_devices = jax.device_count()  # of all processes: the global batch is split over every one
    if train_cfg.cpu_devices and devices[0].platform == "cpu" and len(devices) != train_cfg.cpu_devices:
        report(f"warning: train.cpu_devices={train_cfg.cpu_devices} not applied: JAX has {len(devices)} CPU "
               f"device(s), set before train() (XLA_FLAGS, JAX_NUM_CPU_DEVICES, or JAX already started: call "
               f"gen_jax.parallel.use_cpu_devices({train_cfg.cpu_devices}) first); it only changes speed")
    dataset = tasks.load_data(config, lazy=True)  # the training set is decoded by the pipeline chosen below
    task = tasks.build(config, dataset)
    runs.state_shapes(task, config, dataset)  # a model that cannot be built is a ConfigError, before compiling
    stream_sizes = {name: len(next(iter(arrays.values()))) for name, arrays in task.train_data.items()}
    for size in stream_sizes.values():  # every stream holds at least one global batch, split evenly
        try:
            local_batch = data.check_batching(size, config.data.batch_size, num_devices)
        except DataError as e:
            split = devices[0].platform == "cpu" and train_cfg.cpu_devices == len(devices) > 1
            raise DataError(f"{e} (train.cpu_devices={train_cfg.cpu_devices}: set it to a divisor of the batch "
                            f"size, or 0)" if split else str(e)) from None
    if local_batch % task.batch_divisor:
        raise ConfigError(f"the per-device batch {local_batch} (data.batch_size {config.data.batch_size} over "
                          f"{num_devices} devices) must split into {task.batch_divisor} equal shares "
                          f"(gan.n_critic={task.batch_divisor} critic updates per step)")
    pipeline = data.choose_pipeline(config.data, task.train_data)  # resident or stream
    scorer, best = hooks.sample_scorer(config, dataset, task), hooks.best_checkpoint(config, workdir)

    root = jax.random.key(config.seed)  # one stream per purpose
    init_key, train_key, picture_key, eval_key = (jax.random.fold_in(root, i) for i in range(4))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=train_cfg.keep_checkpoints)
    state = jax.jit(task.init_state)(init_key)
    restored, step = checkpointer.restore_newest_good(state, report=report, set_aside=True)  # corrupt steps:
    state, step = (state, 0) if restored is None else (restored, step)                        # reported, moved aside
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    board = None
    if primary:
        runs.drop_metrics_after(metrics_path, step)  # no duplicate steps after a resume
        files.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
        board = tensorboard.Writer(workdir, start_step=step)  # workdir/tensorboard/: tensorboard --logdir=workdir
        board.config(config, step)

    call_inputs = (_resident_inputs(config, task.train_data, stream_sizes, local_batch, devices)
                   if pipeline == "resident" else _streamed_inputs(config, task.train_data, step, local_batch, devices))
    parallel_steps = compiled_per_shapes(
        jax.pmap(functools.partial(resident_steps if pipeline == "resident" else device_steps, task.train_step,
                                   key=train_key, on_nonfinite=train_cfg.on_nonfinite),
                 axis_name=AXIS, donate_argnums=(0,)),
        cpu_compiler_options(train_cfg.cpu_convolutions))
    # XLA:CPU's cross-device all-reduce can deadlock when calls are queued back to back (seen with 2 forced
    # host devices): on CPU with several devices, wait for each call to finish.
    wait_each_call = num_devices > 1 and devices[0].platform == "cpu"
    state_r, health_r = replicate((state, steps.init_health()), devices, AXIS)
    skipped_logged, metrics, startup_seconds = 0, {}, None
    del state

    summary = {"interrupted": None, "pipeline": pipeline, "out_of_time": False}
    with _StopOnSignal() as stop, tqdm(total=train_cfg.steps, initial=step, dynamic_ncols=True, desc=config.task,
                                       disable=not (train_cfg.progress and primary)) as bar:
        timer_step, timer_start, first_call, stopping = step, time.perf_counter(), True, False
        while step < train_cfg.steps and not stopping:
            k = _next_chunk(step, train_cfg)
            (state_r, health_r), metrics = parallel_steps((state_r, health_r), *call_inputs(step, k),
                                                          np.full((len(devices),), step, np.int32))
            if wait_each_call or first_call:
                jax.block_until_ready(state_r)
            step += k
            bar.update(k)
            if first_call:  # exclude compilation from the throughput; report it once as the start-up time
                timer_step, timer_start, first_call = step, time.perf_counter(), False
                startup_seconds = timer_start - started
            host_point = _is_host_point(step, train_cfg)
            if host_point:  # any NaN yet?
                skipped = _check_health(health_r, metrics, train_cfg, checkpointer)
            if step % train_cfg.log_every == 0 or step == train_cfg.steps:
                values = _host_metrics(metrics, step, skip_nonfinite=train_cfg.on_nonfinite == "skip")
                if train_cfg.on_nonfinite == "skip":
                    values["skipped_steps"], skipped_logged = skipped - skipped_logged, skipped
                now = time.perf_counter()
                if step > timer_step:
                    values["images_per_sec"] = (step - timer_step) * config.data.batch_size / (now - timer_start)
                if startup_seconds is not None:  # from train() to the first call done: loading, init, compiling
                    values["startup_seconds"], startup_seconds = startup_seconds, None
                    values["devices"] = num_devices  # what this invocation split each batch over
                timer_step, timer_start = step, now
                if primary:
                    _write_jsonl(metrics_path, {"step": step, **values})
                    board.scalars(step, values)
                bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "images_per_sec")
                                 or k.endswith("_loss")}, refresh=False)
            pictures = step % train_cfg.sample_every == 0 and primary
            save = step % train_cfg.checkpoint_every == 0
            evaluate = train_cfg.eval_every and step % train_cfg.eval_every == 0 and step < train_cfg.steps
            host_state = unreplicate(state_r) if pictures or save or evaluate else None  # one copy per host point
            if pictures:
                _write_pictures(task, host_state, dataset, picture_key, workdir, step, board)
            if save:
                checkpointer.save(step, host_state)
            if evaluate:
                _evaluate(task, host_state, dataset, eval_key, workdir, step, scorer, best, board, primary)
            stopping = _agreed(stop.signum is not None, host_point, multi_process)
            if train_cfg.time_budget and _agreed(time.perf_counter() - started > 60 * train_cfg.time_budget,
                                                 host_point, multi_process):  # spent: finish as at the last step
                summary["out_of_time"] = True
                break
        summary["skipped_nonfinite"] = _check_health(health_r, metrics, train_cfg, checkpointer)
        state = unreplicate(state_r)
        checkpointer.save(step, state)
        summary["interrupted"] = (stop.signum or signal.SIGTERM) if stopping else None  # SIGTERM: a peer's signal

    summary["step"], summary["devices"] = step, num_devices
    if not stopping:
        if primary:
            _write_pictures(task, state, dataset, picture_key, workdir, step, board)
        results = _evaluate(task, state, dataset, eval_key, workdir, step, scorer, best, board, primary)
        summary["eval"] = results
        if primary:
            files.write_json(os.path.join(workdir, "eval.json"), {"step": step, "data": config.data.source, **results})
            images.plot_curves(metrics_path, os.path.join(workdir, "curves.png"))
            images.animate_grids(os.path.join(workdir, "samples"))  # samples/NAME.gif: each grid over training
    checkpointer.close()
    if board is not None:
        board.close()
    return summary
