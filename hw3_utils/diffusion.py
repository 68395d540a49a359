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
        # schedule (a respaced one, see `respaced`).
        if betas is None:
            betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        betas = betas.to(torch.float64)
        self.timesteps = len(betas)
        self.variance = variance
        self.paper_t = list(range(1, self.timesteps + 1))  # the paper's timestep of each code index
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

    # x0-hat clipping -------------------------------------------------------------------------
    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0-hat = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t): eq. 4 solved for x0.

        x_t, eps: (B, C, H, W) float; t: (B,) int64 -> (B, C, H, W), unbounded.
        """
        return (x_t - self._at(self.sqrt_one_minus_alpha_bars, t) * eps) / self._at(self.sqrt_alpha_bars, t)

    def clipped(self, model):
        """`model` with its noise prediction replaced by the one whose x0-hat is clipped to [-1, 1].

        eps' = (x_t - sqrt(alpha-bar_t) clip(x0-hat)) / sqrt(1 - alpha-bar_t). With eps', eq. 11's
        mean equals the posterior mean of eq. 7 at the clipped x0-hat, which is what Ho et al.'s
        code (clip_denoised=True) computes; DDIM's x0 prediction becomes the clipped one too.
        Clipping is a wrapper around the `model(x_t, t) -> eps` contract, so `p_sample` (Algorithm
        2, the student's task 5a) stays exactly the paper's.
        """
        def eps_of_clipped_x0(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            eps = model(x_t, t).float()
            x0 = self.predict_x0(x_t, t, eps).clamp(-1.0, 1.0)
            return (x_t - self._at(self.sqrt_alpha_bars, t) * x0) / self._at(self.sqrt_one_minus_alpha_bars, t)

        return eps_of_clipped_x0

    # loss weighting (a lever measured by bench/cpu_ablation.py; no profile uses it) --------------
    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio of x_t: alpha-bar_t / (1 - alpha-bar_t). t: (B,) int64 -> (B,) float."""
        ab = self.alpha_bars[t]
        return ab / (1.0 - ab)

    def min_snr_weights(self, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
        """Min-SNR-gamma loss weights for eps-prediction (Hang et al. 2023, arXiv:2303.09556, sec. 3.4).

        The x0-space loss weighted by min(SNR_t, gamma) equals the eps-space MSE times
        min(SNR_t, gamma) / SNR_t: 1 where the image is mostly noise, smaller at the nearly clean
        steps that L_simple over-weights. t: (B,) int64 -> (B,) float in (0, 1].
        """
        s = self.snr(t)
        return s.clamp(max=gamma) / s

    # diagnosis --------------------------------------------------------------------------------
    @torch.no_grad()
    def mean_error(self, model, x0: torch.Tensor, t: int | None = None,
                   generator: torch.Generator | None = None) -> float:
        """RMS over images of the image mean of eps_theta(x_t, t) - eps, at t = T-1 unless given.

        x0: (B, C, H, W) float in [-1, 1] on the model's device; the noise comes from `generator`.
        Near t = T, x_t is nearly pure noise, so eps-hat should nearly equal x_t, its mean over the
        image included. That mean is N(0, 1/(C H W)) per image (RMS 1/28 = 0.036 for one 28x28
        channel): a model that ignores it errs by about that much; a good one by a fraction of it.
        Sampling divides the error by sqrt(alpha-bar_t) when it forms x0-hat (eq. 15; 156x at t = T-1
        with the linear schedule), so the samples' brightness drifts: grey backgrounds, bright blobs.
        """
        t = self.timesteps - 1 if t is None else t
        tt = self._timesteps(t, x0.shape[0], x0.device)
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        err = model(self.q_sample(x0, tt, eps), tt).float() - eps
        return float(err.mean(dim=(1, 2, 3)).pow(2).mean().sqrt())

    # samplers ---------------------------------------------------------------------------------
    def respaced(self, model, steps: int):
        """(DDPM, model) of the same process on `steps` of the T timesteps, for Algorithm 2 in fewer steps.

        The subsequence tau (as DDIM's: 0, 10, ..., 990 for 100 steps) keeps alpha-bar at its
        timesteps, beta'_i = 1 - alpha-bar_{tau_i} / alpha-bar_{tau_(i-1)} (Nichol & Dhariwal 2021,
        sec. 4), and the returned model is called at the original timesteps tau_i. Ancestral
        sampling on it equals DDIM with eta = 1 on the same subsequence.
        """
        tau = self.ddim_timesteps(steps)[::-1]  # ascending
        # from the betas in float64, not the float32 alpha_bars: 1 - alpha-bar near t = 0 keeps its digits
        ab = torch.cumprod(1 - self.betas.double(), dim=0)[tau]
        betas = 1 - ab / torch.cat([torch.ones(1, dtype=ab.dtype, device=ab.device), ab[:-1]])
        ddpm = DDPM(variance=self.variance, dtype=self.betas.dtype, betas=betas.cpu()).to(self.betas.device)
        ddpm.paper_t = [t + 1 for t in tau]
        tau_t = torch.tensor(tau, device=self.betas.device)
        return ddpm, lambda x, i: model(x, tau_t.to(i.device)[i])

    @torch.no_grad()
    def sample(self, model, n: int, shape=(3, 28, 28), generator: torch.Generator | None = None,
               snapshots: int = 0, progress: bool = True, batch_size: int | None = None,
               device=None, clip_denoised: bool = False, steps: int | None = None):
        """Ancestral sampling (Algorithm 2), from x_T ~ N(0, I) down to x_0, with all T steps.

        Returns images (n, *shape) float in [-1, 1] on the model's device; with snapshots=k > 0,
        returns (images, frames, labels): frames (k, n, *shape) evenly spaced states from x_T to
        x_0, labels the paper timestep of each frame (T ... 0).
        Noise comes from `generator` (on the generator's device) or the global RNG.
        clip_denoised: clip x0-hat to [-1, 1] at every step (see `clipped`).
        steps < T: the same loop on a respaced schedule of `steps` timesteps (see `respaced`).
        """
        device = _device_of(model, device, self.betas.device)
        if steps is not None and steps != self.timesteps:
            ddpm, net = self.respaced(model, steps)
            return ddpm.sample(net, n, shape, generator, snapshots, progress, batch_size, device, clip_denoised)
        net = self.clipped(model) if clip_denoised else model
        steps = list(range(self.timesteps - 1, -1, -1))  # code index T-1 .. 0 = paper's t = T .. 1
        film = _Film([self.paper_t[t] for t in steps], snapshots)
        outs = []
        for start, b in _batches(n, batch_size):
            x = _noise((b, *shape), generator, device)  # line 1: x_T ~ N(0, I)
            film.begin(x)
            for i, t in enumerate(_bar(steps, f"DDPM sampling {start + b}/{n}", progress)):  # line 2
                x = self.p_sample(net, x, t, generator)  # lines 3-4: x_{t-1} from x_t
                film.after(i, x)
            outs.append(x.clamp(-1, 1))  # line 6: return x_0
        return film.result(torch.cat(outs))

    def ddim_timesteps(self, steps: int) -> list[int]:
        """The `steps` code indices DDIM visits, evenly strided and descending: e.g. 990, 980, ..., 0."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be in [1, {self.timesteps}], got {steps}")
        stride = self.timesteps // steps
        return list(range(0, self.timesteps, stride))[:steps][::-1]

    @torch.no_grad()
    def ddim_sample(self, model, n: int, steps: int = 50, eta: float = 0.0, shape=(3, 28, 28),
                    generator: torch.Generator | None = None, snapshots: int = 0, progress: bool = True,
                    batch_size: int | None = None, device=None, clip_denoised: bool = False):
        """DDIM sampling (DDIM eq. 12) over `steps` evenly spaced timesteps; eta=0 is deterministic.

        Same return convention as `sample`. eta=1 gives DDPM-like stochasticity on the sub-sequence.
        """
        seq = self.ddim_timesteps(steps)
        net = self.clipped(model) if clip_denoised else model
        device = _device_of(model, device, self.betas.device)
        film = _Film([t + 1 for t in seq], snapshots)
        outs = []
        for start, b in _batches(n, batch_size):
            x = _noise((b, *shape), generator, device)
            film.begin(x)
            for i, t in enumerate(_bar(seq, f"DDIM-{steps} sampling {start + b}/{n}", progress)):
                t_prev = seq[i + 1] if i + 1 < len(seq) else -1
                x = self.ddim_step(net, x, t, t_prev, eta, generator)
                film.after(i, x)
            outs.append(x.clamp(-1, 1))
        return film.result(torch.cat(outs))

    def ddim_step(self, model, x: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """One DDIM step from code index t to t_prev (-1: to x_0), DDIM eq. 12 with sigma from eq. 16."""
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


# sampling plumbing: batches, start noise, progress bar, recorded frames ------------------------
def _device_of(model, device, fallback):
    if device is not None:
        return torch.device(device)
    return next(iter(model.parameters())).device if isinstance(model, nn.Module) else fallback


def _batches(n: int, batch_size: int | None):
    """(start, size) of each batch of at most batch_size (all n at once when None)."""
    batch_size = batch_size or n
    return [(start, min(batch_size, n - start)) for start in range(0, n, batch_size)]


def _noise(shape, generator, device) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (so a seed gives the same images anywhere), moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


def _bar(steps, desc: str, progress: bool):
    return tqdm(steps, desc=desc, leave=False, disable=not progress)


class _Film:
    """Keeps `snapshots` evenly spaced states of a sampling loop (x_T first, x_0 last).

    paper_t: the paper timestep of the state each loop position starts from (T, ..., 1)."""

    def __init__(self, paper_t: list[int], snapshots: int):
        self.paper_t, self.snapshots = paper_t, snapshots
        n = len(paper_t)
        if snapshots <= 0:
            self.record = set()
        elif snapshots == 1:
            self.record = {n}
        else:
            self.record = {round(i * n / (snapshots - 1)) for i in range(snapshots)}
        self.batches: list[list[torch.Tensor]] = []

    def begin(self, x: torch.Tensor) -> None:
        self.batches.append([x.clamp(-1, 1).cpu()] if 0 in self.record else [])

    def after(self, i: int, x: torch.Tensor) -> None:
        """Called after loop position i (0-based), i.e. once i + 1 steps are done."""
        if i + 1 in self.record:
            self.batches[-1].append(x.clamp(-1, 1).cpu())

    def result(self, images: torch.Tensor):
        if self.snapshots <= 0:
            return images
        frames = torch.stack([torch.cat([b[k] for b in self.batches]) for k in range(len(self.batches[0]))])
        # Label each frame with the paper timestep of the state it holds: the state before the
        # step at code index c is x_{c+1}, so pure noise reads T and the final image reads 0.
        labels = [self.paper_t[i] if i < len(self.paper_t) else 0 for i in sorted(self.record)]
        return images, frames, labels
