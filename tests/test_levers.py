"""The bench's own levers (bench/levers.py) against their papers' closed forms."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

from hw3_utils import DDPM

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def levers():
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("levers")
    finally:
        sys.path.remove(str(BENCH))


def test_cosine_betas_give_nichol_dhariwal_alpha_bars(levers):
    # eq. 17 of Nichol & Dhariwal: alpha-bar_t = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2)
    T, s = 1000, 0.008
    d = DDPM(betas=levers.cosine_betas(T, s), dtype=torch.float64)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    unclipped = d.betas < 0.999  # only the very last steps hit the clip
    assert unclipped[: T - 5].all() and not unclipped.all()
    torch.testing.assert_close(d.alpha_bars[unclipped], f[unclipped], rtol=1e-9, atol=1e-12)
    assert d.timesteps == T and float(d.betas.max()) == pytest.approx(0.999)


def test_min_snr_weights_turn_eps_loss_into_clamped_x0_loss(levers):
    # Hang et al.: weight min(SNR, gamma) on the x0 error == weight min(SNR, gamma)/SNR on the eps error,
    # because x0-hat - x0 = -(eps-hat - eps) / sqrt(SNR_t) (eq. 4 solved for x0)
    d = DDPM(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 50, 200, 500, 999])
    x0 = torch.rand((5, 1, 4, 4), generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn((5, 1, 4, 4), generator=g, dtype=torch.float64)
    eps_hat = eps + 0.1 * torch.randn((5, 1, 4, 4), generator=g, dtype=torch.float64)
    x_t = d.q_sample(x0, t, eps)
    x0_err = (d.predict_x0(x_t, t, eps_hat) - x0).pow(2).flatten(1).mean(1)
    eps_err = (eps_hat - eps).pow(2).flatten(1).mean(1)
    snr = d.alpha_bars[t] / (1 - d.alpha_bars[t])
    torch.testing.assert_close(levers.snr(d, t), snr)
    w = levers.min_snr_weights(d, t, 5.0)
    torch.testing.assert_close(x0_err * snr.clamp(max=5), eps_err * w)
    assert w[0] < 1e-3 and (w[3:] == 1).all()  # nearly clean steps down-weighted, noisy ones untouched
