"""Notebook plumbing: the one-call setup of every notebook, a live loss curve and live samples, the checkpoint
gate.

Kept out of the notebooks so they hold no library code (tests/test_notebooks_clean.py checks it):
    from hw3_utils.notebook import setup
    cfg, device = setup()          # profile from $HW3_PROFILE, else full on CUDA / cpu without
"""

from __future__ import annotations

import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .config import Config, config_diff, get_config, run_dir
from .data import data_root
from .runfolder import checkpoint_dir
from .train import CheckpointError, newest_checkpoint_info, pick_device


def in_colab() -> bool:
    """True inside Google Colab (its runtime has imported `google.colab` before any user code)."""
    return "google.colab" in sys.modules


def describe_device(device: torch.device) -> str:
    """'cuda:0 (NVIDIA H100 ...)' or 'cpu (N threads)'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def setup(profile: str | None = None, seed: int = 0, **overrides) -> tuple[Config, torch.device]:
    """The first cell of every notebook: config, device, seeds, widgets. Returns (cfg, device).

    profile: "full" (the report's recipe), "cpu" (digits on a laptop CPU in minutes), or the test-size
    twin of either, "full-smoke" or "cpu-smoke" (the same code, tiny sizes); None reads $HW3_PROFILE,
    else picks full on CUDA and cpu without. `overrides` change config fields,
    e.g. setup("full", epochs=10). Seeds Python's, NumPy's and torch's global RNGs with `seed`
    (the library's own draws use cfg.seed through explicit generators). On Colab it enables
    the custom widget manager, without which ipywidgets 8 sliders do not render there.
    """
    cfg = get_config(profile, **overrides)  # prints the profile and why it was chosen
    diff = config_diff(get_config("full", verbose=False), cfg)
    diff.pop("profile", None)
    if diff:
        print("hw3_utils: differs from the report's recipe in "
              + ", ".join(f"{k}={b!r} (full: {a!r})" for k, (a, b) in diff.items()))
    device = pick_device()
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed)
    print(f"hw3_utils: device {describe_device(device)}, torch {torch.__version__}, seed {seed}")
    print(f"hw3_utils: MNIST in {data_root().resolve()}, runs in {run_dir(cfg=cfg)}")
    if in_colab():
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()
    return cfg, device


class LiveLossPlot:
    """A loss curve that redraws in place while `train_model` runs, within an epoch too.

        live = LiveLossPlot()
        train_model(cfg, run, callback=live, on_log=live.on_log)

    `on_log(loss_log, history)` (every cfg.log_every steps) redraws at most every `min_seconds`,
    so drawing never slows training much; `live(epoch, history)` (after each epoch) always
    redraws. In a notebook the figure is updated in one output area (IPython display handle);
    outside IPython, `display` just prints. Each figure is closed after display, so none pile up.
    """

    def __init__(self, min_seconds: float = 2.0):
        self.handle = None
        self.calls = 0
        self.min_seconds = min_seconds
        self.loss_log: list = []
        self.steps_per_epoch: float | None = None
        self._last = float("-inf")

    def on_log(self, loss_log, history) -> None:
        self.loss_log = loss_log
        if time.monotonic() - self._last >= self.min_seconds:
            self._draw(history, f"Training loss, step {loss_log[-1][0]}")

    def __call__(self, epoch: int, history) -> None:
        if self.loss_log:
            self.steps_per_epoch = self.loss_log[-1][0] / epoch
        self._draw(history, f"Training loss after epoch {epoch}")

    def _draw(self, history, title: str) -> None:
        from .viz import plot_loss

        self.handle = _show_in_place(plot_loss(history, list(self.loss_log), self.steps_per_epoch, title=title),
                                     self.handle)
        self.calls += 1
        self._last = time.monotonic()


def _show_in_place(fig, handle):
    """Display a figure in one output area (an IPython display handle: the first call makes it, later ones
    update it), then close the figure so none pile up; returns the handle."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    if handle is None:
        handle = display(fig, display_id=True)
    else:
        handle.update(fig)
    plt.close(fig)
    return handle


class LiveSamples:
    """Digits while it trains: after each epoch, 16 samples of the EMA model (`pipeline.preview_samples`: 30
    respaced steps, the same noise every time) redrawn in place, so noise turning into digits can be watched.
    A conditional model (cfg.num_classes > 0) is asked for the digits 0 .. 9, twice, with guidance
    (`conditional.preview_digits`).

        samples = LiveSamples(cfg)
        train_model(cfg, run, ..., on_epoch=samples)
    """

    def __init__(self, cfg: Config):
        self.cfg, self.handle, self.calls = cfg, None, 0

    def __call__(self, epoch: int, model) -> None:
        from .viz import show_images

        when = f"after epoch {epoch} of {self.cfg.epochs}"
        if self.cfg.num_classes:
            from .conditional import PREVIEW_WEIGHT, preview_digits

            fig = show_images(preview_digits(model, self.cfg), nrow=self.cfg.num_classes,
                              title=f"The EMA model asked for 0-9 (w = {PREVIEW_WEIGHT:g}) {when}")
        else:
            from .pipeline import preview_samples

            fig = show_images(preview_samples(model, self.cfg), nrow=8, title=f"What the EMA model draws {when}")
        self.handle = _show_in_place(fig, self.handle)
        self.calls += 1


def require_checkpoint(cfg: Config, run=None) -> Path:
    """The newest checkpoint of a run (default run_dir(cfg=cfg)), or a CheckpointError saying how to get one.

    Prints which checkpoint it found and warns when training has not reached cfg.epochs yet.
    """
    run = Path(run) if run is not None else run_dir(cfg=cfg)
    found = newest_checkpoint_info(run) if checkpoint_dir(run).is_dir() else None
    training = _training_cell(cfg)
    if found is None:
        raise CheckpointError(
            f"No trained model for profile '{cfg.profile}': {checkpoint_dir(run)} holds no checkpoint.\n"
            f"Run {training} first with the same profile (HW3_PROFILE={cfg.profile}, "
            f"or setup('{cfg.profile}')), or `python -m hw3_utils train --profile {cfg.profile}`. "
            "It saves a checkpoint after every epoch, so even an interrupted run leaves one."
        )
    path, ckpt = found
    print(f"hw3_utils: checkpoint {path} (epoch {ckpt['epoch']}/{cfg.epochs}, step {ckpt['step']})")
    if ckpt["epoch"] < cfg.epochs:
        warnings.warn(
            f"training stopped at epoch {ckpt['epoch']} of {cfg.epochs}: samples and FID come from an "
            f"unfinished model. Re-run {training} to continue from this checkpoint.", stacklevel=2)
    return path


def _training_cell(cfg: Config) -> str:
    """Where a notebook user trains the config's model: notebook 04, or notebook 06's training cell (conditional)."""
    if cfg.num_classes:
        return "the training cell of notebooks/06_guidance.ipynb (section 3, `train_conditional(cfg)`)"
    return "notebooks/04_training.ipynb"
