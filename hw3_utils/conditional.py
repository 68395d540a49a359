"""Notebook 06's pipeline: a class-conditional model, its guided samples, and what the guidance weight trades.

    cfg, device = setup(conditional_profile())               # cpu -> cpu-cond, full -> full-cond (config.py)
    result = train_conditional(cfg)                          # in runs/<cfg.profile>/, resumed as train_model is
    model = load_model(run_dir(cfg=cfg), cfg=cfg)            # a checkpoint of the other kind is refused
    guidance_explorer(model, cfg)                            # ten digit buttons and a slider over w (a widget)
    images = guided_samples(model, cfg, digit=7, w=2.0)      # (8, C, 28, 28): the digit asked for, at weight w
    grid = digit_grid(model, cfg, w=2.0)                     # (10 * 8, C, 28, 28): row d holds digit d
    rows = guidance_sweep(model, cfg)                        # per w: requested-digit accuracy, classifier FID, FID
    fig = plot_sweep(rows)

The sweep in two parts, so that its images can be looked at too (notebook 06):
    samples = sweep_samples(model, cfg)                      # {w: (cfg.num_samples, C, 28, 28)}, image k digit k % 10
    rows = score_sweep(samples, cfg)                         # what guidance_sweep returns
    grid = by_digit(samples[2.0], per_digit=8)               # those images as a 10 x 8 grid, row d digit d

The same seed draws the same start noise at every w, so what changes between two weights is the guidance alone.
Guidance itself lives in the samplers (`sampling.sample(..., labels=, guidance=)`), the label pathway in the UNet
and the student's `guidance.py` (tasks 6a, 6b).
"""

from __future__ import annotations

import torch

from .config import Config, ConfigError, conditional_profile, run_dir, stream_seed
from .cuda_graphs import GraphedModel
from .diffusion import DDPM
from .pipeline import PREVIEW_STEPS
from .sampling import sample
from .train import TrainResult, train_model

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)  # the guidance weights the notebook compares (MIT 6.8300's sweep)
PER_DIGIT = 8  # images per digit in a grid
PREVIEW_WEIGHT = 2.0  # the weight of the previews while training, and where the widget's slider starts
EXPLORER_IMAGES = 16  # images of one digit in the widget (two rows of 8)


def _require_conditional(cfg: Config) -> None:
    if not cfg.num_classes:
        raise ConfigError(f"the '{cfg.profile}' profile is unconditional (num_classes=0): use its conditional twin, "
                          f"'{conditional_profile(cfg.profile, verbose=False)}' (config.conditional_profile)")


def train_conditional(cfg: Config, device=None, progress: bool = True, **hooks) -> TrainResult:
    """Train (or resume) the conditional profile `cfg` in its own run folder, runs/<cfg.profile>/.

    `train_model` with that folder: hooks are its callback, on_log and on_epoch (notebook.LiveLossPlot, ...).
    ConfigError for an unconditional config, naming its conditional twin.
    """
    _require_conditional(cfg)
    return train_model(cfg, run_dir(cfg=cfg), device=device, progress=progress, **hooks)


@torch.no_grad()
def draw_guided(model, cfg: Config, labels, w: float, seed: int | None = None, progress: bool = False) -> torch.Tensor:
    """Images of the digits `labels` ((N,) ints in 0..9) at guidance weight w, with the config's sampler.

    Batches of cfg.sample_batch_size, batch b's noise from a generator seeded by (seed, b) on the model's device,
    as `fid.generate_samples` seeds them (seed None: cfg.seed). On CUDA the model call is a CUDA graph.
    Returns (N, C, 28, 28) float in [-1, 1] on the model's device.
    """
    _require_conditional(cfg)
    device = next(model.parameters()).device
    ddpm = DDPM.from_config(cfg).to(device)
    net = GraphedModel(model, amp_bf16=cfg.amp_bf16, graphs=device.type == "cuda" and cfg.cuda_graphs is not False)
    labels = torch.as_tensor(labels, dtype=torch.long)
    seed, size, out = cfg.seed if seed is None else seed, cfg.sample_batch_size, []
    for b, start in enumerate(range(0, len(labels), size)):
        gen = torch.Generator(device).manual_seed(stream_seed(seed, b))
        out.append(sample(net, ddpm, cfg, n=len(labels[start:start + size]), labels=labels[start:start + size],
                          guidance=w, generator=gen, progress=progress, device=device))
    return torch.cat(out)


def guided_samples(model, cfg: Config, digit: int, w: float, n: int = PER_DIGIT, seed: int | None = None):
    """n images of one digit (0..9) at guidance weight w: (n, C, 28, 28) in [-1, 1] (the widget's grid)."""
    return draw_guided(model, cfg, torch.full((n,), int(digit)), w, seed)


def digit_grid(model, cfg: Config, w: float, per_digit: int = PER_DIGIT, seed: int | None = None):
    """per_digit images of each digit 0..9 at guidance weight w, digit after digit: (10 * per_digit, C, 28, 28),
    a 10 x per_digit grid with `viz.show_images(grid, nrow=per_digit)`."""
    return draw_guided(model, cfg, torch.arange(cfg.num_classes).repeat_interleave(per_digit), w, seed)


def sweep_labels(n: int, classes: int = 10) -> torch.Tensor:
    """The digits a sweep asks for: image k asks for digit k % classes, (n,) int64 (every digit equally often)."""
    return torch.arange(n) % classes


@torch.no_grad()
def sweep_samples(model, cfg: Config, weights=WEIGHTS, n: int | None = None, seed: int | None = None,
                  progress: bool = True) -> dict[float, torch.Tensor]:
    """n images (default cfg.num_samples) at each guidance weight, image k asking for digit k % 10 (`sweep_labels`).

    The config's sampler, the same start noise at every w (`draw_guided`). Returns {w: (n, C, 28, 28) float in
    [-1, 1] on the CPU}, in the order of `weights`.
    """
    n = cfg.num_samples if n is None else n
    labels = sweep_labels(n, cfg.num_classes or 10)
    return {float(w): draw_guided(model, cfg, labels, w, seed, progress).cpu() for w in weights}


def score_sweep(samples: dict, cfg: Config, classifier=None, inception: bool = True, device=None,
                progress: bool = True) -> list[dict]:
    """The guidance trade-off of `sweep_samples`' images: one dict per w, in its order.

    Each holds w; digit_accuracy (the share read as the digit asked for, `digits.digit_accuracy`); classifier_fid
    (FID in the digit classifier's features against MNIST's test set); fid (Inception FID against cfg.fid_ref_count
    MNIST training images, the reference of notebook 05's "vs MNIST train"; left out when inception=False). FIDs
    compare only at equal n. classifier: the digit classifier (default: the kit's, cfg.classifier_images images).
    """
    from . import fid as fidlib
    from .digits import classifier_fid, digit_accuracy, load_classifier

    classifier = load_classifier(cfg.classifier_images) if classifier is None else classifier
    ref = fidlib.reference_npz(cfg, "train", device=device, progress=progress) if inception else None
    rows = []
    for w, images in samples.items():
        labels = sweep_labels(len(images), cfg.num_classes or 10)
        row = {"w": float(w), "digit_accuracy": digit_accuracy(images, labels, classifier),
               "classifier_fid": classifier_fid(images, None, classifier)}
        if inception:
            row["fid"] = fidlib.compute_fid(images, ref, device=device, batch_size=cfg.fid_batch_size,
                                            progress=progress)
        rows.append(row)
    return rows


def guidance_sweep(model, cfg: Config, weights=WEIGHTS, n: int | None = None, seed: int | None = None,
                   classifier=None, inception: bool = True, progress: bool = True) -> list[dict]:
    """The guidance trade-off in one call: `score_sweep` of `sweep_samples` (n per w, digit k % 10 for image k).

    Returns one dict per w: w, digit_accuracy, classifier_fid and (inception=True) fid, as `score_sweep` says.
    """
    device = next(model.parameters()).device
    samples = sweep_samples(model, cfg, weights, n, seed, progress)
    return score_sweep(samples, cfg, classifier, inception, device, progress)


def by_digit(images: torch.Tensor, per_digit: int = PER_DIGIT, classes: int = 10) -> torch.Tensor:
    """A sweep's images (image k asked for digit k % classes) as a grid, digit after digit: (classes * per_digit,
    C, H, W), row d of `viz.show_images(grid, nrow=per_digit)` holding digit d. ValueError when a digit has fewer."""
    have = len(images) // classes
    if per_digit > have:
        raise ValueError(f"{len(images)} images hold {have} of each digit, fewer than per_digit={per_digit}: "
                         f"ask for at most {have}")
    return torch.cat([images[d::classes][:per_digit] for d in range(classes)])


def print_sweep(rows: list[dict]) -> None:
    """The sweep as a table: w, requested-digit accuracy, classifier FID and (where scored) Inception FID."""
    inception = all("fid" in r for r in rows)
    print(f"{'w':>5}  {'requested-digit accuracy':>24}  {'classifier FID':>14}" + (f"  {'Inception FID':>13}"
                                                                                    if inception else ""))
    for r in rows:
        print(f"{r['w']:>5g}  {r['digit_accuracy']:>24.1%}  {r['classifier_fid']:>14.2f}"
              + (f"  {r['fid']:>13.2f}" if inception else ""))


# previews and the widget: notebook 04's preview sampler, fast enough to redraw while one waits ------------------
@torch.no_grad()
def preview_guided(model, cfg: Config, labels, w: float, seed: int | None = None) -> torch.Tensor:
    """Images of the digits `labels` ((N,) ints) at weight w with the preview sampler of `pipeline.preview_samples`
    (Algorithm 2 on PREVIEW_STEPS respaced steps, x0-hat clipped), from one generator seeded by `seed` (None:
    cfg.seed + 1, the previews' seed): the same noise whatever the digits and w. (N, C, 28, 28) in [-1, 1]."""
    _require_conditional(cfg)
    device = next(model.parameters()).device
    labels = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator(device).manual_seed(cfg.seed + 1 if seed is None else seed)
    return sample(model, DDPM.from_config(cfg).to(device), cfg, n=len(labels), method="ddpm",
                  steps=min(PREVIEW_STEPS, cfg.timesteps), clip=True, generator=gen, progress=False,
                  labels=labels, guidance=w)


def preview_digits(model, cfg: Config) -> torch.Tensor:
    """What a conditional model draws when asked for 0 .. 9, twice, at PREVIEW_WEIGHT: (20, C, 28, 28), rows of 10
    (`notebook.LiveSamples` after each epoch of a conditional run)."""
    return preview_guided(model, cfg, torch.arange(cfg.num_classes).repeat(2), PREVIEW_WEIGHT)


def guidance_explorer(model, cfg: Config, weights=WEIGHTS, digit: int = 0, w: float = PREVIEW_WEIGHT,
                      n: int = EXPLORER_IMAGES, nrow: int = PER_DIGIT):
    """The widget of notebook 06: ten digit buttons and a slider over the guidance weights; each choice redraws
    n images of that digit at that weight (`preview_guided`: the same noise for every digit and w, so the picture
    changes with the choice alone). An ipywidgets VBox (`viz.guidance_widget`)."""
    from .viz import guidance_widget

    _require_conditional(cfg)
    return guidance_widget(lambda d, weight: preview_guided(model, cfg, torch.full((n,), d), weight),
                           weights=weights, digits=cfg.num_classes, digit=digit, w=w, nrow=nrow)


def plot_sweep(rows: list[dict]):
    """Requested-digit accuracy against FID, one point per guidance weight (labelled w = ...): a matplotlib figure.

    FID is Inception's where the rows have it, else the classifier's."""
    import matplotlib.pyplot as plt

    key = "fid" if all("fid" in r for r in rows) else "classifier_fid"
    fig, ax = plt.subplots(figsize=(5, 4))
    xs, ys = [r[key] for r in rows], [100 * r["digit_accuracy"] for r in rows]
    ax.plot(xs, ys, "o-")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(f"w = {r['w']:g}", (x, y), textcoords="offset points", xytext=(6, -10))
    ax.set(xlabel="Inception FID" if key == "fid" else "FID in the digit classifier's features",
           ylabel="requested-digit accuracy (%)", title="Classifier-free guidance: accuracy against FID")
    fig.tight_layout()
    return fig
