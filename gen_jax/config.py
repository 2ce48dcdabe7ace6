"""Configs: each model family's schema, and the one way to load a config file with overrides (`load`).

Config files in configs/ start from a schema here and override fields; the result is locked, so a misspelt
key is an error that names the nearest real one, never a silently ignored setting.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import sys
from typing import Iterable, Mapping

import ml_collections

from gen_jax.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
    """Sections shared by every family: seed, data, train loop, evaluation."""
    config = ml_collections.ConfigDict()
    config.task = ""
    config.seed = 0
    config.data = ml_collections.ConfigDict(dict(
        source="digits",      # digits | idx:DIR | folder:DIR | tfds:NAME
        batch_size=128,       # global batch, split over all local devices
        binarize=False,       # dynamic binarisation (VAE likelihoods on MNIST)
        tfds_data_dir="",     # where prepared tfds data sets live ('' = tfds default)
        exclude_labels=(),    # classes left out of the training split (anomaly detection's held-out class)
        pipeline="auto",      # resident (training set held on the devices) | stream (Grain, read from the host
                              # each step) | auto (stream when the training set exceeds device_memory_budget_mb)
        device_memory_budget_mb=2048,
        stream_threads=8,     # stream: host threads reading and decoding records
        stream_prefetch=4,    # stream: batches read ahead of the step
    ))
    config.train = ml_collections.ConfigDict(dict(
        steps=3000,
        steps_per_call=1,     # >1 runs that many steps per compiled call (lax.scan): fewer dispatches
        log_every=100,
        sample_every=1000,    # write sample grids every K steps (and at the end)
        checkpoint_every=1000,
        keep_checkpoints=3,
        eval_every=0,         # 0: evaluate at the end only
        progress=True,        # show a progress bar
        on_nonfinite="stop",  # a NaN/inf loss or update: stop (naming the step) | skip (keep the old state, count it)
        allow_config_change=False,  # resume a workdir whose saved config differs in a setting that changes results
        compute_dtype="float32",  # float32 | bfloat16: the train step's arithmetic (params, optimizer state stay
                                  # float32; sampling and evaluation compute in float32), see models/precision.py
        compile_cache="",     # a folder for JAX's persistent compilation cache ('' = off): later runs start faster
        cpu_devices=0,        # >0: on CPU, split the cores into this many JAX devices, each running its share of
                              # the batch (faster for convolutions, same computation); set before JAX starts
        cpu_convolutions="xla",  # on CPU, who computes the step's convolutions: xla (XLA's own kernels) | ynnpack
                                 # (XLA:CPU's default); a speed setting only, faster by model (docs/speed.md)
        time_budget=0.0,      # >0: minutes this invocation may train; then it stops as if at train.steps (saves,
                              # writes samples, evaluates), so a rerun with a budget continues from there
    ))
    config.eval = ml_collections.ConfigDict(dict(
        batch_size=500,
        classifier_dir="",    # a `python -m gen_jax.classifier` folder: each eval also scores samples in its space
        num_samples=0,        # samples scored at eval (0: as many as test images)
        best_metric="",       # an eval result (e.g. 'fid'): also keep the best checkpoint by it in WORKDIR/best
        best_mode="min",      # min | max: whether a lower or a higher best_metric is better
    ))
    return config


def optimizer_config(learning_rate: float, b1: float = 0.9, b2: float = 0.999) -> ml_collections.ConfigDict:
    """One optimizer's settings: name (adam | adamw | rmsprop | sgd), learning rate and its schedule, moments,
    decay, clipping.

    For rmsprop, b2 is the squared-gradient smoothing constant (PyTorch's alpha, 0.99 there). schedule is
    'constant' or 'cosine' (the learning rate decays to 0 along a half cosine over the run's updates, whose
    number train.steps sets: resuming with more steps stretches the curve, so the rate jumps back up).
    """
    return ml_collections.ConfigDict(dict(name="adam", learning_rate=learning_rate, schedule="constant", b1=b1,
                                          b2=b2, weight_decay=0.0, grad_clip_norm=0.0))


def vae_config() -> ml_collections.ConfigDict:
    """The VAE family: the seed's MLP VAE on digits, Adam 1e-3."""
    config = base_config()
    config.task = "vae"
    config.model = ml_collections.ConfigDict(dict(name="mlp_vae", latent_dim=20, hidden_dims=(256, 128)))
    config.loss = ml_collections.ConfigDict(dict(
        beta=1.0,
        kl_warmup_steps=0,    # >0: the KL weight ramps from 0 to beta over that many steps (against collapse)
        likelihood="bernoulli",
    ))
    config.optim = optimizer_config(1e-3)
    config.eval.iwae_samples = 0  # >0: also estimate the test NLL with that many importance samples
    config.eval.iwae_images = 0   # test images the IWAE estimate uses (0: all)
    config.lock()
    return config


def autoencoder_config() -> ml_collections.ConfigDict:
    """The deterministic autoencoders (vanilla, sparse, denoising): the seed's 128-unit MLP, 32-d ReLU code.

    loss.sparsity ('none' | 'kl' | 'l1') and loss.corruption ('none' | 'gaussian' | 'masking') pick the
    variant; model.name is mlp_autoencoder or conv_autoencoder.
    """
    config = base_config()
    config.task = "autoencoder"
    config.model = ml_collections.ConfigDict(dict(name="mlp_autoencoder", code_dim=32, hidden_dims=(128,),
                                                  code_activation="relu"))
    config.loss = ml_collections.ConfigDict(dict(
        reconstruction="mse",   # mse (the seed's criterion) | bce, per pixel
        sparsity="none",        # none | kl (seed; needs code_activation='sigmoid') | l1
        sparsity_target=0.05,
        sparsity_weight=0.1,
        corruption="none",      # none | gaussian (seed's add_noise) | masking
        noise_factor=0.3,
        mask_rate=0.25,
    ))
    config.optim = optimizer_config(1e-3)
    config.lock()
    return config


def gan_config() -> ml_collections.ConfigDict:
    """The GAN family: the seed's MLP GAN (BCE, non-saturating generator loss) on digits, Adam 2e-4 for both.

    generator / discriminator: a model name from `gen_jax.models` plus its options (replace the whole section
    to switch architecture). gan: the objective and each stabilisation switch (`steps.make_gan_step`).
    optim_g / optim_d: one optimizer each (two-time-scale updates: give them different learning rates).
    data.batch_size is n_critic times the per-update minibatch: each critic update sees its own real rows.
    """
    config = base_config()
    config.task = "gan"
    config.data.batch_size = 64
    config.generator = ml_collections.ConfigDict(dict(name="mlp_generator", latent_dim=100,
                                                      hidden_dims=(128, 256, 512), batch_norm=False, bn_eps=0.8,
                                                      weight_init="flax"))
    config.discriminator = ml_collections.ConfigDict(dict(
        name="mlp_discriminator", hidden_dims=(512, 256, 128), dropout=0.0, conditioning="concat",
        spectral_norm=False,          # spectral normalisation of every layer (Miyato et al. 2018)
        minibatch_discrimination=0,   # >0: that many minibatch-discrimination kernels (Salimans et al. 2016)
        minibatch_stddev=0,           # >0: minibatch standard deviation over groups of that size (Karras et al.)
        weight_init="flax",           # 'flax', 'torch' (PyTorch's layer init) or 'normal'; also in `generator`
    ))
    config.gan = ml_collections.ConfigDict(dict(
        loss="bce",                 # bce | lsgan | hinge | wasserstein
        saturating=False,           # bce only: minimax log(1 - D(G(z))) generator loss
        conditional=False,          # condition both networks on the class label
        clusters=0,                 # >0: no labels; both networks conditioned on that many k-means clusters of the
                                    # training images, sampled by their share (a self-conditioned GAN)
        n_critic=1,                 # discriminator updates per generator update
        clip_value=0.0,             # >0: WGAN weight clipping of the critic
        gp_weight=0.0,              # >0: WGAN-GP gradient penalty weight
        r1_weight=0.0,              # >0: gamma of the R1 penalty, gamma / 2 * ||grad D(x)||^2 on real images
        real_label=1.0,             # <1: one-sided label smoothing (0.9)
        feature_matching=False,     # generator matches mean discriminator features
        historical_averaging=0.0,   # >0: weight of the historical-averaging penalty (both networks)
        ema_decay=0.999,            # EMA of generator weights for sampling/eval (0: off)
    ))
    config.optim_g = optimizer_config(2e-4)
    config.optim_d = optimizer_config(2e-4)
    config.eval.num_samples = 0     # generated images scored at eval (0: as many as test images)
    config.lock()
    return config


NONFINITE_MODES = ("stop", "skip")
CPU_CONVOLUTIONS = ("xla", "ynnpack")
_CHOICES = {  # section.key: allowed values, checked before anything is built or compiled
    "loss.likelihood": ("bernoulli", "gaussian"), "loss.reconstruction": ("mse", "bce"),
    "loss.sparsity": ("none", "kl", "l1"), "loss.corruption": ("none", "gaussian", "masking"),
    "gan.loss": ("bce", "lsgan", "hinge", "wasserstein"), "train.on_nonfinite": NONFINITE_MODES,
    "eval.best_mode": ("min", "max"), "train.cpu_convolutions": CPU_CONVOLUTIONS,
}
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "linear_second_half")
_NON_NEGATIVE = ("pix2pix.l1_weight", "pix2pix.adversarial_weight", "cyclegan.cycle_weight", "cyclegan.identity_weight", "cyclegan.pool_size", "loss.beta", "loss.kl_warmup_steps", "loss.sparsity_weight", "loss.noise_factor", "gan.clip_value",
                 "gan.gp_weight", "gan.r1_weight", "gan.clusters", "gan.historical_averaging", "train.eval_every", "eval.num_samples",
                 "eval.iwae_samples", "eval.iwae_images")
_UNIT_INTERVAL = ("loss.mask_rate", "loss.sparsity_target", "gan.ema_decay", "gan.real_label")


def _translation_optimizers() -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """CycleGAN's and pix2pix's Adam 2e-4 (b1 0.5) for the generators and the discriminators, held for the first
    half of training and decayed linearly to 0 over the second."""
    sections = (optimizer_config(2e-4, b1=0.5), optimizer_config(2e-4, b1=0.5))
    for section in sections:
        section.schedule = "linear_second_half"
    return sections


def cyclegan_config() -> ml_collections.ConfigDict:
    """Unpaired image-to-image translation (CycleGAN, Zhu et al. 2017) between two domains.

    data.source names two domains (`data.domains.load`: style:SOURCE, mnist_m:SOURCE, folders:DIR_A,DIR_B).
    generator / discriminator: the options of both generators (A->B, B->A) and both discriminators (A, B).
    cyclegan: the cycle-consistency weight (lambda, 10), the identity weight as a fraction of it (0.5), and
    the image pool per discriminator (50 generated images; 0: none). Adam 2e-4 (b1 0.5), held for the first
    half of training and decayed linearly to 0 over the second, as the paper.
    """
    config = base_config()
    config.task = "cyclegan"
    config.data.source = "style:digits"
    config.data.batch_size = 16
    config.generator = ml_collections.ConfigDict(dict(name="resnet_generator", channels=16, num_blocks=2,
                                                      upsample="transpose", dropout=0.0, num_downsamplings=2))
    config.discriminator = ml_collections.ConfigDict(dict(name="patch_discriminator", channels=16, num_layers=1))
    config.cyclegan = ml_collections.ConfigDict(dict(cycle_weight=10.0, identity_weight=0.5, pool_size=50))
    config.optim_g, config.optim_d = _translation_optimizers()
    config.lock()
    return config


def pix2pix_config() -> ml_collections.ConfigDict:
    """Paired image-to-image translation (pix2pix, Isola et al. 2017): a U-Net generator and a PatchGAN that
    judges (input, output) pairs; the generator minimises the non-saturating GAN loss plus l1_weight (100) x L1
    to the target. adversarial_weight 0 trains the same U-Net on L1 alone (the comparison the paper makes).

    data.source names the pairs (`data.domains.load_pairs`: superres:SOURCE, 4x super-resolution).
    eval.classifier_dir (optional): a `python -m gen_jax.classifier` folder of the target domain; evaluation
    then also reports its accuracy on the outputs, the bicubic baseline and the true targets.
    """
    config = base_config()
    config.task = "pix2pix"
    config.data.source = "superres:digits"
    config.data.batch_size = 32
    config.generator = ml_collections.ConfigDict(dict(name="unet_generator", channels=32, dropout=0.0))
    config.discriminator = ml_collections.ConfigDict(dict(name="patch_discriminator", channels=32, num_layers=1))
    config.pix2pix = ml_collections.ConfigDict(dict(l1_weight=100.0, adversarial_weight=1.0))
    config.optim_g, config.optim_d = _translation_optimizers()
    config.lock()
    return config


def _get(config, dotted: str):
    """config's value at a dotted key, or None when a family has no such key."""
    value = config
    for part in dotted.split("."):
        if not isinstance(value, ml_collections.ConfigDict) or part not in value:
            return None
        value = value[part]
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_values(config) -> None:
    """Raises ConfigError naming the first key whose value is out of range (learning rates, sizes, choices)."""
    for dotted, allowed in _CHOICES.items():
        value = _get(config, dotted)
        if value is not None and value not in allowed:
            raise ConfigError(f"{dotted} must be one of {', '.join(allowed)}; got {value!r}")
    for dotted in _NON_NEGATIVE:
        value = _get(config, dotted)
        if _is_number(value) and not value >= 0:
            raise ConfigError(f"{dotted} must be >= 0, got {value}")
    for dotted in _UNIT_INTERVAL:
        value = _get(config, dotted)
        if _is_number(value) and not 0 <= value <= 1:
            raise ConfigError(f"{dotted} must be in [0, 1], got {value}")
    for name, section in config.items():
        if not isinstance(section, ml_collections.ConfigDict):
            continue
        if "learning_rate" in section and "name" in section:  # an optimizer_config section
            if not (_is_number(section.learning_rate) and 0 < section.learning_rate < float("inf")):
                raise ConfigError(f"{name}.learning_rate must be a positive number, got {section.learning_rate}")
            if section.name not in OPTIMIZERS:
                raise ConfigError(f"{name}.name must be one of {', '.join(OPTIMIZERS)}; got {section.name!r}")
            if section.get("schedule", "constant") not in SCHEDULES:
                raise ConfigError(f"{name}.schedule must be one of {', '.join(SCHEDULES)}; got {section.schedule!r}")
            for key in ("weight_decay", "grad_clip_norm"):
                if _is_number(section.get(key)) and not section[key] >= 0:
                    raise ConfigError(f"{name}.{key} must be >= 0, got {section[key]}")
            for key in ("b1", "b2"):
                if _is_number(section.get(key)) and not 0 <= section[key] < 1:
                    raise ConfigError(f"{name}.{key} must be in [0, 1), got {section[key]}")
        if name in _MODEL_SECTIONS:  # sizes: *_dim, hidden, num_layers a positive int; *_dims, channels positive ints
            for key, value in section.items():
                positive = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0
                if (key.endswith("_dim") or key in ("hidden", "num_layers", "num_classes")) and not positive(value):
                    raise ConfigError(f"{name}.{key} must be a positive integer, got {value!r}")
                if (key.endswith("_dims") or key == "channels") and not (
                        (key == "channels" and positive(value))
                        or isinstance(value, tuple) and all(positive(v) for v in value)):
                    raise ConfigError(f"{name}.{key} must be positive integers (e.g. 128,64), got {value!r}")
    if _get(config, "eval.batch_size") is not None and config.eval.batch_size <= 0:
        raise ConfigError(f"eval.batch_size must be positive, got {config.eval.batch_size}")
    n_critic = _get(config, "gan.n_critic")
    if n_critic is not None and n_critic < 1:
        raise ConfigError(f"gan.n_critic must be >= 1, got {n_critic}")
    if _get(config, "gan.clusters") == 1:
        raise ConfigError("gan.clusters must be 0 (off) or at least 2 (one cluster conditions on nothing)")
    if config.get("task") in ("cyclegan", "pix2pix") and _get(config, "data.exclude_labels"):
        raise ConfigError(f"data.exclude_labels applies to one-domain data; a {config.task} run trains on every "
                          f"image of its domains (leave it empty)")


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks values that a schema cannot, and locks the config against new keys."""
    task = config.get("task")
    if task in SCHEMAS:
        missing = sorted(set(SCHEMAS[task]().keys()) - set(config.keys()))
        if missing:
            raise ConfigError(f"task {task!r} needs the sections {', '.join(missing)}: start from a config of that "
                              f"family (e.g. configs/{task}.py) rather than changing config.task")
    if config.train.steps <= 0:
        raise ConfigError(f"train.steps must be positive, got {config.train.steps}")
    for key in ("steps_per_call", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
        if config.train[key] <= 0:
            raise ConfigError(f"train.{key} must be positive, got {config.train[key]}")
    if config.train.cpu_devices < 0:
        raise ConfigError(f"train.cpu_devices must be 0 (JAX's CPU devices as they are) or a device count, got "
                          f"{config.train.cpu_devices}")
    _check_values(config)
    config.lock()
    return config


# Sections that never change a run's result: they may differ when a workdir is resumed.
RESUMABLE_SECTIONS = ("train", "eval")


def _plain(config) -> dict:
    """A config as JSON-able plain values with tuples (what config.json holds, read back)."""
    as_dict = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return _tuples(json.loads(json.dumps(as_dict, default=str)))


# How the data reaches the devices, not which data: a run may resume with another pipeline.
RESULT_NEUTRAL_KEYS = ("data.pipeline", "data.device_memory_budget_mb", "data.stream_threads", "data.stream_prefetch")


def result_changes(saved, current) -> list[str]:
    """Differences between a run's saved config and `current` in settings that change the result (every
    section but train and eval), as 'key: saved -> current' lines."""
    def flat(tree, prefix=""):
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    old, new = flat(_plain(saved)), flat(_plain(current))
    keys = sorted(k for k in set(old) | set(new)
                  if k.split(".")[0] not in RESUMABLE_SECTIONS and k not in RESULT_NEUTRAL_KEYS)
    missing = "(unset)"
    return [f"{k}: {old.get(k, missing)!r} -> {new.get(k, missing)!r}" for k in keys
            if old.get(k, missing) != new.get(k, missing)]


SCHEMAS = {"vae": vae_config, "autoencoder": autoencoder_config, "gan": gan_config, "cyclegan": cyclegan_config,
           "pix2pix": pix2pix_config}
_MODEL_SECTIONS = ("model", "generator", "discriminator")  # replaced whole by configs, so never merged


def _tuples(value):
    """JSON lists back to the tuples configs use."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_saved(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in WORKDIR/config.json, on top of its family's current schema: a run saved
    before a setting existed loads with that setting's default."""
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            saved = _tuples(json.load(f))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path} is corrupt or unreadable ({type(e).__name__}: {e}); restore it from a copy, "
                          f"or rewrite it with the config the run was trained with") from None
    if not isinstance(saved, dict) or saved.get("task") not in SCHEMAS:
        task = saved.get("task") if isinstance(saved, dict) else None
        raise ConfigError(f"{workdir}/config.json names no known task: {task!r}")
    merged = SCHEMAS[saved["task"]]().to_dict()
    for key, value in saved.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in _MODEL_SECTIONS:
            merged[key].update(value)
        else:
            merged[key] = value
    try:
        return ml_collections.ConfigDict(merged)
    except Exception as e:  # e.g. a section replaced by a value of another type
        raise ConfigError(f"{path} is corrupt: {type(e).__name__}: {e}") from None


def _module_from_file(path: str):
    """Executes a config file as a module; its folder's parent is importable meanwhile (`from configs import
    wgan` in configs/wgan_gp.py), as it is for train.py at the repository root."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path}: No such file")
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception as e:  # a config file is user code: any error in it is the user's to fix
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(root)


def _parse_value(raw: str, current, dotted: str):
    """A command-line string as the type of the field it replaces (bool, int, float, str, tuple)."""
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, str):
            return raw
        if isinstance(current, tuple):
            if raw.strip() in ("", "()"):
                return ()
            items = ast.literal_eval(raw) if raw.strip()[0] in "([" else [_literal(x) for x in raw.split(",")]
            return tuple(items) if isinstance(items, (list, tuple)) else (items,)
        return _literal(raw)
    except (ValueError, SyntaxError) as e:
        raise ConfigError(f"bad value {dotted}={raw}: {type(current).__name__} expected ({e})") from None


def _literal(raw: str):
    """A Python literal when `raw` is one (1, 0.5, True), else the string itself."""
    try:
        return ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return raw.strip()


def _section_and_field(config: ml_collections.ConfigDict, dotted: str):
    """(the ConfigDict holding `dotted`'s last part, that part); an unknown key names the nearest real one."""
    *path, field = dotted.split(".")
    section = config
    for depth, part in enumerate([*path, field]):
        keys = list(section.keys()) if isinstance(section, ml_collections.ConfigDict) else []
        if part not in keys:
            close = difflib.get_close_matches(part, keys, n=1)
            where = ".".join(path[:depth]) or "the config"
            hint = f'Did you mean "{close[0]}"?' if close else f"{where} has: {', '.join(keys) or 'no keys'}"
            raise ConfigError(f"unknown config key {dotted!r} (no {part!r}); {hint}")
        if depth < len(path):
            section = section[part]
    return section, field


def override(config: ml_collections.ConfigDict, overrides: Mapping | Iterable[str]) -> ml_collections.ConfigDict:
    """Sets dotted keys on `config` in place: {"train.steps": 5} (Python values) or ["train.steps=5", ...]
    (command-line strings, parsed as the type of the field they replace). Returns `config`."""
    items = overrides.items() if isinstance(overrides, Mapping) else [_split_assignment(a) for a in overrides]
    for dotted, value in items:
        section, field = _section_and_field(config, dotted)
        current = section[field]
        if isinstance(value, str) and not isinstance(overrides, Mapping):
            value = _parse_value(value, current, dotted)
        if isinstance(current, ml_collections.ConfigDict) and not isinstance(value, (dict, ml_collections.ConfigDict)):
            raise ConfigError(f"{dotted} is a section ({', '.join(current.keys())}): set one of its keys")
        try:
            section[field] = value
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise ConfigError(f"bad value {dotted}={value!r}: {e}") from None
    return config


def _split_assignment(assignment: str) -> tuple[str, str]:
    dotted, sep, value = assignment.partition("=")
    if not sep or not dotted:
        raise ConfigError(f"override {assignment!r} must look like section.key=value")
    return dotted.strip(), value


def load(path: str, overrides: Mapping | Iterable[str] = ()) -> ml_collections.ConfigDict:
    """The config of the file at `path` (its `get_config()`), with `overrides` applied (see `override`).

    Every problem (a missing file, one that does not run, no get_config, an unknown key, a bad value) is a
    ConfigError that says what to fix.
    """
    module = _module_from_file(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config()")
    try:
        config = module.get_config()
    except Exception as e:  # user code
        raise ConfigError(f"get_config() of {path} failed: {type(e).__name__}: {e}") from None
    if not isinstance(config, ml_collections.ConfigDict) or config.get("task") not in SCHEMAS:
        raise ConfigError(f"get_config() of {path} must return a ConfigDict built from a gen_jax.config schema "
                          f"(task one of {', '.join(SCHEMAS)})")
    return override(config, overrides)
