"""Samplers: how a noise predictor and a `DDPM` schedule become images.

In diffusers' split the network is the model (`model(x_t, t) -> predicted noise`), `DDPM` is the
scheduler (the schedule and one reverse step, `p_sample`, the student's task 5a) and this module is the
pipeline: it owns the start noise, batching, snapshots, respacing, DDIM, x0-hat clipping and classifier-free
guidance, and it has one entry, `sample`, which every caller uses (notebooks, previews, the process grid, the FID
draws). Respacing, clipping and guidance are wrappers around the `model(x_t, t) -> eps` contract, so they
compose: every sampler can be guided, on all T steps or respaced, clipped or not.

Indexing as in `diffusion.py`: code index t = 0 .. T-1 is the paper's timestep t+1. Equation numbers
refer to the DDPM paper (arXiv:2006.11239) unless they say DDIM (Song et al. 2021, arXiv:2010.02502).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import Config, guidance_module
from .diffusion import DDPM

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; keep sampling usable without it
    def tqdm(it, **_):
        return it

__all__ = ["METHODS", "sample", "ancestral", "ddim", "ddim_step", "respaced", "clipped", "guided",
           "strided_timesteps"]

METHODS = ("ddpm", "ddim")  # "ddpm": Algorithm 2 (respaced when steps < T); "ddim": DDIM eq. 12


@torch.no_grad()
def sample(model, ddpm: DDPM, cfg: Config | None = None, *, n: int, method: str | None = None,
           steps: int | None = None, eta: float = 0.0, clip: bool | None = None, snapshots: int = 0,
           generator: torch.Generator | None = None, progress: bool = True, batch_size: int | None = None,
           shape: tuple[int, int, int] | None = None, device=None, labels=None, guidance: float = 0.0):
    """n images from `model` with the config's sampler, or with the arguments given instead.

    cfg: its sampler (method), sample_steps (steps; None = all T), clip_denoised (clip) and image_shape
    (shape); None means the report's recipe, `Config()`: Algorithm 2, all T steps, no clipping.
    method: "ddpm" (Algorithm 2, on a respaced schedule when steps < T, see `respaced`) or "ddim"
    (DDIM with `eta`: 0 deterministic, 1 the posterior's noise). clip: x0-hat clipped to [-1, 1] at
    every step (`clipped`). Noise comes from `generator` (on its own device, so a seed gives the same
    images anywhere) or the global RNG, batch after batch of `batch_size` (all n at once when None).
    labels: for a conditional model (cfg.num_classes > 0), the digit to draw, (n,) ints or one int for all;
    guidance: the weight w of classifier-free guidance (`guided`; 0: the conditional model as it is).
    Without labels a conditional model draws with the null label (no digit asked for).
    Returns images (n, *shape) float in [-1, 1] on the model's device; with snapshots=k > 0,
    (images, frames, labels): frames (k, n, *shape) evenly spaced states from x_T to x_0 (on the CPU),
    labels the paper timestep of each frame (T ... 0).
    """
    cfg = Config() if cfg is None else cfg
    method = method or cfg.sampler
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    tau = strided_timesteps(ddpm.timesteps, steps if steps is not None else cfg.sample_steps or ddpm.timesteps)
    clip = cfg.clip_denoised if clip is None else clip
    device = _device_of(model, device, ddpm.betas.device)
    labels = _labels(labels, n, cfg, guidance, device)

    def loop_of(net):
        """x_T -> the states of the chosen sampler, with `net` wrapped as it needs (respaced, clipped)."""
        if method == "ddpm":
            d, net = respaced(ddpm, net, tau) if len(tau) != ddpm.timesteps else (ddpm, net)
            net = clipped(d, net) if clip else net
            return lambda x: ancestral(d, net, x, generator)
        net = clipped(ddpm, net) if clip else net
        return lambda x: ddim(ddpm, net, x, tau, eta, generator)

    desc = "DDPM sampling" if method == "ddpm" else f"DDIM-{len(tau)} sampling"
    film = _Film([t + 1 for t in tau], snapshots)
    outs = []
    for start, b in _batches(n, batch_size):
        net = model if labels is None else guided(model, labels[start:start + b], guidance, cfg.num_classes)
        x = _noise((b, *(shape or cfg.image_shape)), generator, device)  # Algorithm 2, line 1: x_T ~ N(0, I)
        film.keep(0, x)
        states = tqdm(loop_of(net)(x), total=len(tau), desc=f"{desc} {start + b}/{n}", leave=False,
                      disable=not progress)
        for done, x in enumerate(states, start=1):
            film.keep(done, x)
        film.cut()
        outs.append(x.clamp(-1, 1))  # line 6: return x_0
    return film.result(torch.cat(outs))


def ancestral(ddpm: DDPM, net, x: torch.Tensor, generator: torch.Generator | None = None):
    """Algorithm 2, lines 2-5, from x_T: yields x_{T-1}, ..., x_0, one reverse step (`ddpm.p_sample`) each."""
    for t in range(ddpm.timesteps - 1, -1, -1):  # line 2: code index T-1 .. 0 = the paper's t = T .. 1
        x = ddpm.p_sample(net, x, t, generator)  # lines 3-4: x_{t-1} from x_t
        yield x


def ddim(ddpm: DDPM, net, x: torch.Tensor, tau: list[int], eta: float = 0.0,
         generator: torch.Generator | None = None):
    """DDIM from x_T over the descending code indices `tau`: yields the state after each step, x_0 last."""
    for t, t_prev in zip(tau, [*tau[1:], -1]):
        x = ddim_step(ddpm, net, x, t, t_prev, eta, generator)
        yield x


def ddim_step(ddpm: DDPM, model, x: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One DDIM step from code index t to t_prev (-1: to x_0), DDIM eq. 12 with sigma from eq. 16.

    x: (B, C, H, W) float -> the state at t_prev, same shape; noise (eta > 0) drawn from `generator`.
    """
    eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)).float()
    ab = ddpm.alpha_bars[t]
    ab_prev = ddpm.alpha_bars[t_prev] if t_prev >= 0 else torch.ones_like(ab)
    x0_pred = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    x_prev = ab_prev.sqrt() * x0_pred + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and t_prev >= 0:
        x_prev = x_prev + sigma * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    return x_prev


def strided_timesteps(timesteps: int, steps: int) -> list[int]:
    """The `steps` code indices of T = `timesteps` that DDIM and respacing visit, evenly strided and
    descending: e.g. 990, 980, ..., 0 for 100 of 1000."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be in [1, {timesteps}], got {steps}")
    stride = timesteps // steps
    return list(range(0, timesteps, stride))[:steps][::-1]


def respaced(ddpm: DDPM, model, tau: list[int]):
    """(DDPM, model) of the same process on the timesteps `tau` only, for Algorithm 2 in fewer steps.

    tau: code indices (as `strided_timesteps` gives them; either order). The new schedule keeps
    alpha-bar at those timesteps, beta'_i = 1 - alpha-bar_{tau_i} / alpha-bar_{tau_(i-1)} (Nichol &
    Dhariwal 2021, sec. 4), and the returned model is called at the original timesteps tau_i.
    Ancestral sampling on it equals DDIM with eta = 1 on the same subsequence.
    """
    tau = sorted(tau)
    # from the betas in float64, not the float32 alpha_bars: 1 - alpha-bar near t = 0 keeps its digits
    ab = torch.cumprod(1 - ddpm.betas.double(), dim=0)[tau]
    betas = 1 - ab / torch.cat([torch.ones(1, dtype=ab.dtype, device=ab.device), ab[:-1]])
    short = DDPM(variance=ddpm.variance, dtype=ddpm.betas.dtype, betas=betas.cpu()).to(ddpm.betas.device)
    tau_t = torch.tensor(tau, device=ddpm.betas.device)
    return short, lambda x, i: model(x, tau_t.to(i.device)[i])


def clipped(ddpm: DDPM, model):
    """`model` with its noise prediction replaced by the one whose x0-hat is clipped to [-1, 1].

    eps' = (x_t - sqrt(alpha-bar_t) clip(x0-hat)) / sqrt(1 - alpha-bar_t). With eps', eq. 11's
    mean equals the posterior mean of eq. 7 at the clipped x0-hat, which is what Ho et al.'s
    code (clip_denoised=True) computes; DDIM's x0 prediction becomes the clipped one too.
    Clipping is a wrapper around the `model(x_t, t) -> eps` contract, so `p_sample` (Algorithm
    2, the student's task 5a) stays exactly the paper's.
    """
    def eps_of_clipped_x0(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model(x_t, t).float()
        x0 = ddpm.predict_x0(x_t, t, eps).clamp(-1.0, 1.0)
        return ddpm.predict_eps(x_t, t, x0)

    return eps_of_clipped_x0


def guided(model, y: torch.Tensor, w: float, null: int):
    """A conditional `model(x_t, t, y) -> eps` as the `model(x_t, t) -> eps` contract for the labels y (B,) int64:
    the guided prediction eps-tilde = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null) of classifier-free guidance
    (Ho & Salimans 2022, eq. 6; `guidance.guided_eps`, the student's task 6b). w = 0 is the conditional model
    itself, one forward pass a step instead of two.
    """
    if w == 0:
        return lambda x_t, t: model(x_t, t, y)
    guided_eps = guidance_module().guided_eps
    return lambda x_t, t: guided_eps(model, x_t, t, y, w, null)


# plumbing: labels, devices, batches, start noise, recorded frames -----------------------------------
def _labels(labels, n: int, cfg: Config, guidance: float, device) -> torch.Tensor | None:
    """The labels of `sample` as (n,) int64 on `device` (None: unconditional), or ValueError saying what is wrong."""
    if labels is None:
        if guidance:
            raise ValueError(f"guidance={guidance} needs labels: sample(..., labels=digits, guidance=w)")
        return None
    if not cfg.num_classes:
        raise ValueError(f"labels need a class-conditional model and its config (num_classes=10: a '-cond' "
                         f"profile, e.g. cpu-cond); the '{cfg.profile}' config has num_classes=0")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not guidance >= 0:
        raise ValueError(f"guidance must be a number >= 0 (the weight w), got {guidance!r}")
    y = torch.as_tensor(labels, device=device)
    y = y.expand(n) if y.ndim == 0 else y
    if y.shape != (n,) or y.is_floating_point() or y.dtype == torch.bool or int(y.min()) < 0 \
            or int(y.max()) > cfg.num_classes:
        raise ValueError(f"labels must be one digit or {n} of them (one per image), integers in [0, {cfg.num_classes}]"
                         f" ({cfg.num_classes}: no label), got {tuple(y.shape)} {y.dtype}")
    return y.long()


def _device_of(model, device, fallback) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next(iter(model.parameters())).device if isinstance(model, nn.Module) else fallback


def _batches(n: int, batch_size: int | None) -> list[tuple[int, int]]:
    """(start, size) of each batch of at most batch_size (all n at once when None)."""
    batch_size = batch_size or n
    return [(start, min(batch_size, n - start)) for start in range(0, n, batch_size)]


def _noise(shape, generator, device) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (so a seed gives the same images anywhere), moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


class _Film:
    """Keeps `snapshots` evenly spaced states of a sampling loop (x_T first, x_0 last), batch after batch.

    paper_t: the paper timestep of the state each step starts from (T, ..., 1), one per step."""

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
        self.current: list[torch.Tensor] = []

    def keep(self, done: int, x: torch.Tensor) -> None:
        """Record x, the state once `done` steps are done (0: x_T), if it is one of the snapshots."""
        if done in self.record:
            self.current.append(x.clamp(-1, 1).cpu())

    def cut(self) -> None:
        """End of a batch."""
        self.batches.append(self.current)
        self.current = []

    def result(self, images: torch.Tensor):
        if self.snapshots <= 0:
            return images
        frames = torch.stack([torch.cat([b[k] for b in self.batches]) for k in range(len(self.batches[0]))])
        # Label each frame with the paper timestep of the state it holds: the state before the
        # step at code index c is x_{c+1}, so pure noise reads T and the final image reads 0.
        labels = [self.paper_t[i] if i < len(self.paper_t) else 0 for i in sorted(self.record)]
        return images, frames, labels
