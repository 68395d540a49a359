"""Task 5a: one reverse step p_sample, x_t -> x_{t-1} (Algorithm 2, lines 3-4, with the mean of eq. 11).

The network is a fixed closed form of x_t and t, not the UNet, so only the step's arithmetic counts.
"""

from __future__ import annotations

import torch

from .base import EPS32, T_STEPS, Task, Tolerance, as_output

FILE = "hw3_utils/diffusion.py"


def stub_eps(x, t):
    """The fixed noise predictor of the p_sample cases."""
    return 0.1 * x + 1e-3 * t.to(x.dtype).view(-1, 1, 1, 1)


def inputs(spec: dict) -> dict:
    g = torch.Generator().manual_seed(spec["seed"])
    b = len(spec["t"])
    return {"x_t": torch.randn(b, 1, 28, 28, generator=g), "t": torch.tensor(spec["t"], dtype=torch.long),
            "noise": torch.randn(b, 1, 28, 28, generator=g), "variance": spec["variance"]}


def run(case: dict) -> dict:
    from hw3_utils.diffusion import DDPM

    ddpm = DDPM(T_STEPS, variance=case["variance"])
    out = ddpm.p_sample(stub_eps, case["x_t"].clone(), case["t"].clone(), noise=case["noise"].clone())
    return {"x_prev": as_output(out, "p_sample")}


def row_notes(bad_t: set, good_t: set, variances: set) -> list[str]:
    if bad_t == {0}:
        return ["at the last step (t = 0) no noise is added: x_{t-1} is the mean"]
    if 0 not in bad_t and len(variances) == 1:
        return [f"only with variance='{next(iter(variances))}': check which sigma_t^2 you use"]
    return []


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=511, t=[0, 300, 998], variance="beta"), dict(seed=512, t=[2, 0, 700], variance="posterior")]


def reference(case: dict) -> dict:  # noqa: F811 (the student kit has reference = None)
    """Algorithm 2's step in float64, with the schedule kept in float64 throughout."""
    from hw3_utils.diffusion import DDPM

    d = DDPM(T_STEPS, variance=case["variance"], dtype=torch.float64)
    x, t = case["x_t"].double(), case["t"]
    at = lambda buf: buf[t].view(-1, 1, 1, 1)  # noqa: E731
    eps = stub_eps(x, t)
    mean = (x - at(d.betas) / (1 - at(d.alpha_bars)).sqrt() * eps) / at(d.alphas).sqrt()
    var = at(d.posterior_variance if case["variance"] == "posterior" else d.betas)
    return {"x_prev": mean + (t > 0).double().view(-1, 1, 1, 1) * var.sqrt() * case["noise"].double()}


_NOISE = ("        nonzero = (t > 0).float().view(-1, 1, 1, 1)\n"
          "        return mean + nonzero * var.sqrt() * noise\n")
_MEAN = "        mean = (x_t - beta / self._at(self.sqrt_one_minus_alpha_bars, t) * eps) / alpha.sqrt()\n"
MISTAKES = (
    mistake("noise-at-t0", FILE,
            "return mean + nonzero * var.sqrt() * noise", "return mean + var.sqrt() * noise",
            "noise is added at the last step: at t = 0 (the paper's t = 1) the result is the mean, z = 0"),
    mistake("beta-for-posterior", FILE,
            'var = self._at(self.posterior_variance if self.variance == "posterior" else self.betas, t)',
            "var = self._at(self.betas, t)",
            "sigma_t^2 = beta_t is used where variance='posterior' asks for the posterior variance beta-tilde_t "
            "(eq. 7)"),
    mistake("p-t-off-by-one", FILE,
            "beta, alpha = self._at(self.betas, t), self._at(self.alphas, t)",
            "beta, alpha = self._at(self.betas, t - 1), self._at(self.alphas, t - 1)",
            "the schedule is read at t - 1: code index t already is the paper's t + 1"),
)
VARIANTS = (
    variant("posterior-mean-of-x0", FILE, (_MEAN,
            "        ab, ab_prev = self._at(self.alpha_bars, t), self._at(self.alpha_bars_prev, t)\n"
            "        x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()\n"
            "        mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 \\\n"
            "            + (alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * x_t\n"),
            "the posterior mean of eq. 7 at x0-hat = (x_t - sqrt(1 - alpha-bar) eps) / sqrt(alpha-bar), with "
            "1 - alpha-bar formed in float32 (the tutorials' form; the issue's example)"),
    variant("where-mask", FILE, (_NOISE,
            "        step = mean + torch.sqrt(var) * noise\n"
            "        return torch.where(t.view(-1, 1, 1, 1) > 0, step, mean)\n"),
            "torch.where on t > 0 instead of a 0/1 mask"),
    variant("released-code-form", FILE, ((_MEAN,
            "        ab = self._at(self.alpha_bars, t)\n"
            "        x0 = torch.sqrt(1.0 / ab) * x_t - torch.sqrt(1.0 / ab - 1) * eps\n"
            "        coef1 = beta * self._at(self.alpha_bars_prev, t).sqrt() / (1.0 - ab)\n"
            "        coef2 = (1.0 - self._at(self.alpha_bars_prev, t)) * alpha.sqrt() / (1.0 - ab)\n"
            "        mean = coef1 * x0 + coef2 * x_t\n"),
            (_NOISE,
             "        log_var = torch.log(var.clamp(min=1e-20))\n"
             "        mask = (1 - (t == 0).float()).reshape(x_t.shape[0], *((1,) * (x_t.ndim - 1)))\n"
             "        return mean + mask * torch.exp(0.5 * log_var) * noise\n")),
            "Ho et al.'s released code: x0 from sqrt(1/alpha-bar) and sqrt(1/alpha-bar - 1), posterior "
            "coefficients, exp(0.5 log variance), a (1 - [t == 0]) mask"),
)
### END HIDDEN TESTS

TASK = Task(
    id="5a", name="p_sample", title="one reverse step p_sample", points=20, file=FILE,
    functions=(("hw3_utils.diffusion", "DDPM.p_sample"),), notebook="05_sampling_and_fid",
    hint="Algorithm 2, lines 3-4, with the mean of eq. 11; sigma_t^2 is the posterior variance or beta_t as "
         "self.variance says, use `noise` when it is given, and add no noise at t = 0.",
    outputs={"x_prev": torch.float32},
    # A correct formula may form 1 - alpha-bar_t in float32 from the float32 alpha-bar_t, which near
    # t = 0 (1 - alpha-bar = 1e-4) is off by eps / 1e-4 = 1.2e-3 relatively at worst (1.7e-4 for the
    # actual float32 value of 0.9999): the mean moves by that fraction. The nearest mistake (noise at
    # t = 0, beta vs beta-tilde at t = 1) moves x_{t-1} by 0.01 |z|, well outside 1e-3 |x| + 1e-4.
    tolerance=Tolerance(1e-3, 1e-4, f"x_(t-1) of size up to 5; 1 - alpha-bar_t formed in float32 near t = 0 "
                        f"is off by up to eps / 1e-4 = {EPS32 / 1e-4:.1e} relatively (1.7e-4 in fact); the "
                        "nearest mistake moves x_(t-1) by 0.01 abs(z)"),
    public=[dict(seed=501, t=[0, 999, 1, 500], variance="posterior"),
            dict(seed=501, t=[0, 999, 1, 500], variance="beta")],
    hidden=HIDDEN, inputs=inputs, run=run, reference=reference, rows=("x_prev", "t"), row_notes=row_notes,
    shape_note="x_{t-1} has the shape of x_t",
    near_miss="1 - alpha-bar_t near t = 0, where alpha-bar_t is within 1e-4 of 1: use the float64-accurate "
              "buffers (sqrt_one_minus_alpha_bars, posterior_variance) instead of forming it in float32",
    mistakes=MISTAKES, variants=VARIANTS,
)
