"""Training speed of gen_jax's trainer beside the PyTorch seed, in one run: the table in docs/speed.md.

For each model, interleaved in rounds (round 1: gen_jax, torch eager, torch.compile; round 2: ...), each
measurement in its own subprocess:
  gen_jax      `gen_jax.training.loop.train` on configs/NAME.py as a user runs it; throughput from the
               images_per_sec it logs (the first log interval is the warm-up), start-up from the
               startup_seconds of its first metrics row (train() entry to the first call done: loading,
               init, compiling)
  torch eager  the seed's model and train step (benchmarks/torch_seed.py), same batch, float32, same threads
  torch.compile  the same with the networks under torch.compile; its first step includes the compile
plus each measurement's peak resident memory (the child's ru_maxrss), the FLOPs of gen_jax's step (XLA's cost
analysis of the compiled step), this machine's float32 matmul peak (a large jnp.dot, same run), and the step's
matmuls and optimizer updates alone (what the trainer / eager ratio could reach if the rest were free).

  python benchmarks/speed.py                     # every model, 2 rounds; appends to benchmarks/speed_results.jsonl
  python benchmarks/speed.py --models=vae,dcgan --rounds=3 --steps=400
  python benchmarks/speed.py --compile_cache     # also: trainer start-up with a cold and a warm compile cache
  python benchmarks/speed.py --models=conv_vae,dcgan --rounds=0 --bf16   # train.compute_dtype float32 vs bfloat16
  python benchmarks/speed.py --models=conv_vae,dcgan --rounds=0 --cpu_devices   # train.cpu_devices 1 vs per core
  python benchmarks/speed.py --models=conv_vae,dcgan --rounds=0 --cpu_convolutions   # YNNPACK vs XLA's own convs
  python benchmarks/speed.py --models=conv_vae,dcgan --rounds=0 --steps_per_call   # 1 vs 10 steps per call
  python benchmarks/speed.py --quick             # smoke run (< 2 min); rows marked quick, never in the table
  python benchmarks/speed.py --report            # docs/speed.md from the committed rows

The same command runs on a GPU machine (CUDA jax and torch): it records the card and driver (nvidia-smi).
Paths are relative to the repository root, where every child runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import benchmarks  # noqa: E402

RESULTS = os.path.join("benchmarks", "speed_results.jsonl")
DOC = os.path.join("docs", "speed.md")
MNIST = "../shared/data/mnist"  # relative to the repository root
SIDES = ("gen_jax", "torch_eager", "torch_compile")
SIDE_NAMES = {"gen_jax": "gen_jax trainer", "torch_eager": "torch eager", "torch_compile": "torch.compile"}


@dataclasses.dataclass(frozen=True)
class Model:
    """One row of the table: a config, what makes it the seed's model on MNIST, and its run length.

    A run is `log_every` * (1 + `intervals`) steps: the first log interval is the warm-up (for torch too), the
    other `intervals` are timed. log_every is a multiple of the config's train.steps_per_call.
    """

    config: str
    torch_kind: str | None   # benchmarks/torch_seed.py's kind; None: no PyTorch reference
    log_every: int
    overrides: tuple = ()
    source: str = "idx:{mnist}"
    intervals: int = 4
    note: str = ""


MODELS = {
    "vae": Model("vae", "vae", 500),
    "conv_vae": Model("conv_vae", "conv_vae", 40, ("eval.iwae_samples=0",),
                      note="the torch reference is gen_jax's conv VAE rebuilt in PyTorch (the seed has none), "
                           "trained without the dynamic binarisation"),
    "gan": Model("gan", "gan", 300, ("discriminator.spectral_norm=False", "eval.num_samples=1000")),
    "dcgan": Model("dcgan", "dcgan", 20, ("eval.num_samples=1000",)),
    "cgan": Model("cgan", "cgan", 200, ("eval.num_samples=1000",)),
    "wgan_gp": Model("wgan_gp", "wgan_gp", 40, ("eval.num_samples=1000",),
                     note="images/s counts the 5 x 64 real images of a generator step's critic steps; "
                          "torch.compile compiles the generator only (AOTAutograd has no double backward for "
                          "the gradient penalty)"),
    "conv_ae": Model("conv_ae", None, 40, note="no PyTorch reference (the seed's autoencoders are MLPs)"),
    "gan_recommended": Model("gan_recommended", None, 40, ("eval.num_samples=1000",),
                             note="docs/gans.md's recommended recipe; no PyTorch reference"),
    "cyclegan": Model("cyclegan", None, 50, source="style:digits",
                      note="configs/cyclegan.py as it is, on its own pair source (8x8 digits: on MNIST its final "
                           "evaluation translates the 10,000 test pairs both ways for minutes); "
                           "benchmarks/torch_seed.py has no CycleGAN, so no PyTorch columns"),
}
QUICK_MODELS = ("vae",)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The trainer alone under each of `values` of one config `key`, interleaved per round (a --FLAG run)."""

    key: str
    values: tuple
    label: str        # a column's name, formatted with a value
    title: str        # the table's name in the report
    description: str  # what its rows measured

    @property
    def field(self) -> str:  # the rows' field holding the value
        return self.key.split(".")[-1]


COMPARISONS = {
    "precision": Comparison("train.compute_dtype", ("float32", "bfloat16"), "{}",
                            "Mixed precision (`train.compute_dtype`)", "the trainer computing its steps in "
                            "float32 and in bfloat16 (parameters and optimizer state float32)"),
    "cpu_devices": Comparison("train.cpu_devices", (1, os.cpu_count()), "{} CPU device(s)",
                              "CPU devices (`train.cpu_devices`)", "the trainer on one CPU device and on one "
                              "device per core, each running its share of every batch"),
    "cpu_convolutions": Comparison("train.cpu_convolutions", ("ynnpack", "xla"), "{} convolutions",
                                   "CPU convolution kernels (`train.cpu_convolutions`)", "the trainer with its "
                                   "convolutions in YNNPACK (XLA:CPU's default) and in XLA's own kernels"),
    "steps_per_call": Comparison("train.steps_per_call", (1, 10), "{} step(s) per call",
                                 "Steps per compiled call (`train.steps_per_call`)", "the trainer running one "
                                 "train step per compiled call and ten (a `lax.scan` inside the pmap)"),
}
COMPARISON_FLAGS = {"bf16": "precision", "cpu_devices": "cpu_devices", "cpu_convolutions": "cpu_convolutions",
                    "steps_per_call": "steps_per_call"}


# ----------------------------------------------------------------------------------------------------------
# Children: one measurement each, printing one JSON line
# ----------------------------------------------------------------------------------------------------------

def _overrides(model: Model, data_dir: str, log_every: int, intervals: int, extra=()) -> list[str]:
    """The config overrides of a benchmark run: MNIST, the run length, logs only (samples, checkpoints and
    the eval at the end), no progress bar."""
    steps = log_every * (1 + intervals)
    return [f"data.source={model.source.format(mnist=data_dir)}", f"train.steps={steps}",
            f"train.log_every={log_every}", f"train.sample_every={steps}", f"train.checkpoint_every={steps}",
            "train.progress=False", *model.overrides, *extra]


def parse_metrics(lines) -> dict:
    """{startup_seconds, images_per_sec (over the timed intervals), images_per_sec_logged} from a run's
    metrics.jsonl lines. The first training row's interval is the warm-up (when the first compiled call ends
    on a log step, that row has the start-up and no images_per_sec); the later intervals are timed and
    combined as total images over total time (their harmonic mean: every interval has the same steps)."""
    rows = [row for row in map(json.loads, filter(str.strip, lines))
            if "images_per_sec" in row or "startup_seconds" in row]
    timed = [row["images_per_sec"] for row in rows[1:] if "images_per_sec" in row]
    if not timed:
        raise ValueError("no images_per_sec after the first log row in metrics.jsonl: run more log intervals")
    startup = next((row["startup_seconds"] for row in rows if "startup_seconds" in row), None)
    return {"startup_seconds": startup, "images_per_sec": len(timed) / sum(1 / v for v in timed),
            "images_per_sec_logged": [round(row["images_per_sec"], 1) for row in rows if "images_per_sec" in row]}


def child_gen_jax(args) -> dict:
    """Trains configs/MODEL.py with `loop.train` in a fresh workdir; reads back what the loop logged."""
    started = time.perf_counter()
    import jax

    from gen_jax import config as config_lib
    from gen_jax.training.loop import train
    imported = time.perf_counter() - started
    model = MODELS[args.model]
    config = config_lib.load(os.path.join("configs", f"{model.config}.py"),
                             _overrides(model, args.data, args.log_every, args.intervals, args.override))
    workdir = tempfile.mkdtemp(prefix=f"speed_{args.model}_")
    try:
        train(config, workdir)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            result = parse_metrics(f)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    first_step = result.pop("startup_seconds")
    return {**result, "first_step_seconds": first_step, "import_seconds": imported,
            "batch": config.data.batch_size, "steps_per_call": config.train.steps_per_call,
            "devices": jax.local_device_count(), "device_kind": device.device_kind, "platform": device.platform,
            **({"device_peak_mb": stats["peak_bytes_in_use"] / 2**20} if "peak_bytes_in_use" in stats else {})}


def child_torch(args) -> dict:
    """The seed's model and train step (torch_seed) in eager mode or under torch.compile, timed with
    torch_seed.timed_loop after the same warm-up; its first step (compile included) is timed from the data
    load, as gen_jax's start-up is from train() entry."""
    started = time.perf_counter()
    import torch

    from benchmarks import torch_seed
    imported = time.perf_counter() - started
    model = MODELS[args.model]
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    start = time.perf_counter()
    x, labels = torch_seed.load_mnist(args.data)
    compile_ = args.child == "torch_compile"
    if model.torch_kind in torch_seed.GAN_KINDS:
        *_, step, images_per_step = torch_seed.gan_step(model.torch_kind, x * 2 - 1, labels, batch_size=args.batch,
                                                        compile=compile_, device=device)
    else:
        _, step = torch_seed.autoencoder_step(model.torch_kind, x, batch_size=args.batch, compile=compile_,
                                              device=device)
        images_per_step = args.batch
    steps = args.log_every * (1 + args.intervals)
    first = {}

    def timed_step(i):
        step(i)
        if cuda and i in (0, steps - 1):  # CUDA runs ahead of the host: wait where a clock is read
            torch.cuda.synchronize()
        if i == 0:
            first["seconds"] = time.perf_counter() - start

    ips = torch_seed.timed_loop(timed_step, steps, images_per_step, warmup=args.log_every)
    return {"images_per_sec": ips, "first_step_seconds": first["seconds"], "import_seconds": imported,
            "batch": images_per_step, "threads": torch.get_num_threads(), "platform": device,
            **({"device_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if cuda else {})}


def _abstract_step(args):
    """(configs/MODEL.py's train step pmapped as the loop runs it, its abstract state, batch and key on one
    device): enough to lower or trace the step, nothing allocated."""
    import jax

    from gen_jax import config as config_lib
    from gen_jax.training import tasks
    model = MODELS[args.model]
    config = config_lib.finalize(config_lib.load(os.path.join("configs", f"{model.config}.py"),
                                                 _overrides(model, args.data, args.log_every, args.intervals)))
    task = tasks.build(config, tasks.load_data(config))
    lead = lambda shape, dtype: jax.ShapeDtypeStruct((1, *shape), dtype)
    state = jax.tree.map(lambda x: lead(x.shape, x.dtype), jax.eval_shape(task.init_state, jax.random.key(0)))
    batch = {name: lead((config.data.batch_size, *array.shape[1:]), array.dtype)
             for arrays in task.train_data.values() for name, array in arrays.items()}
    key = lead((), jax.eval_shape(lambda: jax.random.key(0)).dtype)
    return jax.pmap(task.train_step, axis_name="batch"), (state, batch, key)


def child_flops(args) -> dict:
    """FLOPs of one train step of configs/MODEL.py from XLA's cost analysis of the compiled per-device step
    (`Task.train_step` under pmap on one device, the loop's batch), nothing run."""
    step, abstract = _abstract_step(args)
    cost = step.lower(*abstract).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"flops_per_step": float(cost["flops"]), "flops_source": "XLA cost analysis of the compiled step",
            "batch": next(iter(abstract[1].values())).shape[1]}


def step_products(jaxpr, repeats: int = 1):
    """Yields (primitive, lhs shape, rhs shape, dimension numbers) for every dot_general and convolution one
    run of `jaxpr` computes, its sub-jaxprs included (a scan's body once per iteration)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
            for _ in range(repeats):
                yield (eqn.primitive.name, *(tuple(v.aval.shape) for v in eqn.invars[:2]),
                       eqn.params.get("dimension_numbers"))
        times = repeats * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's jaxpr
                if hasattr(sub, "eqns"):
                    yield from step_products(sub, times)


def einsum_spec(lhs_ndim: int, rhs_ndim: int, dimension_numbers) -> str:
    """The einsum of a dot_general: output = batch dims, then lhs free dims, then rhs free dims."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    lhs, rhs = [None] * lhs_ndim, [None] * rhs_ndim
    for l, r in [*zip(lhs_batch, rhs_batch), *zip(lhs_contract, rhs_contract)]:
        lhs[l] = rhs[r] = next(letters)
    lhs = [d or next(letters) for d in lhs]
    rhs = [d or next(letters) for d in rhs]
    out = ([lhs[d] for d in lhs_batch] + [lhs[d] for d in range(lhs_ndim) if d not in (*lhs_batch, *lhs_contract)]
           + [rhs[d] for d in range(rhs_ndim) if d not in (*rhs_batch, *rhs_contract)])
    return f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"


def _best_seconds(call, calls: int, repeats: int) -> float:
    """Best over `repeats` of the mean time of `calls` back-to-back calls (`call` waits for its result)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def child_dots(args) -> dict:
    """Two parts of configs/MODEL.py's train step alone, each as one jitted XLA call on random float32 operands:
    every dot_general of the step (from its jaxpr; XLA:CPU's kernels, free to run them concurrently as in the
    step) and one optimizer update of every network. The dots also run one after another in torch eager, the
    kernels the seed's step uses. Convolutions are counted, not run."""
    import jax
    import numpy as np

    from gen_jax.training.train_state import TrainState
    step, abstract = _abstract_step(args)
    products = list(step_products(jax.make_jaxpr(step)(*abstract).jaxpr))
    dots = [(lhs, rhs, dims) for name, lhs, rhs, dims in products if name == "dot_general"]
    rng = np.random.default_rng(0)
    random = lambda shape: rng.standard_normal(shape).astype(np.float32)
    operands = [(random(lhs), random(rhs)) for lhs, rhs, _ in dots]
    flops = sum(2 * math.prod(lhs) * math.prod(rhs) / math.prod(rhs[d] for d in (*dims[0][1], *dims[1][1]))
                for lhs, rhs, dims in dots)
    all_dots = jax.jit(lambda pairs: [jax.lax.dot_general(a, b, dims) for (a, b), (_, _, dims) in zip(pairs, dots)])
    is_network = lambda x: isinstance(x, TrainState)
    networks = [n for n in jax.tree.leaves(abstract[0], is_leaf=is_network) if is_network(n)]
    networks = [jax.tree.map(lambda s: random(s.shape[1:]).astype(s.dtype), n) for n in networks]  # one device's
    grads = [jax.tree.map(lambda p: random(p.shape), n.params) for n in networks]
    all_updates = jax.jit(lambda nets, grads: [n.apply_gradients(g) for n, g in zip(nets, grads)])
    calls = 5 if args.quick else 50
    seconds = {}
    for name, call, inputs in (("xla_dots_seconds", all_dots, (jax.device_put(operands),)),
                               ("xla_updates_seconds", all_updates, jax.device_put((networks, grads)))):
        jax.block_until_ready(call(*inputs))
        seconds[name] = _best_seconds(lambda: jax.block_until_ready(call(*inputs)), calls, 5)
    result = {"dots": len(dots), "convolutions": len(products) - len(dots), "dot_flops_per_step": flops,
              "networks": len(networks), **seconds}
    try:
        import torch
    except ImportError:
        return result
    torch.set_num_threads(args.threads)
    specs = [einsum_spec(len(lhs), len(rhs), dims) for lhs, rhs, dims in dots]
    tensors = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in operands]
    run = lambda: [torch.einsum(spec, a, b) for spec, (a, b) in zip(specs, tensors)]
    run()
    return {**result, "torch_dots_seconds": _best_seconds(run, calls, 5), "threads": torch.get_num_threads()}


def child_matmul_peak(args) -> dict:
    """Float32 matmul FLOP/s: the best of several n x n jnp.dot calls (n = 4096; 2048 in quick mode)."""
    import jax
    import jax.numpy as jnp
    n = 2048 if args.quick else 4096
    a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.float32) for i in range(2))
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = math.inf
    for _ in range(3 if args.quick else 6):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    device = jax.local_devices()[0]
    return {"matmul_flops_per_sec": 2 * n ** 3 / best, "matmul_size": n, "device_kind": device.device_kind,
            "platform": device.platform}


CHILDREN = {"gen_jax": child_gen_jax, "torch_eager": child_torch, "torch_compile": child_torch,
            "flops": child_flops, "dots": child_dots, "matmul_peak": child_matmul_peak}


# ----------------------------------------------------------------------------------------------------------
# The parent: machine, rounds, rows
# ----------------------------------------------------------------------------------------------------------

def machine() -> dict:
    """This machine in words: CPU model and cores, accelerator (nvidia-smi), library versions. Starts no
    backend (a parent holding the GPU would starve its children)."""
    cpu = benchmarks.cpu_model()
    gpu = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True)
        gpu = "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or None
    versions = {}
    for package in ("jax", "jaxlib", "jax-cuda12-plugin", "flax", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(), **versions}


def run_child(kind: str, args, model: str | None = None, log_every: int = 0, intervals: int = 0,
              override=()) -> dict:
    """Runs one measurement in a subprocess; returns its JSON result with its peak RSS, or {"error": ...}."""
    batch = _facts(MODELS[model])["torch_batch"] if model else 0
    command = [sys.executable, os.path.join("benchmarks", "speed.py"), f"--child={kind}", f"--data={args.data}",
               f"--threads={args.threads}", f"--log_every={log_every}", f"--intervals={intervals}",
               f"--batch={batch}", *([f"--model={model}"] if model else []), *(["--quick"] if args.quick else []),
               *(f"--override={o}" for o in override)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.TemporaryDirectory(prefix="speed_inductor_") as inductor_cache:
        # torch.compile starts cold every time, as the trainer does (its cache is --compile_cache's table); on a
        # machine with several GPUs both sides get the first one
        env = {"CUDA_VISIBLE_DEVICES": "0", **os.environ, "TORCHINDUCTOR_CACHE_DIR": inductor_cache}
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        lines, errors = out.read().strip().splitlines(), err.read().strip().splitlines()
    peak = {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # Linux reports kilobytes
    if process.returncode or not lines:
        return {"error": f"exit {process.returncode}: " + " | ".join(errors[-3:])[-600:], **peak}
    return {**json.loads(lines[-1]), **peak}


def _steps(model: Model, args) -> tuple[int, int]:
    """(log_every, timed intervals) of `model` in this run: --steps sets the timed steps (rounded up to whole
    compiled calls), --quick shortens everything."""
    intervals = 1 if args.quick else model.intervals
    log_every = model.log_every
    if args.steps:
        log_every = math.ceil(args.steps / intervals)
    elif args.quick:
        log_every = max(1, model.log_every // 5)
    multiple = _facts(model)["steps_per_call"]
    return math.ceil(log_every / multiple) * multiple, intervals


@functools.lru_cache(maxsize=None)
def _facts(model: Model) -> dict:
    """What the parent needs from configs/NAME.py: steps per compiled call, and the batch of one torch update
    (data.batch_size over the critic updates per generator step). Loading a config starts no jax backend."""
    from gen_jax import config as config_lib
    config = config_lib.load(os.path.join(ROOT, "configs", f"{model.config}.py"), list(model.overrides))
    n_critic = config.gan.n_critic if "gan" in config else 1
    return {"steps_per_call": config.train.steps_per_call, "torch_batch": config.data.batch_size // n_critic}


def measure(args, command: str) -> list[dict]:
    """Runs the benchmark; appends and returns its rows."""
    names = list(args.models.split(",")) if args.models else list(QUICK_MODELS if args.quick else MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    common = {"run": datetime.datetime.now().strftime("%Y%m%d-%H%M%S"), "commit": benchmarks.commit(),
              "command": command, "quick": bool(args.quick), "machine": machine()}
    rows = []

    def emit(**fields):
        row = {**common, "date": datetime.datetime.now().isoformat(timespec="seconds"), **fields}
        rows.append(row)
        if args.out:
            with open(os.path.join(ROOT, args.out), "a") as f:
                f.write(json.dumps(row) + "\n")
        shown = {k: v for k, v in fields.items() if k not in ("images_per_sec_logged",)}
        print(json.dumps(shown), flush=True)
        return row

    result = run_child("matmul_peak", args)
    common["machine"] = {**common["machine"], "device_kind": result.get("device_kind", "unknown")}
    peak = emit(kind="matmul_peak", **result)
    flops = {}
    for name in names:
        log_every, intervals = _steps(MODELS[name], args)
        if args.rounds:
            flops[name] = emit(kind="flops", model=name, **run_child("flops", args, name, log_every, intervals))
            emit(kind="dots", model=name, **run_child("dots", args, name, log_every, intervals))
    for round_ in range(1, args.rounds + 1):
        for name in names:
            model = MODELS[name]
            log_every, intervals = _steps(model, args)
            for side in SIDES if model.torch_kind else SIDES[:1]:
                result = run_child(side, args, name, log_every, intervals)
                extra = {}
                if side == "gen_jax" and "flops_per_step" in flops[name] and "images_per_sec" in result:
                    achieved = flops[name]["flops_per_step"] * result["images_per_sec"] / result["batch"]
                    extra = {"flops_per_step": flops[name]["flops_per_step"], "achieved_flops_per_sec": achieved,
                             "matmul_flops_per_sec": peak.get("matmul_flops_per_sec")}
                emit(kind="throughput", model=name, side=side, round=round_, warmup_steps=log_every,
                     timed_steps=log_every * intervals, **result, **extra)
    for flag, kind in COMPARISON_FLAGS.items():  # the trainer alone under each value, interleaved per round
        if not getattr(args, flag):
            continue
        comparison = COMPARISONS[kind]
        for round_ in range(1, (args.rounds or 2) + 1):
            for name in names:
                log_every, intervals = _steps(MODELS[name], args)
                for value in comparison.values:
                    result = run_child("gen_jax", args, name, log_every, intervals, [f"{comparison.key}={value}"])
                    emit(kind=kind, model=name, side="gen_jax", round=round_, **{**result, comparison.field: value})
    if args.compile_cache:
        for name in names:
            log_every, intervals = _steps(MODELS[name], args)
            cache = tempfile.mkdtemp(prefix="speed_cache_")
            try:
                for start in ("cold", "warm"):
                    result = run_child("gen_jax", args, name, log_every, 1, [f"train.compile_cache={cache}"])
                    emit(kind="compile_cache", model=name, side="gen_jax", cache=start, **result)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    return rows


# ----------------------------------------------------------------------------------------------------------
# The report: rows -> docs/speed.md
# ----------------------------------------------------------------------------------------------------------

def read_rows(lines) -> list[dict]:
    """Result rows from JSON lines (blank lines skipped)."""
    return [json.loads(line) for line in lines if line.strip()]


def committed_rows(path: str = RESULTS) -> list[dict]:
    """The rows of `path` as committed at HEAD (uncommitted rows never reach the doc)."""
    out = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True)
    return read_rows(out.stdout.splitlines()) if out.returncode == 0 else []


def machine_key(row) -> tuple:
    m = row["machine"]
    return (m.get("cpu"), m.get("cores"), m.get("gpu"))


def latest_runs(rows, kind: str) -> dict:
    """{machine key: per model, the rows of that machine's latest full (not quick) run with `kind` rows of that
    model}: a run of some models updates their lines and keeps the others' (each line names its run)."""
    runs = {}
    for row in rows:
        if row.get("kind") == kind and not row.get("quick"):
            runs.setdefault(machine_key(row), {}).setdefault(row["model"], set()).add(row["run"])
    latest = {key: {model: max(ids) for model, ids in models.items()} for key, models in runs.items()}
    return {key: [r for r in rows if machine_key(r) == key and r.get("model") in chosen
                  and r["run"] == chosen[r["model"]]] for key, chosen in latest.items()}


def runs_line(rows) -> str:
    """Which run (date, commit, command) each model's line comes from."""
    by_run = {}
    for r in rows:
        by_run.setdefault(r["run"], {"row": r, "models": []})
        if r["model"] not in by_run[r["run"]]["models"]:
            by_run[r["run"]]["models"].append(r["model"])
    return "; ".join(f"{', '.join(v['models'])}: run {run} ({v['row']['date'][:10]}), commit `{v['row']['commit']}`, "
                     f"`{v['row']['command']}`" for run, v in sorted(by_run.items(), reverse=True))


def _spread(values, digits=0, unit="") -> str:
    """'median [min-max]' of values (the median alone for one value), '—' for none."""
    if not values:
        return "—"
    fmt = lambda v: f"{v:,.{digits}f}{unit}"
    mid = fmt(statistics.median(values))
    return mid if len(values) == 1 else f"{mid} [{fmt(min(values))}–{fmt(max(values))}]"


def _ratios(rows, model, over) -> list[float]:
    """Per-round trainer / `over` throughput ratios of `model`."""
    by_round = {}
    for r in rows:
        if r.get("model") == model and "images_per_sec" in r:
            by_round.setdefault(r["round"], {})[r["side"]] = r["images_per_sec"]
    return [sides["gen_jax"] / sides[over] for sides in by_round.values() if "gen_jax" in sides and over in sides]


def throughput_table(rows) -> list[str]:
    """The markdown table of one run's throughput rows (one line per model, medians over rounds)."""
    out = ["| model | batch | torch eager (img/s) | torch.compile (img/s) | gen_jax trainer (img/s) | trainer / eager "
           "| trainer / compile | time to first step (s): eager / compile / trainer | peak RSS (MB): eager / compile "
           "/ trainer | trainer FLOP/s (of matmul peak) | trainer's devices |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    models = [m for m in MODELS if any(r.get("model") == m for r in rows)]
    models += sorted({r["model"] for r in rows if r.get("model") not in MODELS})
    for model in models:
        mine = [r for r in rows if r.get("model") == model]
        side = lambda s, k: [r[k] for r in mine if r.get("side") == s and r.get(k) is not None and "error" not in r]
        failed = {s for s in SIDES if any(r.get("side") == s and "error" in r for r in mine)}
        cell = lambda s, k, d=0: ("failed" if s in failed and not side(s, k) else _spread(side(s, k), d))
        batch = next((r["batch"] for r in mine if r.get("side") == "gen_jax" and "batch" in r), "?")
        achieved = side("gen_jax", "achieved_flops_per_sec")
        peak = next((r["matmul_flops_per_sec"] for r in mine if r.get("matmul_flops_per_sec")), None)
        flops = (f"{statistics.median(achieved) / 1e9:,.1f} G ({statistics.median(achieved) / peak:.0%})"
                 if achieved and peak else "—")
        ratio = lambda over: (_spread(_ratios(mine, model, over), 2, "x") if _ratios(mine, model, over) else "—")
        median = lambda s, k, d: f"{statistics.median(side(s, k)):,.{d}f}" if side(s, k) else "—"
        triple = lambda k, d: " / ".join(median(s, k, d) for s in ("torch_eager", "torch_compile", "gen_jax"))
        out.append(f"| {model} | {batch} | {cell('torch_eager', 'images_per_sec')} | "
                   f"{cell('torch_compile', 'images_per_sec')} | {cell('gen_jax', 'images_per_sec')} | "
                   f"{ratio('torch_eager')} | {ratio('torch_compile')} | {triple('first_step_seconds', 1)} | "
                   f"{triple('peak_rss_mb', 0)} | {flops} | {median('gen_jax', 'devices', 0)} |")
    return out


def cache_table(rows) -> list[str]:
    """The markdown table of one run's compile-cache rows: the trainer's start-up cold and warm."""
    out = ["| model | start-up, empty cache (s) | start-up, warm cache (s) | warm / cold |", "|---|---:|---:|---:|"]
    for model in [m for m in MODELS if any(r.get("model") == m for r in rows)]:
        get = lambda start: [r["first_step_seconds"] for r in rows if r.get("model") == model
                             and r.get("cache") == start and "first_step_seconds" in r]
        cold, warm = get("cold"), get("warm")
        ratio = f"{statistics.median(warm) / statistics.median(cold):.2f}" if cold and warm else "—"
        out.append(f"| {model} | {_spread(cold, 1)} | {_spread(warm, 1)} | {ratio} |")
    return out


def matmul_table(dots, timed) -> list[str]:
    """The markdown table of the steps' matmuls and optimizer updates alone (`dots` rows of models without
    convolutions) beside the trainer's and torch eager's whole steps in the same run (`timed` rows): what the
    trainer / eager ratio would be if a step did nothing else, at XLA's speed, and if its matmuls also ran at the
    machine's float32 matmul peak measured in the same run (a large square matmul's FLOP/s, which small ones
    do not normally reach)."""
    out = ["| model | matmuls per step | matmul GFLOP per step | matmuls alone: XLA / torch eager (ms) | optimizer "
           "updates alone, XLA (ms) | trainer step (ms) | torch eager step (ms) | trainer / eager if the step were "
           "only its matmuls and updates | the same with its matmuls at the matmul peak |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sorted((r for r in dots if r.get("convolutions") == 0 and "xla_dots_seconds" in r),
                      key=lambda r: list(MODELS).index(r["model"]) if r["model"] in MODELS else len(MODELS)):
        same = [r for r in timed if r.get("model") == row["model"] and r["run"] == row["run"] and "error" not in r]

        def step(side):  # median seconds per step over the run's rounds
            values = [r["batch"] / r["images_per_sec"] for r in same if r["side"] == side and "images_per_sec" in r]
            return statistics.median(values) if values else None

        ms = lambda seconds: f"{seconds * 1e3:.2f}" if seconds else "—"
        trainer, eager = step("gen_jax"), step("torch_eager")
        peak = next((r["matmul_flops_per_sec"] for r in same if r.get("matmul_flops_per_sec")), None)
        floor = row["xla_dots_seconds"] + row["xla_updates_seconds"]
        at_peak = row["dot_flops_per_step"] / peak + row["xla_updates_seconds"] if peak else None
        bound = lambda seconds: f"{eager / seconds:.2f}x" if eager and seconds else "—"
        out.append(f"| {row['model']} | {row['dots']} | {row['dot_flops_per_step'] / 1e9:.2f} | "
                   f"{ms(row['xla_dots_seconds'])} / {ms(row.get('torch_dots_seconds'))} | "
                   f"{ms(row['xla_updates_seconds'])} | {ms(trainer)} | {ms(eager)} | {bound(floor)} | "
                   f"{bound(at_peak)} |")
    return out


def comparison_table(rows, comparison: Comparison) -> list[str]:
    """The markdown table of one run's rows of `comparison`: the trainer's throughput under each value (in the
    order the run measured them), the last over the first, and the time to first step."""
    values = list(dict.fromkeys(r[comparison.field] for r in rows if comparison.field in r))
    names = [comparison.label.format(v) for v in values]
    out = [f"| model | {' | '.join(f'{n} (img/s)' for n in names)} | {names[-1]} / {names[0]} | time to first step "
           f"(s): {' / '.join(names)} |", "|---|" + "---:|" * (len(values) + 2)]
    for model in [m for m in MODELS if any(r.get("model") == m for r in rows)]:
        get = lambda value, key: [r[key] for r in rows if r.get("model") == model
                                  and r.get(comparison.field) == value and key in r]
        speeds = [get(v, "images_per_sec") for v in values]
        ratio = (f"{statistics.median(speeds[-1]) / statistics.median(speeds[0]):.2f}x"
                 if speeds[0] and speeds[-1] else "—")
        first = " / ".join(f"{statistics.median(t):.1f}" if t else "—"
                           for t in (get(v, "first_step_seconds") for v in values))
        out.append(f"| {model} | {' | '.join(_spread(v) for v in speeds)} | {ratio} | {first} |")
    return out


def _machine_line(m: dict) -> str:
    versions = ", ".join(f"{k} {m[k]}" for k in ("jax", "jaxlib", "flax", "torch") if m.get(k))
    gpu = f", GPU: {m['gpu']}" if m.get("gpu") else ", no GPU"
    return f"{m.get('cpu')}, {m.get('cores')} cores{gpu}; jax device {m.get('device_kind', '?')}; {versions}"


HAND_WRITTEN = "<!-- Below this line the doc is written by hand; --report keeps it. -->"


def hand_written(doc: str) -> str:
    """The hand-written part of a docs/speed.md (from the marker on), '' when it has none."""
    return doc[doc.index(HAND_WRITTEN):] if HAND_WRITTEN in doc else ""


def report(rows, notes: str = "") -> str:
    """docs/speed.md from result rows: per machine, the latest full run's throughput table and the latest
    compile-cache table (quick rows never appear in them), then `notes`, the hand-written part."""
    out = [HEADER.strip(), ""]
    throughput, cache = latest_runs(rows, "throughput"), latest_runs(rows, "compile_cache")
    dots = latest_runs(rows, "dots")
    compared = {kind: latest_runs(rows, kind) for kind in COMPARISONS}
    if not throughput and not cache:
        out += ["No full run has been committed yet: run the command above on a quiet machine, commit\n"
                "benchmarks/speed_results.jsonl, then `python benchmarks/speed.py --report`.", ""]
    machines = set(throughput) | set(cache) | {key for runs in compared.values() for key in runs}
    for key in sorted(machines, key=str):
        first = (throughput.get(key) or cache.get(key) or next(runs[key] for runs in compared.values()
                                                                if key in runs))[0]
        out += [f"## {_machine_line(first['machine'])}", ""]
        if key in throughput:
            timed = [r for r in throughput[key] if r.get("kind") == "throughput"]
            rounds = sorted({max(r["round"] for r in timed if r["model"] == m) for m in {r["model"] for r in timed}})
            rounds = f"{rounds[0]}" if len(rounds) == 1 else f"{rounds[0]}-{rounds[-1]}"
            out += [f"{rounds} round(s). {runs_line(timed)}. Each model's FLOP/s is against the float32 matmul "
                    "peak measured in its own run.", "", *throughput_table(timed), ""]
            for r in throughput[key]:
                if r.get("kind") == "throughput" and "error" in r:
                    out.append(f"- {r['model']} / {SIDE_NAMES.get(r['side'], r['side'])} round {r['round']} failed: "
                               f"{r['error'][:300]}")
            out.append("")
            matmuls = matmul_table(dots.get(key, []), timed)
            if len(matmuls) > 2:
                out += [f"The steps' matmuls and optimizer updates alone, {runs_line(dots[key])}: every "
                        "`dot_general` of gen_jax's train step (from its jaxpr; models without convolutions) on "
                        "random operands as one jitted XLA call, and the same one after another in torch eager "
                        "(`torch.einsum`); one optimizer update of every network as one jitted XLA call; best of 5 "
                        "x 50 calls. Steps are the medians of the run's rounds. The last column is torch eager's "
                        "whole step over gen_jax's matmuls plus updates: the trainer / eager ratio a step could "
                        "reach if everything else in it were free; the one after it puts the matmuls at this "
                        "machine's float32 matmul peak (a 4096 x 4096 `jnp.dot`, same run), which matmuls of "
                        "these small shapes do not normally reach.", "", *matmuls, ""]
        if key in cache:
            out += [f"Compilation cache (`train.compile_cache`), {runs_line(cache[key])}: "
                    "time from train() entry to the first call done, with an empty cache folder and again with "
                    "the folder the first run filled.", "", *cache_table(cache[key]), ""]
        for kind, comparison in COMPARISONS.items():
            if key in compared[kind]:
                out += [f"{comparison.title}, {runs_line(compared[kind][key])}: {comparison.description}, "
                        "interleaved per round.", "", *comparison_table(compared[kind][key], comparison), ""]
    if not any(k[2] for k in machines):
        out += ["No GPU row exists yet: no run on a GPU machine has been committed (see \"On a GPU\" below).", ""]
    out += [FOOTER.strip(), "", (notes or HAND_WRITTEN).strip(), ""]
    return "\n".join(out)


HEADER = """
# Training speed: gen_jax's trainer beside the PyTorch seed

Generated by `python benchmarks/speed.py --report` from the committed rows of `benchmarks/speed_results.jsonl`
(do not edit the tables by hand). Measured with (about 40 minutes on the project's 2-core CPU box):

    python benchmarks/speed.py --compile_cache

Every measurement runs in its own process, interleaved per round (gen_jax, torch eager, torch.compile for one
model, then the next model; then round 2), on MNIST, float32, spectral norm off as in the seed, the same batch
and the same thread count (`torch.set_num_threads(cores)`; XLA:CPU uses every core). Cells are the median
over rounds with the [min–max] spread; the ratios are per-round ratios.

- **gen_jax trainer**: `gen_jax.training.loop.train(configs/NAME.py, workdir)` as a user runs it, its own
  logged `images_per_sec` after the first log interval (the warm-up); time to first step is the
  `startup_seconds` it logs (from train() entry to the first call done: data loading, init, compiling).
- **torch eager / torch.compile**: the seed's model and train step from `benchmarks/torch_seed.py`, timed by
  its `timed_loop` after the same warm-up; time to first step is from the MNIST load to the first step done
  (torch.compile's compilation included).
- **time to first step, peak RSS**: medians over rounds. Peak RSS is the child process's `ru_maxrss` (the
  trainer's includes its final evaluation).
- **FLOP/s**: FLOPs per step from XLA's cost analysis of gen_jax's compiled step, times the trainer's steps/s,
  against this machine's float32 matmul peak measured in the same run (best of several 4096 x 4096 `jnp.dot`).
  They are the FLOPs gen_jax computes, which can be fewer than the seed's for the same function (on CPU the
  DCGAN generator's upsample + conv blocks take 16/36 of theirs: 19.3 instead of 43.8 GFLOP per step).
"""

FOOTER = """
## Models

| model | config (overrides) | PyTorch reference |
|---|---|---|
""" + "\n".join(
    f"| {name} | configs/{m.config}.py (data.source={m.source.format(mnist='../shared/data/mnist')}"
    + "".join(f", {o}" for o in m.overrides) + f") | {m.torch_kind or 'none'}{': ' + m.note if m.note else ''} |"
    for name, m in MODELS.items()) + """

Each run trains `log_every x (1 + 4)` steps with samples and checkpoints only at the end, then the config's
final evaluation (outside the timing). `--steps=N` times N steps per model instead; `--quick` is a smoke test
whose rows are marked quick and never reach these tables.

## On a GPU

The same command, on a machine with CUDA builds of jax and torch (`pip install "jax[cuda12]"` and a CUDA torch
wheel), records the card and driver (`nvidia-smi`) and each side's device memory peak, and gets a table of its
own; the conv models' CPU fast path is not taken there, and both sides run at their default float32 precision
(XLA and cuDNN may use TF32 on recent cards). Steps are fast on a GPU, so time more of them:

    python benchmarks/speed.py --compile_cache --steps=2000
"""


# ----------------------------------------------------------------------------------------------------------

def recorded_command(argv) -> str:
    """The command a row names: how it was measured, without --out (where the rows went, often a path of the
    machine that ran it, which has no place in the committed results)."""
    kept, skip_next = [], False
    for arg in argv:
        if not skip_next and not arg.startswith("--out"):
            kept.append(arg)
        skip_next = arg == "--out"  # its value is the next argument
    return " ".join(["python benchmarks/speed.py", *kept])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help=f"comma-separated, from: {','.join(MODELS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds (default 2, --quick 1; 0: only --compile_cache)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per model (default: per model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch's intra-op threads")
    parser.add_argument("--data", default=MNIST, help="MNIST IDX folder, relative to the repository root")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {','.join(QUICK_MODELS)}, 1 round, "
                                                             "few steps; rows marked quick")
    parser.add_argument("--compile_cache", action="store_true",
                        help="also time the trainer's start-up with an empty and a warm train.compile_cache")
    parser.add_argument("--bf16", action="store_true",
                        help="also: the trainer with train.compute_dtype float32 and bfloat16, interleaved")
    parser.add_argument("--cpu_devices", action="store_true",
                        help="also: the trainer with train.cpu_devices 1 and one per core, interleaved")
    parser.add_argument("--cpu_convolutions", action="store_true",
                        help="also: the trainer with train.cpu_convolutions ynnpack and xla, interleaved")
    parser.add_argument("--steps_per_call", action="store_true",
                        help="also: the trainer with train.steps_per_call 1 and 10, interleaved")
    parser.add_argument("--out", default=RESULTS, help="append rows here ('' : print only)")
    parser.add_argument("--report", action="store_true", help=f"write {DOC} from the committed rows and stop")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="", help=argparse.SUPPRESS)
    parser.add_argument("--log_every", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--intervals", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)), flush=True)
        return
    if args.report:
        path = os.path.join(ROOT, DOC)
        kept = open(path).read() if os.path.exists(path) else ""
        with open(path, "w") as f:
            f.write(report(committed_rows(), hand_written(kept)))
        print(f"wrote {DOC}")
        return
    start = time.perf_counter()
    measure(args, recorded_command(argv if argv is not None else sys.argv[1:]))
    print(f"done in {time.perf_counter() - start:.0f} s; rows in {args.out or '(not saved)'}", flush=True)


if __name__ == "__main__":
    main()
