"""Task 3: q_sample, the forward process x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) noise (eq. 4)."""

from __future__ import annotations

import torch

from .base import EPS32, T_STEPS, Task, Tolerance, as_output

FILE = "hw3_utils/diffusion.py"


def diffusion_inputs(spec: dict) -> dict:
    """x0 in [-1, 1], t and noise of one case (tasks 3 and 4). One channel keeps check_data.pt small;
    the diffusion code works for any (B, C, H, W)."""
    g = torch.Generator().manual_seed(spec["seed"])
    b = len(spec["t"])
    case = {"x0": torch.rand(b, 1, 28, 28, generator=g) * 2 - 1, "t": torch.tensor(spec["t"], dtype=torch.long),
            "noise": torch.randn(b, 1, 28, 28, generator=g)}
    if spec.get("weights"):
        w = torch.ones(b)
        w[-1] = 0  # a padded image, as the tensor-data path makes them
        case["weights"] = w / w.sum()
    return case


def run(case: dict) -> dict:
    from hw3_utils.diffusion import DDPM

    return {"xt": as_output(DDPM(T_STEPS).q_sample(case["x0"], case["t"], case["noise"]), "q_sample")}


def row_notes(bad_t: set, good_t: set, variances: set) -> list[str]:
    return ["t = 0 is the paper's t = 1: alpha-bar at index 0 is alpha_1, not 1"] if bad_t == {0} else []


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=311, t=[998, 2, 750, 0, 42])]


def q_sample64(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 4 in float64, with the schedule kept in float64 throughout."""
    from hw3_utils.diffusion import DDPM

    ab = DDPM(T_STEPS, dtype=torch.float64).alpha_bars[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double()


def reference(case: dict) -> dict:  # noqa: F811 (the student kit has reference = None)
    return {"xt": q_sample64(case["x0"], case["t"], case["noise"])}


_Q = "return self._at(self.sqrt_alpha_bars, t) * x0 + self._at(self.sqrt_one_minus_alpha_bars, t) * noise"
MISTAKES = (
    mistake("no-sqrt", FILE, _Q,
            "return self._at(self.alpha_bars, t) * x0 + self._at(1 - self.alpha_bars, t) * noise",
            "the square roots are missing: the coefficients are sqrt(alpha-bar_t) and sqrt(1 - alpha-bar_t)"),
    mistake("q-t-off-by-one", FILE, _Q, "t = t - 1\n        " + _Q,
            "the timestep is off by one: code index t already holds the paper's t + 1 (see the module docstring)"),
)
VARIANTS = (
    variant("gather", FILE, (_Q,
            "a = self.sqrt_alpha_bars.gather(0, t).reshape(-1, *([1] * (x0.ndim - 1)))\n"
            "        s = self.sqrt_one_minus_alpha_bars.gather(0, t).reshape(-1, *([1] * (x0.ndim - 1)))\n"
            "        return a * x0 + s * noise"),
            "gather the schedule and reshape to x0's rank instead of indexing with _at"),
    variant("from-alpha-bars", FILE, (_Q,
            "ab = self.alpha_bars[t][:, None, None, None]\n"
            "        return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * noise"),
            "the square roots taken from alpha_bars in float32, as most tutorials write it"),
    variant("cumprod-float32", FILE, (_Q,
            "ab = torch.cumprod(1.0 - self.betas, dim=0)[t].view(-1, 1, 1, 1)\n"
            "        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise"),
            "alpha-bar recomputed as a float32 cumulative product of 1 - beta"),
)
### END HIDDEN TESTS

TASK = Task(
    id="3", name="q_sample", title="q_sample", points=15, file=FILE,
    functions=(("hw3_utils.diffusion", "DDPM.q_sample"),), notebook="03_forward_diffusion",
    hint="Eq. 4 of the DDPM paper: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) noise, with the "
         "buffers of this object indexed at t (see `_at`).",
    outputs={"xt": torch.float32},
    # The coefficients are at most 1 and |noise| < 5. A float32 cumulative product of 1000 factors
    # drifts by up to 1000 eps relatively; through sqrt(1 - alpha-bar) near t = 0 (0.01) that is
    # an absolute error below 1e-5. The nearest mistake (t off by one at t = 500) moves x_t by 1e-3.
    tolerance=Tolerance(1e-4, 1e-4, f"x_t of size up to 5; float32 schedules (even a float32 cumprod, "
                        f"1000 eps = {1000 * EPS32:.0e} relative) keep any correct formula within 1e-5; the "
                        "nearest mistake (t off by one) is off by 1e-3 or more"),
    public=[dict(seed=301, t=[0, 999, 1, 500]), dict(seed=302, t=[250, 250, 0])],
    hidden=HIDDEN, inputs=diffusion_inputs, run=run, reference=reference, rows=("xt", "t"), row_notes=row_notes,
    shape_note="x_t has the shape of x0",
    near_miss="the schedule: use the float64-accurate buffers sqrt_alpha_bars and sqrt_one_minus_alpha_bars",
    mistakes=MISTAKES, variants=VARIANTS,
)
