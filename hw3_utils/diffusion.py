"""DDPM (Ho et al. 2020) schedule, forward process, loss and samplers, in one model-agnostic object.

The only contract with the network is `model(x_t, t) -> predicted noise`.
Indexing: code index t = 0 .. T-1 is the paper's timestep t+1, so `betas[0]` is beta_1
and `alpha_bars[t]` is alpha-bar_{t+1}. Equation numbers refer to the DDPM paper
(arXiv:2006.11239) unless they say DDIM (Song et al. 2021, arXiv:2010.02502).
"""

from __future__ import annotations

import torch
from torch import nn

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; keep sampling usable without it
    def tqdm(it, **_):
        return it


class DDPM(nn.Module):
    """Linear-beta DDPM. Buffers (all (T,) float32) move with `.to(device)`.

    betas: beta_t; alphas: 1 - beta_t; alpha_bars: prod_{s<=t} alpha_s;
    alpha_bars_prev: alpha-bar_{t-1} with alpha-bar_0 = 1;
    posterior_variance: beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) * beta_t (eq. 7).
    """

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2,
                 variance: str = "posterior"):
        super().__init__()
        if variance not in ("posterior", "beta"):
            raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}")
        self.timesteps = timesteps
        self.variance = variance
        # float64 for the cumulative product, then float32: keeps alpha-bar_T accurate.
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        posterior_variance = (1.0 - alpha_bars_prev) / (1.0 - alpha_bars) * betas
        for name, value in dict(
            betas=betas, alphas=alphas, alpha_bars=alpha_bars, alpha_bars_prev=alpha_bars_prev,
            sqrt_alpha_bars=alpha_bars.sqrt(), sqrt_one_minus_alpha_bars=(1.0 - alpha_bars).sqrt(),
            posterior_variance=posterior_variance,
        ).items():
            self.register_buffer(name, value.float(), persistent=False)

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

    def _frame_steps(self, steps: list[int], snapshots: int) -> set[int]:
        """Which loop positions to record so `snapshots` frames span noise to final image evenly."""
        if snapshots <= 0:
            return set()
        if snapshots == 1:
            return {len(steps)}
        n = len(steps)
        return {round(i * n / (snapshots - 1)) for i in range(snapshots)}

    @torch.no_grad()
    def sample(self, model, n: int, shape=(3, 28, 28), generator: torch.Generator | None = None,
               snapshots: int = 0, progress: bool = True, batch_size: int | None = None,
               device=None):
        """Ancestral sampling with all T steps (Algorithm 2), from x_T ~ N(0, I) down to x_0.

        Returns images (n, *shape) float in [-1, 1] on the model's device; with snapshots=k > 0,
        returns (images, frames, labels): frames (k, n, *shape) evenly spaced states from x_T to
        x_0, labels the paper timestep of each frame (T ... 0).
        Noise comes from `generator` (on the generator's device) or the global RNG.
        """
        steps = list(range(self.timesteps - 1, -1, -1))
        return self._run(model, n, shape, generator, snapshots, progress, batch_size, device,
                         steps, lambda x, i: self.p_sample(model, x, steps[i], generator), "DDPM")

    @torch.no_grad()
    def ddim_sample(self, model, n: int, steps: int = 50, eta: float = 0.0, shape=(3, 28, 28),
                    generator: torch.Generator | None = None, snapshots: int = 0, progress: bool = True,
                    batch_size: int | None = None, device=None):
        """DDIM sampling (DDIM eq. 12) over `steps` evenly spaced timesteps; eta=0 is deterministic.

        Same return convention as `sample`. eta=1 gives DDPM-like stochasticity on the sub-sequence.
        """
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be in [1, {self.timesteps}], got {steps}")
        stride = self.timesteps // steps
        seq = list(range(0, self.timesteps, stride))[:steps][::-1]  # e.g. 980, 960, ..., 0

        def step(x, i):
            t = seq[i]
            t_prev = seq[i + 1] if i + 1 < len(seq) else -1
            tt = self._timesteps(t, x.shape[0], x.device)
            eps = model(x, tt).float()
            ab = self.alpha_bars[t]
            ab_prev = self.alpha_bars[t_prev] if t_prev >= 0 else torch.ones_like(ab)
            x0_pred = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
            sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
            x_prev = ab_prev.sqrt() * x0_pred + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
            if eta > 0 and t_prev >= 0:
                x_prev = x_prev + sigma * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            return x_prev

        return self._run(model, n, shape, generator, snapshots, progress, batch_size, device,
                         seq, step, f"DDIM-{steps}")

    def _run(self, model, n, shape, generator, snapshots, progress, batch_size, device, steps, step_fn, name):
        """The shared loop: batches of x_T ~ N(0, I), `step_fn` applied len(steps) times, frames kept."""
        if device is None:
            device = next(iter(model.parameters())).device if isinstance(model, nn.Module) else self.betas.device
        gen_device = generator.device if generator is not None else device
        batch_size = batch_size or n
        record = self._frame_steps(steps, snapshots)
        outs, frames = [], []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            x = torch.randn((b, *shape), generator=generator, device=gen_device).to(device)
            kept = [x.clamp(-1, 1).cpu()] if 0 in record else []
            it = tqdm(range(len(steps)), desc=f"{name} sampling {start + b}/{n}", leave=False,
                      disable=not progress)
            for i in it:
                x = step_fn(x, i)
                if i + 1 in record:
                    kept.append(x.clamp(-1, 1).cpu())
            outs.append(x.clamp(-1, 1))
            frames.append(kept)
        images = torch.cat(outs)
        if snapshots <= 0:
            return images
        frames = torch.stack([torch.cat([f[k] for f in frames]) for k in range(len(frames[0]))])
        # Label each frame with the paper timestep of the state it holds: the state before the
        # step at code index c is x_{c+1}, so pure noise reads T and the final image reads 0.
        labels = [steps[i] + 1 if i < len(steps) else 0 for i in sorted(record)]
        return images, frames, labels
