"""Hyperparameters: one dataclass, the report's recipe as its defaults, and named profiles.

Two profiles are code paths: `full` is the recipe of the reference report, exactly (for a GPU);
`cpu` turns noise into recognisable digits on a laptop without a GPU in minutes (one grey channel,
a smaller UNet, an lr schedule, a respaced sampler with x0-hat clipping; why each: docs/decisions/).
Each has a class-conditional twin, `full-cond` and `cpu-cond` (the same recipe with a label embedding and
label dropout, for classifier-free guidance: notebook 06), in a run folder of its own. Each of the four has a
test-size twin, `full-smoke`, `cpu-smoke`, `full-cond-smoke`, `cpu-cond-smoke`: the same config with the sizes
shrunk by one function, `smoke_sizes` (data, epochs, width, sample counts), so the tests and the notebooks
under nbval run every code path a student runs, in minutes.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

PROFILE_ENV = "HW3_PROFILE"
MNIST_TRAIN = 60_000  # training images in MNIST
# MNIST's classes: a conditional config's num_classes. Its labels are the digits 0..9 and the null label
# ("no digit", classifier-free guidance), whose index is num_classes.
NUM_DIGITS = 10


@dataclass
class Config:
    """Every knob of the pipeline. Defaults are the report's recipe (the `full` profile)."""

    # data: MNIST as 3-channel 28x28 images in [-1, 1] (report, section 2.1)
    image_size: int = 28
    in_channels: int = 3
    train_subset: int | None = None  # None = all 60,000 training images
    num_workers: int = 4  # report's DataLoader; capped at the machine's core count

    # UNet (report, section 1): widths model_channels * channel_mult on the way down,
    # model_channels * bottleneck_mult in the 3x3 bottleneck.
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    bottleneck_mult: int = 8
    time_emb_dim: int = 256
    groups: int = 8  # GroupNorm groups; the report does not say, 8 divides every width
    # Not in the report: class conditioning for classifier-free guidance (Ho & Salimans 2022; hw3_utils/guidance.py).
    # 0: unconditional (the report's model); NUM_DIGITS: a label embedding for the digits and a null label (index 10).
    num_classes: int = 0
    label_dropout: float = 0.1  # share of training labels replaced by the null label each step (conditional only)

    # diffusion (DDPM, Ho et al. 2020): linear betas from beta_1 to beta_T
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    variance: str = "posterior"  # sigma_t^2 = beta-tilde_t ("posterior") or beta_t ("beta")

    # training: Adam with torch's default betas, batch 128, 50 epochs, a constant learning rate
    batch_size: int = 128
    epochs: int = 50
    lr: float = 2e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    # Not in the report (constant lr): a linear warm-up over the first steps and a cosine decay
    # to 0 at the last step, which short runs (the `cpu` profile) need to end on good weights.
    lr_warmup_steps: int = 0
    lr_decay: str = "none"  # "none" or "cosine"
    ema_decay: float = 0.9995  # not in the report; sampling uses the EMA weights by default
    seed: int = 0
    log_every: int = 50  # steps between progress-bar updates and non-finite-loss checks

    # speed (not in the report; docs/developers.md, "The GPU fast path"). None means: decide by the device.
    tensor_data: bool | None = None  # whole (sub)set as one tensor instead of PIL DataLoader workers
    cuda_graphs: bool | None = None  # replay the step and the model call as CUDA graphs (on when CUDA)
    amp_bf16: bool = False  # bf16 autocast; off until FID shows it costs nothing
    channels_last: bool = False  # NHWC weights and activations: same values; on in the cpu profile

    # sampling: the report's sampler is Algorithm 2 with all T steps and no clipping
    sampler: str = "ddpm"  # "ddpm": ancestral (Algorithm 2); "ddim": DDIM with eta = 0 (deterministic)
    # None: all T steps (the report); "ddpm" with fewer runs Algorithm 2 on a respaced schedule (sampling.respaced)
    sample_steps: int | None = None
    # x0-hat clipped to [-1, 1] at every step, as Ho et al.'s released code (clip_denoised) and
    # diffusers' DDPMScheduler (clip_sample) do; the paper's Algorithm 2 does not, nor the report.
    clip_denoised: bool = False

    # FID: num_samples 28x28 RGB PNGs (identical channels when in_channels = 1)
    num_samples: int = 10_000
    sample_batch_size: int = 1000
    fid_ref_count: int | None = None  # None = all 60,000 MNIST training images
    fid_batch_size: int = 50
    # the digit classifier's MNIST training images (digits.load_classifier(count)); None = all 60,000
    classifier_images: int | None = None
    viz_samples: int = 8  # columns of the 8x8 process grid
    viz_frames: int = 8  # rows of the process grid / slider frames (report: 8 snapshots)
    profile: str = "full"

    def __post_init__(self):
        _validate(self)
        widths = [self.model_channels * m for m in (*self.channel_mult, self.bottleneck_mult)]
        if any(w % self.groups for w in widths):
            raise ConfigError(
                f"every UNet width {widths} must be divisible by groups={self.groups}; "
                "choose model_channels as a multiple of groups"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """Rebuild a Config from `to_dict()` output; unknown keys are an error."""
        d = dict(d)
        if "fast" in d:  # checkpoints written before `fast` was split into its two meanings
            fast = d.pop("fast")
            d.setdefault("tensor_data", fast)
            d.setdefault("cuda_graphs", fast)
        _check_keys(d)
        return cls(**d)

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path) -> Config:
        with open(path) as f:
            return cls.from_dict(json.load(f))


class ConfigError(ValueError):
    """A config field has a value of the wrong type or outside its range."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# field -> (check, what is allowed). One line per field, so a bad value from a notebook's
# setup(...) or the CLI's --set is named with what would be accepted.
_RULES = {
    "image_size": (lambda v: v == 28, "28 (the UNet's 28 -> 14 -> 7 -> 3 shape walk is fixed)"),
    "in_channels": (lambda v: v in (1, 3) and _is_int(v), "1 or 3 (torchvision's Grayscale makes 1 or 3 channels)"),
    "train_subset": (lambda v: v is None or (_is_int(v) and v >= 1), "null (all 60,000) or an integer >= 1"),
    "num_workers": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "model_channels": (lambda v: _is_int(v) and v >= 1, "an integer >= 1 (a multiple of groups)"),
    "channel_mult": (lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_int(m) and m >= 1 for m in v),
                     "three integers >= 1, one per down block, e.g. [1,2,4]"),
    "bottleneck_mult": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "time_emb_dim": (lambda v: _is_int(v) and v >= 4 and v % 2 == 0, "an even integer >= 4"),
    "groups": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "num_classes": (lambda v: v in (0, NUM_DIGITS) and _is_int(v),
                    f"0 (unconditional) or {NUM_DIGITS} (conditioned on the digit)"),
    "label_dropout": (lambda v: _is_num(v) and 0 <= v < 1,
                      "a number in [0, 1), the share of labels dropped (Ho & Salimans use 0.1 or 0.2)"),
    "timesteps": (lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    "beta_start": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)"),
    "beta_end": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1), at least beta_start"),
    "variance": (lambda v: v in ("posterior", "beta"), "'posterior' or 'beta'"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "lr": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1], e.g. 2e-4"),
    "adam_betas": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v),
                   "two numbers in [0, 1), e.g. [0.9,0.999]"),
    "lr_warmup_steps": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "lr_decay": (lambda v: v in ("none", "cosine"), "'none' or 'cosine'"),
    "ema_decay": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "log_every": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "tensor_data": (lambda v: v is None or isinstance(v, bool), "true, false or null (on)"),
    "cuda_graphs": (lambda v: v is None or isinstance(v, bool), "true, false or null (on when CUDA)"),
    "amp_bf16": (lambda v: isinstance(v, bool), "true or false"),
    "channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "sampler": (lambda v: v in ("ddpm", "ddim"), "'ddpm' or 'ddim'"),
    "sample_steps": (lambda v: v is None or (_is_int(v) and v >= 1), "null (all T) or an integer in [1, T]"),
    "clip_denoised": (lambda v: isinstance(v, bool), "true or false"),
    "num_samples": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "sample_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "fid_ref_count": (lambda v: v is None or (_is_int(v) and v >= 2), "null (the whole split) or an integer >= 2"),
    "fid_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "classifier_images": (lambda v: v is None or (_is_int(v) and v >= 1),
                          "null (all 60,000) or an integer >= 1 (the classifier trains on at least one batch)"),
    "viz_samples": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "viz_frames": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "profile": (lambda v: isinstance(v, str) and v != "", "a profile name"),
}


def _validate(cfg: Config) -> None:
    """Check every field's type and range; the first bad one raises ConfigError naming field, value, rule."""
    for name, (ok, allowed) in _RULES.items():
        value = getattr(cfg, name)
        if not ok(value):
            raise ConfigError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    cfg.channel_mult = tuple(cfg.channel_mult)
    cfg.adam_betas = tuple(float(b) for b in cfg.adam_betas)
    if cfg.beta_end < cfg.beta_start:
        raise ConfigError(f"beta_end={cfg.beta_end!r} is not allowed: "
                          f"it must be at least beta_start={cfg.beta_start!r}")
    if cfg.sample_steps is not None and cfg.sample_steps > cfg.timesteps:
        raise ConfigError(f"sample_steps={cfg.sample_steps!r} is not allowed: "
                          f"it must be at most timesteps={cfg.timesteps!r}")


PROFILES: dict[str, dict] = {
    "full": {},
    # What a 2-core CPU can do in about ten minutes of training; each value's measurement is a note in
    # docs/decisions/ (named beside it).
    "cpu": dict(
        in_channels=1,  # the report's 3 channels are copies of one: one-grey-channel.md
        model_channels=16,  # widths 16/32/64, bottleneck 128, 0.64 M parameters: width-16.md
        groups=1,  # so that x_t's image mean reaches the output: groupnorm-one-group.md
        batch_size=32,  # at equal images seen smaller batches learn more: batch-32-lr-1e-3.md
        epochs=5,  # what fits the ten minutes: training-length-5-epochs.md
        lr=1e-3,  # batch-32-lr-1e-3.md
        adam_betas=(0.9, 0.99),  # second moments over the last ~100 of 9,375 steps: adam-beta2-0.99.md
        lr_warmup_steps=200,  # a higher rate, warmed up and decayed to 0: lr-warmup-cosine.md
        lr_decay="cosine",
        ema_decay=0.999,  # train's EMA warm-up reaches it only near a 5-epoch run's end: ema-0.999.md
        sample_steps=50,  # Algorithm 2 on respaced steps, x0-hat clipped: sampler-50-steps-clipped.md
        clip_denoised=True,
        num_samples=1000,  # FID-1k beside the floor at 1,000: fid-1k.md
        sample_batch_size=500,
        num_workers=0,  # no worker processes competing with training for the cores: cpu-step.md
        channels_last=True,  # the same values, a faster step on the CPU: channels-last.md
    ),
}

# The conditional twins: the same recipe, conditioned on the digit (notebook 06). label_dropout is the
# Config default, Ho & Salimans' p_uncond = 0.1.
COND_SUFFIX = "-cond"
PROFILES.update({name + COND_SUFFIX: {**PROFILES[name], "num_classes": NUM_DIGITS} for name in list(PROFILES)})

SMOKE_SUFFIX = "-smoke"


def smoke_sizes(base: dict) -> dict:
    """The test sizes of a profile: `base` (a profile's overrides) with sizes shrunk, nothing else.

    Data, epochs, width and sample counts shrink; every switch that picks a code path (channels,
    sampler, respacing, clipping, lr schedule, tensor data, CUDA graphs) keeps the profile's value.
    The warm-up keeps its share of the (much shorter) run, so the schedule still warms up and decays.
    """
    cfg = Config(**base)
    steps_before = cfg.epochs * math.ceil((cfg.train_subset or MNIST_TRAIN) / cfg.batch_size)
    sizes = dict(
        train_subset=2048,  # 2 epochs of 2,048 images: a loss curve that visibly falls, seconds on 2 cores
        epochs=2,
        model_channels=min(cfg.model_channels, 16),
        num_samples=10,  # one image per digit: notebook 06's sweep runs all T steps of full-smoke per weight
        sample_batch_size=32,
        fid_ref_count=32,
        fid_batch_size=32,
        classifier_images=1024,  # a digit classifier trained in seconds: its scores mean nothing here
        log_every=1,
    )
    steps_after = sizes["epochs"] * math.ceil(sizes["train_subset"] / cfg.batch_size)
    if cfg.lr_warmup_steps:
        sizes["lr_warmup_steps"] = max(1, round(cfg.lr_warmup_steps * steps_after / steps_before))
    return {**base, **sizes}


PROFILES.update({name + SMOKE_SUFFIX: smoke_sizes(PROFILES[name]) for name in list(PROFILES)})


def base_profile(profile: str) -> str:
    """The code path of a profile: 'cpu-smoke' -> 'cpu', 'cpu-cond-smoke' -> 'cpu-cond', 'full' -> 'full'."""
    return profile.removesuffix(SMOKE_SUFFIX)


def conditional_profile(profile: str | None = None, verbose: bool = True) -> str:
    """The conditional twin of a profile (the argument, else $HW3_PROFILE, else by device, as `resolve_profile`):
    'cpu' -> 'cpu-cond', 'full-smoke' -> 'full-cond-smoke'; a conditional profile is its own twin."""
    name = resolve_profile(profile, verbose=False)
    base, smoke = base_profile(name), name.endswith(SMOKE_SUFFIX)
    twin = (base if base.endswith(COND_SUFFIX) else base + COND_SUFFIX) + (SMOKE_SUFFIX if smoke else "")
    if twin not in PROFILES:
        raise ConfigError(f"profile {name!r} has no conditional twin; the conditional profiles are: "
                          f"{sorted(p for p in PROFILES if COND_SUFFIX in p)}")
    if verbose and twin != name:
        print(f"hw3_utils: conditional twin '{twin}' of profile '{name}'")
    return twin


def guidance_module():
    """hw3_utils.guidance, the file of the optional extension (notebook 06) that a conditional config needs, or a
    ConfigError saying that this kit was released without it."""
    try:
        return importlib.import_module("hw3_utils.guidance")
    except ModuleNotFoundError as err:
        if err.name != "hw3_utils.guidance":
            raise
        raise ConfigError("this kit was released without notebook 06 (the class-conditional extension), so its "
                          "conditional profiles cannot run: use the cpu or full profile") from None


def stream_seed(seed: int, k: int) -> int:
    """The seed of stream k of a run seeded by `seed` (batch k of its samples, epoch k's shuffle).

    A pure function of both, so a resumed run draws what an unbroken one would; distinct for every k below
    the prime 1,000,003 that spaces the runs' seeds.
    """
    return seed * 1_000_003 + k


# Fields that decide the network's shapes or the meaning of its output: a checkpoint
# whose values differ cannot be loaded into a model built from this config.
MODEL_FIELDS = (
    "image_size", "in_channels", "model_channels", "channel_mult",
    "bottleneck_mult", "time_emb_dim", "groups", "timesteps", "num_classes",
)


def _check_keys(d: dict) -> None:
    valid = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(d) - valid)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; valid keys are: {sorted(valid)}")


def resolve_profile(profile: str | None = None, verbose: bool = True) -> str:
    """Pick the profile: the argument, else $HW3_PROFILE, else `full` on CUDA and `cpu` without."""
    if profile:
        source = "argument"
    elif os.environ.get(PROFILE_ENV):
        profile, source = os.environ[PROFILE_ENV], f"${PROFILE_ENV}"
    else:
        cuda = torch.cuda.is_available()
        profile = "full" if cuda else "cpu"
        source = "CUDA available" if cuda else "no CUDA"
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile {profile!r} (from {source}); valid profiles are: {sorted(PROFILES)}"
        )
    if verbose:
        print(f"hw3_utils: profile '{profile}' (chosen by {source})")
    return profile


def get_config(profile: str | None = None, verbose: bool = True, **overrides) -> Config:
    """The Config of a named profile, with keyword overrides: `get_config("cpu-smoke", epochs=3)`."""
    name = resolve_profile(profile, verbose=verbose)
    values = {**PROFILES[name], **overrides, "profile": name}
    _check_keys(values)
    return Config(**values)


def parse_overrides(items) -> dict:
    """Command-line overrides ['epochs=5', 'sampler=ddim', 'fid_ref_count=null'] -> {'epochs': 5, ...}.

    Values are read as JSON where they parse (numbers, true/false/null, lists), else kept as strings.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def config_diff(a: Config, b: Config, fields=None) -> dict[str, tuple]:
    """Fields whose values differ between two configs: {name: (a_value, b_value)}."""
    names = fields or [f.name for f in dataclasses.fields(Config)]
    return {n: (getattr(a, n), getattr(b, n)) for n in names if getattr(a, n) != getattr(b, n)}


RUNS_ENV = "HW3_RUNS_DIR"


def runs_dir() -> Path:
    """Where run folders live: $HW3_RUNS_DIR, else `runs/` at the repo root (also from notebooks/)."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV])
    repo = Path(__file__).resolve().parent.parent
    return repo / "runs" if (repo / "pyproject.toml").exists() else Path("runs").resolve()


def run_dir(name: str | None = None, cfg: Config | None = None) -> Path:
    """runs/<name>, with the profile's name as the default (notebooks 04 and 05 share it)."""
    return runs_dir() / (name or (cfg.profile if cfg else "default"))
