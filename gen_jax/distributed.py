"""Multi-process runs on JAX's multi-controller runtime (`jax.distributed`): one process per host (or per GPU),
each running the same program on its own devices, with collectives spanning all of them.

The loop asks three things of it: who writes files (`is_primary`), whether any process was asked to stop
(`any_process`), and a point all processes reach before one of them changes shared files (`barrier`).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from gen_jax.errors import UserError


def initialize(*, coordinator: str = "", num_processes: int = 0, process_id: int = -1,
               auto: bool = False, timeout_s: int = 300) -> None:
    """Joins this process to a multi-process run; a no-op unless `coordinator` is given or `auto` is set.

    Explicit: coordinator 'HOST:PORT' (process 0's address), num_processes and process_id. auto: JAX detects
    the cluster (SLURM, Open MPI, Cloud TPU) from the environment. Must run before any JAX computation. On CPU,
    cross-process collectives go through gloo.
    """
    if not coordinator and not auto:
        return
    if coordinator and (num_processes < 1 or not 0 <= process_id < num_processes):
        raise UserError(f"--coordinator needs --num_processes >= 1 and 0 <= --process_id < num_processes, "
                        f"got num_processes={num_processes}, process_id={process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator or None,
                                   num_processes=num_processes or None,
                                   process_id=None if process_id < 0 else process_id,
                                   initialization_timeout=timeout_s)
    except (RuntimeError, ValueError) as e:
        where = coordinator or "the auto-detected cluster"
        raise UserError(f"cannot join the multi-process run at {where}: {str(e).splitlines()[0]} -- check that "
                        f"every process got the same --coordinator and --num_processes and its own "
                        f"--process_id, and that process 0 is reachable") from None


def is_primary() -> bool:
    """Whether this process writes the run's files (metrics, pictures, eval results): process 0."""
    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """Whether `flag` is set on any process (every process must call this at the same point)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def primary_value(value: int) -> int:
    """Process 0's `value` on every process, so a decision made from host floats is the same everywhere."""
    if jax.process_count() == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier called `name`."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
