"""The whole job, headless: train -> sample -> figures -> sample PNGs -> FID, under one run folder.

`python -m hw3_utils all` calls `run_all`; the notebooks call the same pieces one at a time.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import torch

from . import fid as fidlib
from .config import Config
from .cuda_graphs import GraphedModel
from .diffusion import DDPM
from .runfolder import (
    checkpoint_dir,
    environment,
    figure_path,
    preview_path,
    read_fid_json,
    sampler_name,
    samples_dir,
    write_fid_json,
)
from .sampling import sample
from .train import CheckpointError, load_model, newest_checkpoint_info, pick_device, train_model

__all__ = ["make_sampler", "draw_samples", "preview_samples", "save_previews", "samples_folder", "score_run",
           "fid_table", "print_fid_table", "run_all",
           "environment", "sampler_name"]  # the last two live in runfolder
from .viz import plot_loss, process_grid, save_figure, show_images

REPORT_FID = {"vs MNIST PNG images": 6.12, "vs MNIST .npz": 5.77}
# What the report's two numbers were measured against, as far as it says.
REPORT_REFERENCES = {
    "vs MNIST PNG images": "the report's own export of MNIST as PNGs (count not stated)",
    "vs MNIST .npz": "a precomputed MNIST .npz (source not stated)",
}


def make_sampler(model, cfg: Config, method: str | None = None, steps: int | None = None, eta: float = 0.0,
                 variance: str | None = None, clip_denoised: bool | None = None, progress: bool = True):
    """A function (n, generator) -> (n, C, 28, 28) images in [-1, 1] for `generate_samples`: `sampling.sample`
    with the config's sampler, or the arguments given instead (cfg.sampler, cfg.sample_steps, cfg.variance,
    cfg.clip_denoised). On CUDA with CUDA graphs (default there) the model call is replayed from a CUDA graph.
    """
    device = next(model.parameters()).device
    ddpm = DDPM(cfg.timesteps, cfg.beta_start, cfg.beta_end, variance or cfg.variance).to(device)
    graphs = device.type == "cuda" and cfg.cuda_graphs is not False
    net = GraphedModel(model, amp_bf16=cfg.amp_bf16, graphs=graphs)  # eager (+autocast) off CUDA

    def sampler(n: int, generator=None):
        return sample(net, ddpm, cfg, n=n, method=method, steps=steps, eta=eta, clip=clip_denoised,
                      generator=generator, progress=progress, device=device)

    return sampler


def draw_samples(sampler, cfg: Config, folder, n: int | None = None, device=None, progress: bool = True) -> Path:
    """A run's samples as notebook 05 draws them: n PNGs (default cfg.num_samples) of `sampler` in `folder`.

    Batches of cfg.sample_batch_size, batch b drawn from a generator seeded by (cfg.seed, b)
    (`fid.generate_samples`, which also resumes a killed draw). So the first k images of a larger draw are the
    same images as a draw of k (k a multiple of the batch size): `bench/fid_sample_count.py` relies on that.
    sampler: `make_sampler(model, cfg)`, or any (n, generator) -> (n, C, H, W) in [-1, 1]; device: the
    generators' (the model's).
    """
    return fidlib.generate_samples(sampler, folder, cfg.num_samples if n is None else n, cfg.sample_batch_size,
                                   seed=cfg.seed, device=device, progress=progress)


PREVIEW_SAMPLES, PREVIEW_STEPS = 16, 30  # few enough to redraw after every epoch at a small cost to training


@torch.no_grad()
def preview_samples(model, cfg: Config) -> torch.Tensor:
    """What the model draws now: (16, C, 28, 28) in [-1, 1], Algorithm 2 on 30 respaced steps with x0-hat
    clipped (so an unfinished model already shows digits), from the same noise every call, so that the same
    16 digits can be watched forming epoch after epoch."""
    device = next(model.parameters()).device
    ddpm = DDPM.from_config(cfg).to(device)
    g = torch.Generator(device).manual_seed(cfg.seed + 1)
    return sample(model, ddpm, cfg, n=PREVIEW_SAMPLES, method="ddpm", steps=min(PREVIEW_STEPS, cfg.timesteps),
                  clip=True, generator=g, progress=False)


def save_previews(run, cfg: Config):
    """An `on_epoch` for train_model that saves each epoch's preview as <run>/previews/epoch_NNN.png."""
    def on_epoch(epoch: int, model) -> None:
        path = preview_path(run, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(show_images(preview_samples(model, cfg), nrow=8, title=f"After epoch {epoch}"), path)
    return on_epoch


def samples_folder(run) -> Path:
    """The samples folder of the run's newest checkpoint (`runfolder.samples_dir`): named after the weights
    that drew them, so samples from an earlier checkpoint are never reused (or resumed) after more training."""
    found = newest_checkpoint_info(run)  # reads the checkpoint's small header only
    if found is None:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir(run)}; train first "
                              "(notebook 04 or `python -m hw3_utils train`)")
    return samples_dir(run, found[0])


def score_run(run, cfg: Config, device=None, backend=None) -> dict[str, float]:
    """FID of the samples of the run's newest checkpoint vs the MNIST train and test sets.

    run: a run folder holding checkpoints/ and samples_<checkpoint>/ (cfg.num_samples PNGs).
    Returns {"train": FID vs cfg.fid_ref_count MNIST training images, "test": FID vs test images}.
    The references are cached .npz statistics (`fid.reference_npz`).
    backend: what computes statistics and distances, `hw3_utils.fid` when None; use it as `fid`
    below (the task's check passes a cheap stand-in with the same functions).
    """
    fid = fidlib if backend is None else backend  # noqa: F841 (unused in the student kit until task 5b is done)
    ### BEGIN SOLUTION 5b
    folder = samples_folder(run)  # the samples of the newest weights, not an older folder
    stats = fid.folder_stats(folder, device, cfg.fid_batch_size, expected=cfg.num_samples)
    return {split: fid.compute_fid(stats, fid.reference_npz(cfg, split, device=device))
            for split in ("train", "test")}
    ### END SOLUTION


def fid_table(run, cfg: Config, device=None, data_root=None) -> dict:
    """Everything notebook 05 and `fid.json` report: FID vs MNIST train and test, and the real-vs-real floor.

    The floor is FID(as many MNIST test images as there are samples, MNIST train): what a model that
    draws real MNIST digits would score at this sample count, so the gap between a model's FID and
    the floor is what training can still win.
    """
    refs = {split: fidlib.reference_npz(cfg, split, device=device, data_root=data_root) for split in fidlib.SPLITS}
    scores = score_run(run, cfg, device)
    mu_tr, s_tr = fidlib.load_stats(refs["train"])
    mu_te, s_te = fidlib.load_stats(fidlib.floor_npz(cfg, device=device, data_root=data_root))
    counts = {split: fidlib.reference_count(cfg, split) for split in fidlib.SPLITS}
    note = fidlib.singular_note(min(cfg.num_samples, *counts.values()))
    if note:
        print(note)
    return {
        "fid_vs_mnist_train": scores["train"],
        "fid_vs_mnist_test": scores["test"],
        "fid_floor_test_vs_train": fidlib.frechet_distance(mu_te, s_te, mu_tr, s_tr),
        "floor_images": min(cfg.num_samples, fidlib.MNIST_SIZES["test"]),
        "num_samples": cfg.num_samples,
        "reference_images": counts,
        "samples": str(samples_folder(run)),
        "report": REPORT_FID,
    }


def print_fid_table(record: dict) -> None:
    """The FID record as a small table beside the report's numbers."""
    rows = [("vs MNIST train", record["fid_vs_mnist_train"], record["reference_images"]["train"]),
            ("vs MNIST test", record["fid_vs_mnist_test"], record["reference_images"]["test"]),
            ("floor: MNIST test vs train", record["fid_floor_test_vs_train"], None)]
    print(f"{'FID':<28}{'value':>9}   reference")
    for name, value, n in rows:
        ref = f"{n:,} MNIST images" if n else (f"{record.get('floor_images', '?'):,} real test images: "
                                              "a perfect model's score at this sample count")
        print(f"{name:<28}{value:>9.2f}   {ref}")
    for name, value in REPORT_FID.items():
        print(f"{'report, ' + name:<28}{value:>9.2f}   {REPORT_REFERENCES[name]}")
    print(f"this run: {record['num_samples']:,} samples from {Path(record['samples']).name}")


def run_all(cfg: Config, out, device=None, data_root=None, progress: bool = True) -> dict:
    """Train (or resume), then write samples, figures and fid.json under `out`; returns the fid.json record."""
    matplotlib.use("Agg")
    out = Path(out)
    device = pick_device(device)
    t0 = time.perf_counter()
    result = train_model(cfg, out, device=device, progress=progress, data_root=data_root,
                         on_epoch=save_previews(out, cfg))
    t_train = time.perf_counter() - t0
    save_figure(plot_loss(result.history, result.loss_log), figure_path(out, "loss_curve"))

    model = load_model(out, "ema", device)
    ddpm = DDPM.from_config(cfg).to(device)
    g = torch.Generator(device).manual_seed(cfg.seed)
    _, frames, labels = sample(model, ddpm, cfg, n=cfg.viz_samples, snapshots=cfg.viz_frames, generator=g,
                               progress=progress)  # the config's sampler, as the FID samples below
    save_figure(process_grid(frames, labels), figure_path(out, "process_grid"))

    t1 = time.perf_counter()
    folder = draw_samples(make_sampler(model, cfg, progress=False), cfg, samples_folder(out), device=device,
                          progress=progress)
    t_sample = time.perf_counter() - t1
    grid = show_images(fidlib.load_pngs(folder, 64), nrow=8, title="Generated digits (EMA weights)")
    save_figure(grid, figure_path(out, "samples_grid"))

    t2 = time.perf_counter()
    table = fid_table(out, cfg, device, data_root)
    t_fid = time.perf_counter() - t2
    # to 0.01 s, so that a smoke run's short sampling still reads as a time. fid: Inception over the samples
    # (and any reference not cached yet)
    timings = dict(train_seconds=round(t_train, 2), sample_seconds=round(t_sample, 2), fid_seconds=round(t_fid, 2))
    final_loss = result.history[-1] if result.history else None
    path = write_fid_json(out, cfg, table, device, **timings, final_loss=final_loss)
    return read_fid_json(path)
