"""DDPM (Ho et al. 2020): the schedule, the forward process, the loss and one reverse step, in one
model-agnostic object. The samplers that run the reverse step to the end live in `sampling.py`.

The only contract with the network is `model(x_t, t) -> predicted noise`.
Indexing: code index t = 0 .. T-1 is the paper's timestep t+1, so `betas[0]` is beta_1
and `alpha_bars[t]` is alpha-bar_{t+1}. Equation numbers refer to the DDPM paper
(arXiv:2006.11239) unless they say DDIM (Song et al. 2021, arXiv:2010.02502).
"""

from __future__ import annotations

import torch
from torch import nn


class DDPM(nn.Module):
    """Linear-beta DDPM. Buffers (all (T,), float32 unless `dtype` says otherwise) move with `.to(device)`.

    betas: beta_t; alphas: 1 - beta_t; alpha_bars: prod_{s<=t} alpha_s;
    alpha_bars_prev: alpha-bar_{t-1} with alpha-bar_0 = 1;
    posterior_variance: beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) * beta_t (eq. 7).
    """

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2,
                 variance: str = "posterior", dtype: torch.dtype = torch.float32, betas: torch.Tensor | None = None):
        super().__init__()
        if variance not in ("posterior", "beta"):
            raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}")
        # float64 for the cumulative product, then `dtype`: keeps alpha-bar_T accurate. (The task
        # checks build float64 references with dtype=torch.float64.) `betas` replaces the linear
        # schedule (a respaced one, see `sampling.respaced`).
        if betas is None:
            betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        betas = betas.to(torch.float64)
        self.timesteps = len(betas)
        self.variance = variance
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        posterior_variance = (1.0 - alpha_bars_prev) / (1.0 - alpha_bars) * betas
        for name, value in dict(
            betas=betas, alphas=alphas, alpha_bars=alpha_bars, alpha_bars_prev=alpha_bars_prev,
            sqrt_alpha_bars=alpha_bars.sqrt(), sqrt_one_minus_alpha_bars=(1.0 - alpha_bars).sqrt(),
            posterior_variance=posterior_variance,
        ).items():
            self.register_buffer(name, value.to(dtype), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> DDPM:
        return cls(cfg.timesteps, cfg.beta_start, cfg.beta_end, cfg.variance)

    @staticmethod
    def _at(buf: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """buf[t] shaped (B, 1, 1, 1) to broadcast over images."""
        return buf[t].view(-1, 1, 1, 1)

    def _timesteps(self, t, n: int, device) -> torch.Tensor:
        if isinstance(t, int):
            t = torch.full((n,), t, dtype=torch.long, device=device)
        return t.to(device)

    # forward process ----------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) (eq. 4): sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) noise.

        x0: (B, C, H, W) float in [-1, 1]; t: (B,) int64 in [0, T-1] or an int; noise like x0
        (standard normal when None) -> x_t, same shape as x0.
        """
        t = self._timesteps(t, x0.shape[0], x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        ### BEGIN SOLUTION 3
        return self._at(self.sqrt_alpha_bars, t) * x0 + self._at(self.sqrt_one_minus_alpha_bars, t) * noise
        ### END SOLUTION

    def loss(self, model, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The simplified objective L_simple (eq. 14, Algorithm 1): MSE between noise and prediction.

        x0: (B, C, H, W) in [-1, 1]. t ~ Uniform{0..T-1} and noise ~ N(0, I) are drawn from
        `generator` unless given. `weights` (B,) replaces the plain mean by a weighted sum of
        per-image MSEs (the fast path pads a short last batch with zero-weight images).
        Returns a scalar float tensor.
        """
        b = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.timesteps, (b,), device=x0.device, generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        ### BEGIN SOLUTION 4
        pred = model(self.q_sample(x0, t, noise), t)
        per_image = (pred.float() - noise).pow(2).flatten(1).mean(dim=1)  # (B,) mean over each image
        ### END SOLUTION
        # (per_image is undefined in the student kit until task 4 is done: hence the noqa)
        return per_image.mean() if weights is None else (per_image * weights).sum()  # noqa: F821

    # reverse process ----------------------------------------------------------------------
    def p_sample(self, model, x_t: torch.Tensor, t, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        """One reverse step x_t -> x_{t-1} (Algorithm 2, lines 3-4).

        x_t: (B, C, H, W) float; t: int or (B,) int64 code index in [0, T-1]. At t = 0 no noise
        is added. sigma_t^2 is beta-tilde_t ("posterior") or beta_t ("beta"), section 3.2.
        `sampling.ancestral` repeats it from x_T down to x_0 (Algorithm 2's loop).
        """
        t = self._timesteps(t, x_t.shape[0], x_t.device)
        ### BEGIN SOLUTION 5a
        eps = model(x_t, t).float()
        beta, alpha = self._at(self.betas, t), self._at(self.alphas, t)
        # mu_theta(x_t, t) = 1/sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha-bar_t) * eps)   (eq. 11)
        mean = (x_t - beta / self._at(self.sqrt_one_minus_alpha_bars, t) * eps) / alpha.sqrt()
        var = self._at(self.posterior_variance if self.variance == "posterior" else self.betas, t)
        if noise is None:
            noise = torch.randn(x_t.shape, device=x_t.device, dtype=x_t.dtype, generator=generator)
        # z = 0 at the last step (t = 1 in the paper, index 0 here)
        nonzero = (t > 0).float().view(-1, 1, 1, 1)
        return mean + nonzero * var.sqrt() * noise
        ### END SOLUTION

    # x0-hat ---------------------------------------------------------------------------------------
    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0-hat = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t): eq. 4 solved for x0.

        x_t, eps: (B, C, H, W) float; t: (B,) int64 -> (B, C, H, W), unbounded.
        """
        return (x_t - self._at(self.sqrt_one_minus_alpha_bars, t) * eps) / self._at(self.sqrt_alpha_bars, t)

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The noise that takes x0 to x_t: (x_t - sqrt(alpha-bar_t) x0) / sqrt(1 - alpha-bar_t), eq. 4 solved for eps.

        x_t, x0: (B, C, H, W) float; t: (B,) int64 -> (B, C, H, W); the inverse of `predict_x0` in eps.
        """
        return (x_t - self._at(self.sqrt_alpha_bars, t) * x0) / self._at(self.sqrt_one_minus_alpha_bars, t)

    # diagnosis --------------------------------------------------------------------------------
    @torch.no_grad()
    def mean_error(self, model, x0: torch.Tensor, t: int | None = None,
                   generator: torch.Generator | None = None) -> float:
        """RMS over images of the image mean of eps_theta(x_t, t) - eps, at t = T-1 unless given.

        x0: (B, C, H, W) float in [-1, 1] on the model's device; the noise comes from `generator`.
        Near t = T, x_t is nearly pure noise, so eps-hat should nearly equal x_t, its mean over the
        image included. That mean is N(0, 1/(C H W)) per image (RMS 1/28 = 0.036 for one 28x28
        channel): a model that ignores it errs by about that much; a good one by a fraction of it.
        Notebook 05 prints it for the trained model. Returns a float >= 0.
        """
        t = self.timesteps - 1 if t is None else t
        tt = self._timesteps(t, x0.shape[0], x0.device)
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        err = model(self.q_sample(x0, tt, eps), tt).float() - eps
        return float(err.mean(dim=(1, 2, 3)).pow(2).mean().sqrt())
