"""The run folder: its layout, and its record `fid.json` (one writer, one reader, one check).

    runs/<profile>/                       config.run_dir(cfg=cfg); $HW3_RUNS_DIR moves runs/
        config.json                       the Config of the newest training session
        checkpoints/step_XXXXXXXX.pt      one per finished epoch, the two newest kept (train.py)
        samples_<checkpoint>/00000.png    the samples of that checkpoint's EMA weights (samples_dir;
                                          pipeline.samples_folder picks the newest checkpoint's)
        loss_curve.png, process_grid.png, samples_grid.png
        digit_grids.png                   notebook 06's grids of the sweep, one row per digit (conditional runs)
        previews/epoch_NNN.png            16 samples after each epoch (python -m hw3_utils train|all)
        fid.json                          write_fid_json: what notebook 05, `python -m hw3_utils fid|all`
                                          write, `make submit` hands in and the grader checks
        guidance_sweep.json               write_sweep_json: notebook 06's guidance sweep (conditional runs)
    runs/fid_cache/                       fid_cache_dir(): MNIST's FID reference statistics (fid_refs.py)

A submission zip holds each run's record as runs/<profile>/fid.json (submitted_fid_name).
Everything that reads or writes one of these paths asks this module for it (tests/test_structure.py).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import torch

from .atomic import atomic_write
from .config import PROFILES, Config, get_config, runs_dir

CONFIG_JSON = "config.json"
CHECKPOINTS = "checkpoints"
CHECKPOINT_GLOB = "step_*.pt"
SAMPLES_PREFIX = "samples_"
FID_JSON = "fid.json"
SWEEP_JSON = "guidance_sweep.json"
FIGURES = ("loss_curve", "process_grid", "samples_grid")  # every run's: notebooks 04 and 05, `python -m hw3_utils all`
CONDITIONAL_FIGURES = ("digit_grids",)  # a conditional run's, from notebook 06
PREVIEWS = "previews"
FID_CACHE = "fid_cache"
# The zip's folder of run records: runs/<profile>/fid.json, the only run-folder files a submission holds.
SUBMITTED_RUNS = "runs"
SUBMITTED_FID_RE = re.compile(rf"^{SUBMITTED_RUNS}/[A-Za-z0-9_.-]+/{re.escape(FID_JSON)}$")
# The three FIDs of a record: vs the training set (the report's reference), vs the test set, and
# the real-vs-real floor at the samples' count (pipeline.fid_table computes them).
FID_KEYS = ("fid_vs_mnist_train", "fid_vs_mnist_test", "fid_floor_test_vs_train")


def config_path(run) -> Path:
    """<run>/config.json: the Config of the run's newest training session."""
    return Path(run) / CONFIG_JSON


def checkpoint_dir(run) -> Path:
    return Path(run) / CHECKPOINTS


def checkpoint_path(run, step: int) -> Path:
    return checkpoint_dir(run) / f"step_{step:08d}.pt"


def checkpoint_paths(run) -> list[Path]:
    """The run's checkpoints, newest first."""
    return sorted(checkpoint_dir(run).glob(CHECKPOINT_GLOB), reverse=True)


def figure_path(run, name: str) -> Path:
    """<run>/<name>.png for one of FIGURES or CONDITIONAL_FIGURES."""
    if name not in FIGURES + CONDITIONAL_FIGURES:
        raise ValueError(f"unknown figure {name!r}; the run folder holds {', '.join(FIGURES + CONDITIONAL_FIGURES)}")
    return Path(run) / f"{name}.png"


def preview_path(run, epoch: int) -> Path:
    """<run>/previews/epoch_NNN.png: what the EMA model drew after that epoch."""
    return Path(run) / PREVIEWS / f"epoch_{epoch:03d}.png"


def samples_dir(run, checkpoint) -> Path:
    """<run>/samples_<checkpoint stem>: the samples drawn by that checkpoint's weights."""
    return Path(run) / f"{SAMPLES_PREFIX}{Path(checkpoint).stem}"


def fid_json_path(run) -> Path:
    return Path(run) / FID_JSON


def fid_json_paths(runs) -> list[Path]:
    """Every run's fid.json under a runs folder (<runs>/<profile>/fid.json), sorted by path; [] without the folder."""
    runs = Path(runs)
    return sorted(runs.glob(f"*/{FID_JSON}")) if runs.is_dir() else []


def fid_cache_dir() -> Path:
    """<runs>/fid_cache: the cached MNIST FID references; not under the data folder, which may be read-only."""
    return runs_dir() / FID_CACHE


def submitted_fid_name(profile: str) -> str:
    """The zip member of a run's fid.json in a submission: runs/<profile>/fid.json."""
    return f"{SUBMITTED_RUNS}/{profile}/{FID_JSON}"


def submitted_profile(member: str) -> str | None:
    """The profile of a submission's runs/<profile>/fid.json member, else None."""
    parts = member.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == SUBMITTED_RUNS and parts[2] == FID_JSON else None


# fid.json -------------------------------------------------------------------------------------
def sampler_name(cfg: Config) -> str:
    """The config's sampler in words, for fid.json and figure titles."""
    steps = cfg.sample_steps or cfg.timesteps
    if cfg.sampler == "ddim":
        kind = f"DDIM, {steps} steps, eta 0"
    elif steps == cfg.timesteps:
        kind = f"DDPM ancestral, all {cfg.timesteps} steps, variance={cfg.variance}"
    else:
        kind = f"DDPM ancestral on {steps} respaced steps, variance={cfg.variance}"
    return kind + (", x0-hat clipped" if cfg.clip_denoised else "") + ", EMA weights"


def cpu_model() -> str:
    """The CPU's model name ('Intel(R) Xeon(R) Processor', 'AMD EPYC ...'): every figure names its machine."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device) -> dict:
    """Where a measurement was taken: device name and type, torch/CUDA/Python versions, cores, date."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU {cpu_model()}, {torch.get_num_threads()} torch threads"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"device": name, "device_type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "host_cores": cores,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def fid_record(cfg: Config, table: dict, device, **extra) -> dict:
    """The fid.json record: profile, sample count and sampler (from cfg), the FIDs and the floor
    (`table`, from pipeline.fid_table), anything in `extra` (timings, final loss), and the environment."""
    missing = [k for k in FID_KEYS if k not in table]
    if missing:
        raise ValueError(f"the FID table lacks {missing}; build it with pipeline.fid_table")
    own = {"profile": cfg.profile, "num_samples": cfg.num_samples, "sampler": sampler_name(cfg)}
    record = {**own, **table, **extra, **environment(device)}
    record.update(own)  # the config is the truth about these three, whatever the table says
    return record


def write_fid_json(run, cfg: Config, table: dict, device, **extra) -> Path:
    """Write <run>/fid.json atomically (the one writer); returns its path."""
    path = fid_json_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(fid_record(cfg, table, device, **extra), indent=2))
    return path


def sweep_json_path(run) -> Path:
    return Path(run) / SWEEP_JSON


def write_sweep_json(run, cfg: Config, rows: list[dict], device, **extra) -> Path:
    """Write <run>/guidance_sweep.json atomically: the profile, sample count and sampler, the sweep's rows
    (conditional.score_sweep: per w, requested-digit accuracy and the FIDs), `extra` (timings) and the environment."""
    record = {"profile": cfg.profile, "num_samples": cfg.num_samples, "sampler": sampler_name(cfg),
              "rows": rows, **extra, **environment(device)}
    path = sweep_json_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2))
    return path


def read_fid_json(path) -> dict:
    """A fid.json as a dict; ValueError when it is not a JSON object."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds a JSON {type(record).__name__}, not an object")
    return record


def fid_problem(record: dict) -> str | None:
    """Why a fid.json record does not fit the profile it names, or None when it does.

    The grader lists a submission with a problem here under "needs a human look". A record that
    `write_fid_json` wrote for an unedited profile has none (tests/test_runfolder.py).
    """
    profile = record.get("profile")
    if not isinstance(profile, str) or profile not in PROFILES:
        return f"fid.json names no known profile ({str(profile)[:40]!r})"
    cfg = get_config(profile, verbose=False)
    n = record.get("num_samples")
    if n != cfg.num_samples:
        return f"fid.json: {n!r} samples, but the {profile} profile draws {cfg.num_samples:,}"
    for key in FID_KEYS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"fid.json: {key} is {str(value)[:40]!r}, not a FID (a finite number >= 0)"
    if record.get("sampler") != sampler_name(cfg):
        return f"fid.json: sampler {str(record.get('sampler'))[:80]!r}, not the {profile} profile's"
    return None
