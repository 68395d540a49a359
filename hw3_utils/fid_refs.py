"""MNIST's FID references: which images, where their statistics are cached, the download, and the time budget.

A reference is pytorch-fid's statistics (.npz) of the first `count` images of an MNIST split, cached as
<runs>/fid_cache/mnist_<split>_<count|all>.npz (`runfolder.fid_cache_dir`). A missing file is first
downloaded from where the release says (`fid_references.json`, sha256 checked); computing it with
Inception (`fid.reference_stats`, the metric's side) is refused on a CPU when it would take more than
about ten minutes, with one line saying what to do (`time_budget_refusal`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .runfolder import fid_cache_dir

SPLITS = ("train", "test")
MNIST_SIZES = {"train": 60_000, "test": 10_000}
# Where students fetch MNIST's FID statistics: written by the instructor's `make release FID_STATS_URL=...`
# (grader/release.py): {"url": base URL or null, "sha256": {"mnist_train_all.npz": "...", ...}}.
SOURCES_JSON = Path(__file__).resolve().parent / "fid_references.json"
COMPUTE_ENV = "HW3_FID_COMPUTE_REFERENCES"  # =1: compute long references here anyway
# The most Inception images a reference may cost on a CPU before the kit refuses: about ten minutes' work.
CPU_REFERENCE_LIMIT = 3000
# Inception's throughput on a small CPU (images/s), to tell a user how long a refused reference would take
# (bench/inception_speed.py measures it).
CPU_IMAGES_PER_S = 6.8


def reference_count(cfg, split: str) -> int:
    """How many MNIST images of `split` the reference uses: cfg.fid_ref_count, at most the split's size."""
    size = MNIST_SIZES[split]
    return size if cfg.fid_ref_count is None else min(cfg.fid_ref_count, size)


def reference_files(cfg, split: str, count: int | None = None, cache_dir=None) -> tuple[Path, Path, int]:
    """(png_folder, npz_path, count) of the reference of `count` (default `reference_count`) images of `split`.

    The whole split is tagged `all` (mnist_train_all.npz), whichever way it was asked for. cache_dir: default
    the runs folder's FID cache, not under the data folder, which may be read-only (a shared copy, as in CI).
    """
    count = reference_count(cfg, split) if count is None else min(count, MNIST_SIZES[split])
    tag = f"mnist_{split}_{'all' if count == MNIST_SIZES[split] else count}"
    cache = Path(cache_dir) if cache_dir else fid_cache_dir()
    return cache / tag, cache / f"{tag}.npz", count


def reference_sources() -> tuple[str | None, dict[str, str]]:
    """(base URL, {file name: sha256}) of the downloadable MNIST statistics; (None, {}) when none."""
    try:
        info = json.loads(SOURCES_JSON.read_text())
    except (OSError, ValueError):
        return None, {}
    return info.get("url") or None, dict(info.get("sha256") or {})


def fetch_reference(name: str, dest: Path) -> str | None:
    """Download `name` from the release's URL into `dest`, checking its sha256 (as pytorch-fid checks
    its weights). Returns None when done, else why not (no URL, not listed, offline, wrong hash)."""
    url, hashes = reference_sources()
    if not url or name not in hashes:
        return "your kit names no download for it"
    source = url.rstrip("/") + "/" + name
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(source, str(dest), hash_prefix=hashes[name], progress=False)
    except Exception as err:  # offline, HTTP errors, a file whose sha256 differs
        dest.unlink(missing_ok=True)
        return f"the download from {source} failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    print(f"FID: downloaded {name} from {source} (sha256 checked)")
    return None


def cached_or_fetched(npz: Path) -> str | None:
    """None when the reference `npz` is in the cache or was just downloaded into it, else why it could not be."""
    return None if npz.exists() else fetch_reference(npz.name, npz)


def time_budget_refusal(npz: Path, count: int, split: str, device, why: str) -> str | None:
    """The one line refusing to compute `count` images of Inception on this device (over about ten minutes of
    CPU), saying what to do; None when computing here is fine (a GPU, few images, or COMPUTE_ENV=1)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cpu" or count <= CPU_REFERENCE_LIMIT or os.environ.get(COMPUTE_ENV) == "1":
        return None
    hours = count / CPU_IMAGES_PER_S / 3600
    return (f"FID needs {npz.name}, the statistics of {count:,} MNIST {split} images: computing them here would take "
            f"about {hours:.1f} h of Inception on this CPU, and {why}. Put {npz.name} (pytorch-fid's .npz, from your "
            f"instructor) in {npz.parent}, or set {COMPUTE_ENV}=1 to compute it anyway.")
