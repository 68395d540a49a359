"""The whole job, headless: train -> sample -> figures -> sample PNGs -> FID, under one run folder.

`python -m hw3_utils all` calls `run_all`; the notebooks call the same pieces one at a time.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import torch

from . import fid as fidlib
from .config import Config
from .diffusion import DDPM
from .fast import GraphedModel
from .train import load_model, pick_device, train
from .viz import plot_loss, process_grid, save_figure, show_images

REPORT_FID = {"vs MNIST PNG images": 6.12, "vs MNIST .npz": 5.77}


def make_sampler(model, cfg: Config, method: str = "ddpm", steps: int = 100, eta: float = 0.0,
                 variance: str | None = None, progress: bool = True):
    """A function (n, generator) -> (n, C, 28, 28) images in [-1, 1] for `generate_samples`.

    method "ddpm" runs all T ancestral steps (the report's sampler), "ddim" runs `steps`.
    On CUDA with cfg.fast (default there) the model call is replayed from a CUDA graph.
    """
    device = next(model.parameters()).device
    ddpm = DDPM(cfg.timesteps, cfg.beta_start, cfg.beta_end, variance or cfg.variance).to(device)
    fast = cfg.fast if cfg.fast is not None else device.type == "cuda"
    net = GraphedModel(model, amp_bf16=cfg.amp_bf16, graphs=fast)  # eager (+autocast) off CUDA
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"method must be 'ddpm' or 'ddim', got {method!r}")

    def sampler(n: int, generator=None):
        if method == "ddpm":
            return ddpm.sample(net, n, cfg.image_shape, generator=generator, progress=progress, device=device)
        return ddpm.ddim_sample(net, n, steps=steps, eta=eta, shape=cfg.image_shape, generator=generator,
                                progress=progress, device=device)

    return sampler


def samples_folder(out) -> Path:
    """<out>/samples_<newest checkpoint>: named after the weights that drew them, so samples from
    an earlier checkpoint are never reused (and resumed) after more training."""
    from .train import latest_checkpoint

    found = latest_checkpoint(out)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {Path(out) / 'checkpoints'}; train first")
    return Path(out) / f"samples_{found[0].stem}"


def environment() -> dict:
    """Where a measurement was taken: device name, torch version, date."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'})"
    return {"device": dev, "torch": torch.__version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def run_all(cfg: Config, out, device=None, data_root=None, progress: bool = True) -> dict:
    """Train (or resume), then write samples, figures and fid.json under `out`; returns the FID record."""
    matplotlib.use("Agg")
    out = Path(out)
    device = pick_device(device)
    t0 = time.perf_counter()
    result = train(cfg, out, device=device, progress=progress, data_root=data_root)
    t_train = time.perf_counter() - t0
    save_figure(plot_loss(result.history), out / "loss_curve.png")

    model = load_model(out, "ema", device)
    ddpm = DDPM.from_config(cfg).to(device)
    g = torch.Generator(device).manual_seed(cfg.seed)
    _, frames, labels = ddpm.sample(model, cfg.viz_samples, cfg.image_shape, generator=g,
                                    snapshots=cfg.viz_frames, progress=progress)
    save_figure(process_grid(frames, labels), out / "process_grid.png")

    t1 = time.perf_counter()
    folder = fidlib.generate_samples(make_sampler(model, cfg, progress=False), samples_folder(out),
                                     cfg.num_samples, cfg.sample_batch_size, seed=cfg.seed,
                                     device=device, progress=progress)
    t_sample = time.perf_counter() - t1
    grid = show_images(fidlib.load_pngs(folder, 64), nrow=8, title="Generated digits (EMA weights)")
    save_figure(grid, out / "samples_grid.png")

    ref_folder, ref_npz = fidlib.reference_stats(cfg, data_root=data_root, device=device)
    sample_stats = fidlib.folder_stats(folder, device, cfg.fid_batch_size, expected=cfg.num_samples)
    record = {
        "profile": cfg.profile,
        "num_samples": cfg.num_samples,
        "samples": str(folder),
        "reference_images": cfg.fid_ref_count or 60000,
        "fid_vs_mnist_png": fidlib.compute_fid(sample_stats, ref_folder, device, cfg.fid_batch_size),
        "fid_vs_mnist_npz": fidlib.compute_fid(sample_stats, ref_npz, device, cfg.fid_batch_size),
        "report": REPORT_FID,
        "sampler": f"DDPM ancestral, {cfg.timesteps} steps, variance={cfg.variance}, EMA weights",
        "train_seconds": round(t_train, 1),
        "sample_seconds": round(t_sample, 1),
        "final_loss": result.history[-1] if result.history else None,
        **environment(),
    }
    (out / "fid.json").write_text(json.dumps(record, indent=2))
    return record
