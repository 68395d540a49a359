"""Figures and widgets: image grids, the 8x8 diffusion-process grid, loss curve, schedule plots, the
digit classifier's histogram, sliders over timesteps (precomputed PNG frames shown in an ipywidgets
Image), and notebook 06's digit buttons with a guidance-weight slider.

The sliders swap the bytes of an `Image` widget on change: no kernel-side redraw, so they stay
responsive and render the same way in JupyterLab 4 (ipywidgets 8) and in Colab. The guidance widget
draws each (digit, w) once, on first choice, and keeps its picture.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid


def to_display(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, C, H, W) in [0, 1] for plotting."""
    return images.detach().float().cpu().clamp(-1, 1).add(1).div(2)


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """Tile (B, C, H, W) images in [-1, 1] into one (H', W', 3) float array in [0, 1]."""
    grid = make_grid(to_display(images), nrow=nrow, padding=padding, pad_value=1.0)
    return grid.permute(1, 2, 0)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, scale: float = 0.6):
    """A figure of images (B, C, H, W) in [-1, 1] in a grid with nrow per row; returns the Figure."""
    grid = image_grid(images, nrow)
    rows = (images.shape[0] + nrow - 1) // nrow
    fig, ax = plt.subplots(figsize=(max(2.0, nrow * scale), max(2.0, rows * scale)))
    ax.imshow(grid.numpy())
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def process_grid(frames: torch.Tensor, labels, scale: float = 0.7):
    """The report's diffusion-process figure: rows = timesteps (noise at top), columns = samples.

    frames: (S, B, C, H, W) in [-1, 1] from `sampling.sample(..., snapshots=S)`; labels: S timesteps.
    """
    s, b = frames.shape[:2]
    fig, axes = plt.subplots(s, 1, figsize=(b * scale, s * scale + 0.4), squeeze=False)
    for row, (ax, label) in enumerate(zip(axes[:, 0], labels)):
        ax.imshow(image_grid(frames[row], nrow=b, padding=1).numpy())
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"t={label}", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Reverse diffusion: rows are timesteps, columns are samples", fontsize=9)
    fig.tight_layout()
    return fig


def smooth(values, weight: float = 0.8) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing), same length as values."""
    out, avg = [], 0.0
    for k, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**k))
    return out


def plot_loss(history, loss_log=None, steps_per_epoch: int | None = None, title: str | None = None):
    """The training loss on a log scale: per-step points, their smoothed curve, and per-epoch means.

    history: per-epoch mean losses; loss_log: [(step, loss)] every cfg.log_every steps (from
    `TrainResult.loss_log`); without it, only the per-epoch means are drawn against the epoch.
    steps_per_epoch places the epoch means on the step axis (default: last logged step / epochs).
    """
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if loss_log:
        steps, losses = zip(*loss_log)
        ax.plot(steps, losses, lw=0.8, alpha=0.35, color="C0", marker="." if len(steps) < 200 else None,
                label="logged loss (mean since the previous point)")
        ax.plot(steps, smooth(losses), lw=2, color="C0", label="smoothed")
        if history:
            spe = steps_per_epoch or steps[-1] / len(history)
            ax.plot([spe * (k + 1) for k in range(len(history))], history, "o", color="C1", ms=5,
                    label="epoch mean")
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    else:
        ax.plot(range(1, len(history) + 1), history, marker="o", ms=3)
        ax.set_xlabel("epoch")
    ax.set_ylabel("MSE(noise, predicted noise)")
    ax.set_yscale("log")
    ax.set_title(title or "Training loss (L_simple)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def plot_schedule(ddpm):
    """beta_t, alpha-bar_t and the signal-to-noise ratio alpha-bar_t / (1 - alpha-bar_t) against t."""
    t = torch.arange(1, ddpm.timesteps + 1)
    ab = ddpm.alpha_bars.cpu()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    axes[0].plot(t, ddpm.betas.cpu())
    axes[0].set_title(r"$\beta_t$ (linear)")
    axes[1].plot(t, ab)
    axes[1].set_title(r"$\bar\alpha_t = \prod_{s\leq t}(1-\beta_s)$")
    axes[2].semilogy(t, ab / (1 - ab))
    axes[2].set_title(r"SNR $= \bar\alpha_t / (1-\bar\alpha_t)$")
    for ax in axes:
        ax.set_xlabel("t")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def plot_time_embedding(emb: torch.Tensor):
    """Heat map of sinusoidal embeddings: emb (T, D), one row per timestep."""
    fig, ax = plt.subplots(figsize=(7, 3))
    im = ax.imshow(emb.cpu().numpy(), aspect="auto", cmap="RdBu", interpolation="nearest")
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("timestep t")
    ax.set_title("Sinusoidal time embedding")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def png_bytes(images: torch.Tensor, nrow: int = 8, upscale: int = 3) -> bytes:
    """Encode a grid of images (B, C, H, W) in [-1, 1] as PNG bytes, enlarged for the screen."""
    from PIL import Image

    grid = (image_grid(images, nrow).numpy() * 255).round().astype("uint8")
    im = Image.fromarray(grid)
    im = im.resize((im.width * upscale, im.height * upscale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def frame_slider(frames: torch.Tensor, labels, description: str = "t", nrow: int = 8,
                 caption: str = "{description} = {label}"):
    """A slider over precomputed frames that shows the images of the chosen frame.

    frames: (S, B, C, H, W) in [-1, 1]; labels: S values (the timestep of each frame).
    Returns an ipywidgets VBox [slider, readout, image]; `.slider`, `.image`, `.readout`
    are attached for tests and for students who want to drive it from code.
    """
    import ipywidgets as widgets

    pngs = [png_bytes(f, nrow) for f in frames]  # precomputed: moving the slider only swaps bytes
    labels = [int(v) for v in labels]
    slider = widgets.IntSlider(value=0, min=0, max=len(pngs) - 1, step=1, description="frame",
                               continuous_update=True, readout=False)
    readout = widgets.Label()
    image = widgets.Image(value=pngs[0], format="png")

    def show(change=None):
        k = slider.value
        image.value = pngs[k]
        readout.value = caption.format(description=description, label=labels[k])

    slider.observe(show, names="value")
    show()
    box = widgets.VBox([widgets.HBox([slider, readout]), image])
    box.slider, box.image, box.readout, box.labels = slider, image, readout, labels
    return box


def noising_frames(ddpm, x0: torch.Tensor, ts, seed: int = 0) -> torch.Tensor:
    """x_t = q_sample(x0, t, eps) for each t in ts with one fixed eps: (len(ts), B, C, H, W).

    ts are code indices in [0, T-1]; the same noise at every t shows the digit fading smoothly.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=g).to(x0.device)
    return torch.stack([ddpm.q_sample(x0, int(t), noise).cpu() for t in ts])


def noising_slider(ddpm, x0: torch.Tensor, ts, seed: int = 0, nrow: int = 8):
    """Slider over forward-diffusion steps: the same digits noised to each t in ts (code indices)."""
    return frame_slider(noising_frames(ddpm, x0, ts, seed), [int(t) + 1 for t in ts],
                        description="t", nrow=nrow)


def denoising_slider(frames: torch.Tensor, labels, nrow: int = 8):
    """Slider over reverse-diffusion snapshots from `sampling.sample(..., snapshots=k)`."""
    return frame_slider(frames, labels, description="t", nrow=nrow,
                        caption="{description} = {label} (x_t; noise at T, digits at 0)")


def guidance_widget(draw, weights, digits: int = 10, digit: int = 0, w: float | None = None, nrow: int = 8):
    """Ten digit buttons and a slider over guidance weights, over the picture of the chosen pair.

    draw(digit, w) -> images (B, C, H, W) in [-1, 1]: called once per pair, on its first choice (the
    PNG is kept, so going back is instant); weights: the slider's values (w: where it starts, default
    the first). Returns an ipywidgets VBox [buttons, HBox[slider, readout], image]; `.buttons`,
    `.slider`, `.readout`, `.image` and `.pictures` ({(digit, w): PNG bytes}) are attached for tests
    and for students who want to drive it from code.
    """
    import ipywidgets as widgets

    weights = [float(v) for v in weights]
    buttons = widgets.ToggleButtons(options=[str(d) for d in range(digits)], value=str(digit),
                                    description="digit", style={"button_width": "2.6em"})
    slider = widgets.SelectionSlider(options=[(f"{v:g}", v) for v in weights],
                                     value=weights[0] if w is None else float(w), description="w",
                                     continuous_update=False)
    readout, image, pictures = widgets.Label(), widgets.Image(format="png"), {}

    def show(change=None):
        key = (int(buttons.value), slider.value)
        if key not in pictures:
            readout.value = f"drawing digit {key[0]} at w = {key[1]:g} ..."
            pictures[key] = png_bytes(draw(*key), nrow)
        image.value = pictures[key]
        readout.value = f"digit {key[0]}, w = {key[1]:g}"

    buttons.observe(show, names="value")
    slider.observe(show, names="value")
    show()
    box = widgets.VBox([buttons, widgets.HBox([slider, readout]), image])
    box.buttons, box.slider, box.readout, box.image, box.pictures = buttons, slider, readout, image, pictures
    return box


def show_grids(grids: dict, nrow: int = 8, scale: float = 0.45, title: str | None = None):
    """Image grids side by side, one panel each: grids {panel title: images (B, C, H, W) in [-1, 1]}."""
    rows = max((g.shape[0] + nrow - 1) // nrow for g in grids.values())
    fig, axes = plt.subplots(1, len(grids), figsize=(len(grids) * max(2.0, nrow * scale), max(2.0, rows * scale) + 0.5),
                             squeeze=False)
    for ax, (name, images) in zip(axes[0], grids.items()):
        ax.imshow(image_grid(images, nrow).numpy())
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_class_histogram(hist, title: str | None = None):
    """The digits a classifier read in a set of images (`digits.ClassHistogram`): the share of each, in %, beside
    the 10% line of a set that draws every digit equally often."""
    fig, ax = plt.subplots(figsize=(6, 2.8))
    shares = 100 * hist.shares
    ax.bar(range(len(shares)), shares, color="C0")
    ax.axhline(100 / len(shares), color="C1", ls="--", lw=1, label="every digit equally often")
    ax.set_xticks(range(len(shares)))
    ax.set(xlabel="digit the classifier reads", ylabel="share of the images (%)",
           title=title or f"What the digit classifier reads in {hist.total:,} images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 100) -> None:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
