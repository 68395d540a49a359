"""Training levers the bench measures and no profile uses (the cosine schedule, Min-SNR loss weights), and the
probes that read what a lever changes (how well a network follows the image mean of x_t near t = T).

They live here, not in hw3_utils, because students read hw3_utils/diffusion.py for their tasks; the levers
plug into the kit's own pieces (`DDPM(betas=...)`, the per-image `weights` of `DDPM.loss`).
"""

from __future__ import annotations

import torch

from hw3_utils.diffusion import DDPM


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal 2021 (arXiv:2102.09672, eq. 17), as betas for `DDPM(betas=...)`.

    alpha-bar_t = f(t) / f(0) with f(t) = cos^2((t/T + s) / (1 + s) * pi/2), and
    beta_t = 1 - alpha-bar_t / alpha-bar_{t-1}, clipped at `max_beta` so the last steps stay finite
    (their sec. 3.2). Returns (T,) float64 in (0, max_beta].
    """
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * torch.pi / 2) ** 2
    alpha_bars = f / f[0]
    return (1 - alpha_bars[1:] / alpha_bars[:-1]).clamp(max=max_beta)


def snr(ddpm, t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of x_t under `ddpm`'s schedule: alpha-bar_t / (1 - alpha-bar_t).

    t: (B,) int64 code indices -> (B,) float.
    """
    ab = ddpm.alpha_bars[t]
    return ab / (1.0 - ab)


def min_snr_weights(ddpm, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-gamma loss weights for eps-prediction (Hang et al. 2023, arXiv:2303.09556, sec. 3.4).

    The x0-space loss weighted by min(SNR_t, gamma) equals the eps-space MSE times
    min(SNR_t, gamma) / SNR_t: 1 where the image is mostly noise, smaller at the nearly clean
    steps that L_simple over-weights. t: (B,) int64 -> (B,) float in (0, 1].
    """
    s = snr(ddpm, t)
    return s.clamp(max=gamma) / s


def make_ddpm(cfg, extras: dict) -> DDPM:
    """The run's DDPM: the profile's schedule, or the cosine one when extras["schedule"] == "cosine"."""
    if extras.get("schedule") == "cosine":
        return DDPM(variance=cfg.variance, betas=cosine_betas(cfg.timesteps))
    return DDPM.from_config(cfg)


def mean_error(net, ddpm: DDPM, x0: torch.Tensor) -> float:
    """`DDPM.mean_error` at t = T-1 with the bench's fixed noise (seed 0), the same for every run."""
    return ddpm.mean_error(net, x0, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def mean_slope(net, ddpm: DDPM, x0: torch.Tensor) -> float:
    """Least-squares slope of the image mean of eps_theta(x_t, t) on the image mean of x_t, at t = T-1.

    1 for a model that follows x_t's mean (eps-hat = x_t there, up to sqrt(alpha-bar_T) x0), 0 for one
    blind to it; the bench's fixed noise (seed 0). x0: (B, C, H, W) in [-1, 1]."""
    t = torch.full((x0.shape[0],), ddpm.timesteps - 1)
    x_t = ddpm.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    mx, me = x_t.mean(dim=(1, 2, 3)), net(x_t, t).float().mean(dim=(1, 2, 3))
    mx, me = mx - mx.mean(), me - me.mean()
    return float((mx * me).sum() / (mx * mx).sum())
