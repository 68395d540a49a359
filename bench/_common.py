"""Shared pieces of the benches: config from --profile/--set, device, timing, tables, and the bench's training.

Import it before torch (every bench does): hw3_utils sets how OpenMP threads wait, which libgomp reads once,
when torch loads it (hw3_utils/_openmp.py); a bench must run as the kit does.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.levers import make_ddpm, min_snr_weights
from hw3_utils import get_config, pick_device, train
from hw3_utils.config import parse_overrides
from hw3_utils.cuda_graphs import TrainStep
from hw3_utils.data import load_mnist, load_tensor, subset
from hw3_utils.runfolder import environment  # noqa: F401  (one description of the machine, shared)

REPO = Path(__file__).resolve().parent.parent


def argv_of(argv) -> list[str]:
    """The arguments a bench's main(argv) was given (its record keeps them): sys.argv[1:] when None."""
    return list(map(str, sys.argv[1:] if argv is None else argv))


def add_config_args(p: argparse.ArgumentParser, default_profile: str = "full") -> None:
    p.add_argument("--profile", default=default_profile, help=f"config profile (default {default_profile})")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields like the CLI, e.g. --set model_channels=8 train_subset=64")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_json_arg(p)


def add_json_arg(p: argparse.ArgumentParser, default=None) -> None:
    p.add_argument("--json", default=default, metavar="PATH",
                   help="write the record here (keep it as bench/results/<bench>/<name>.json for docs/results.md)")


def parse_sets(items: list[str]) -> dict:
    """['epochs=5', 'cuda_graphs=null', 'variance=beta'] -> {'epochs': 5, 'cuda_graphs': None, 'variance': 'beta'}."""
    try:
        return parse_overrides(items)
    except ValueError as err:
        raise SystemExit(str(err)) from err


def config_from_args(args):
    try:
        return get_config(args.profile, verbose=False, **parse_sets(args.set))
    except (ValueError, TypeError) as err:
        raise SystemExit(f"bad config: {err}") from err


def device_from_args(args) -> torch.device:
    return pick_device(args.device)


def device_name(device: torch.device) -> str:
    return environment(device)["device"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_chunks(fn, calls: int, repeats: int, device: torch.device) -> list[float]:
    """Milliseconds per call of `fn`, one number per chunk of calls // repeats calls.

    Each chunk starts from an idle device (synchronize) and is timed with CUDA events on the
    current stream (host perf_counter on the CPU), so queued work is counted, not just launched.
    """
    per = max(1, calls // max(1, repeats))
    out = []
    for _ in range(max(1, repeats)):
        sync(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per):
                fn()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            for _ in range(per):
                fn()
            ms = (time.perf_counter() - t0) * 1e3
        out.append(ms / per)
    return out


def summary(ms: list[float]) -> dict:
    return {"ms_median": statistics.median(ms), "ms_min": min(ms), "ms_max": max(ms), "chunks": len(ms)}


def fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    return f"{seconds:.1f} s" if seconds < 600 else f"{seconds / 60:.1f} min"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table (also valid Markdown)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])


# the bench's training: the kit's own parts (train.py), as `python -m hw3_utils train` runs them --------------
def training_data(cfg, cache: dict) -> torch.Tensor:
    """The run's training images as one tensor, loaded once per (channels, subset) into `cache`."""
    key = (cfg.in_channels, cfg.train_subset)
    if key not in cache:
        cache[key] = load_tensor(subset(load_mnist(train=True, in_channels=cfg.in_channels), cfg.train_subset),
                                 num_workers=cfg.num_workers)
    return cache[key]


# steps at which the total is re-estimated from the run's own pace: inside the profile's 200-step warm-up,
# where the lr does not depend on the total; several, so that a burst of load early on is outweighed by the
# steps after it
RECALIBRATE_AT = (100, 150, 195)


def train_for(cfg, extras: dict, data: torch.Tensor, budget: float | None, total: int, decays: list[float],
              stop: int | None = None, on_step=None):
    """About `budget` seconds of the kit's training (train.py's parts: `train_epoch` on `tensor_batches`, the short
    last batch padded, as `train_model` trains): `total` steps from a probe, re-estimated from the run's own pace
    at each of RECALIBRATE_AT (a probe alone misses when the machine's load changes). budget None: exactly
    `total` steps of schedule. `stop`: end after that many steps (the lr schedule still spans `total`);
    `on_step(step, model, emas)` after every step. `extras`: the levers the Config has no field for
    (levers.make_ddpm's schedule, `min_snr`).
    Returns (model, {decay: EMA copy}, losses, seconds)."""
    state = train.new_state(cfg, "cpu")
    state.total_steps = total
    emas = {d: state.ema if d == cfg.ema_decay else copy.deepcopy(state.model).requires_grad_(False) for d in decays}
    ddpm = make_ddpm(cfg, extras)
    step_fn = TrainStep(state.model, ddpm, state.optimizer)
    if extras.get("min_snr"):
        plain = step_fn

        def step_fn(x0, t, noise, weights, *rest):  # Min-SNR weights on top of the batch's per-image weights
            return plain(x0, t, noise, weights * min_snr_weights(ddpm, t, extras["min_snr"]), *rest)

    losses, t0 = [], time.perf_counter()
    mark = (0, t0)  # (step, time) of the last pace estimate

    def after_step(state):
        nonlocal mark
        for d, ema in emas.items():
            if ema is not state.ema:  # train_step updated the run's own
                train.ema_update(ema, state.model, state.step, d)
        if on_step is not None:
            on_step(state.step, state.model, emas)
        if budget is not None and state.step in RECALIBRATE_AT and state.total_steps > 2 * RECALIBRATE_AT[-1]:
            # the rest of the budget at the pace since the last estimate
            now = time.perf_counter()
            pace = (now - mark[1]) / (state.step - mark[0])
            state.total_steps = max(state.step + 1, state.step + int((budget - (now - t0)) / pace))
            mark = (state.step, now)

    end = lambda: min(state.total_steps, stop or state.total_steps)  # noqa: E731 (the total is re-estimated)
    while state.step < end():
        n = min(train.steps_per_epoch(len(data), cfg), end() - state.step)
        batches = itertools.islice(train.tensor_batches(data, cfg, state.epoch), n)
        losses += train.train_epoch(state, cfg, step_fn, batches, n, progress=False, on_step=after_step).tolist()
        state.epoch += 1
    return state.model, emas, losses, time.perf_counter() - t0
