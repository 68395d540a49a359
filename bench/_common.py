"""Shared pieces of the bench scripts: config from --profile/--set, device, timing, environment, JSON."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

# `python bench/x.py` from a checkout where hw3_utils is not installed (the GPU machine): use the repo's copy.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# hw3_utils before torch: its import sets how OpenMP threads wait, which libgomp reads once, when torch loads
# it (hw3_utils/_openmp.py); a bench must run as the kit does
import hw3_utils  # noqa: E402,F401,I001

# isort: split
import torch  # noqa: E402

from hw3_utils import get_config, pick_device  # noqa: E402
from hw3_utils.atomic import atomic_write  # noqa: E402
from hw3_utils.config import parse_overrides  # noqa: E402
from hw3_utils.pipeline import environment  # noqa: E402,F401  (one description of the machine, shared)


def add_config_args(p: argparse.ArgumentParser, default_profile: str = "full") -> None:
    p.add_argument("--profile", default=default_profile, help=f"config profile (default {default_profile})")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields like the CLI, e.g. --set model_channels=8 train_subset=64")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")


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


def write_json(path, record: dict) -> None:
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record, indent=2, default=str))
        print(f"wrote {path}")
