"""Task 2a: the sinusoidal time embedding, (B,) timesteps -> (B, dim) [sines, cosines]."""

from __future__ import annotations

import torch

from .base import EPS32, T_STEPS, Task, Tolerance, as_output

FILE = "hw3_utils/unet.py"


def inputs(spec: dict) -> dict:
    return {"t": torch.tensor(spec["t"], dtype=torch.long), "dim": spec["dim"]}


def run(case: dict) -> dict:
    from hw3_utils.unet import sinusoidal_embedding

    return {"emb": as_output(sinusoidal_embedding(case["t"], case["dim"]), "sinusoidal_embedding")}


def row_notes(bad_t: set, good_t: set, variances: set) -> list[str]:
    return ["at t = 0 every sine is 0 and every cosine is 1"] if bad_t == {0} else []


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(t=[3, 250, 998, 0], dim=64), dict(t=[7, 1], dim=8)]


def embedding64(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The spec in float64: w_i = 10000^(-i / (dim/2 - 1)), [sin(t w), cos(t w)]."""
    half = dim // 2
    w = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / (half - 1))
    args = t.double()[:, None] * w[None, :]
    return torch.cat([args.sin(), args.cos()], dim=1)


def reference(case: dict) -> dict:  # noqa: F811 (the student kit has reference = None)
    return {"emb": embedding64(case["t"], case["dim"])}


MISTAKES = (
    mistake("sin-cos-swapped", FILE,
            "torch.cat([args.sin(), args.cos()], dim=1)", "torch.cat([args.cos(), args.sin()], dim=1)",
            "sines and cosines are swapped: the dim/2 sines come first, then the cosines"),
    mistake("frequency-exponent", FILE,
            "torch.arange(half, device=t.device) / (half - 1))", "torch.arange(half, device=t.device) / half)",
            "the frequency exponent is off: w_i = 10000^(-i / (dim/2 - 1)), so the last frequency is exactly "
            "1/10000"),
)
_FREQS = "    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))\n"
_CAT = "    return torch.cat([args.sin(), args.cos()], dim=1)\n"
VARIANTS = (
    variant("power-form", FILE, (_FREQS,
            "    freqs = 10000.0 ** (-torch.arange(half, device=t.device) / (half - 1))\n"),
            "10000 ** (-i / (half - 1)) instead of exp(-log(10000) i / (half - 1)) (the issue's example)"),
    variant("stack-view", FILE, (_CAT,
            "    return torch.stack([torch.sin(args), torch.cos(args)], dim=1).view(t.shape[0], dim)\n"),
            "stack to (B, 2, dim/2) and view as (B, dim) instead of cat"),
    variant("loop-float64", FILE, ((_FREQS,
            "    out = torch.empty(t.shape[0], 2 * half, dtype=torch.float64)\n"
            "    for i in range(half):\n"
            "        w = math.exp(-math.log(10000.0) * i / (half - 1))\n"
            "        out[:, i] = torch.sin(t.double() * w)\n"
            "        out[:, half + i] = torch.cos(t.double() * w)\n"
            "    return out.float()\n"),
            ("    args = t.float()[:, None] * freqs[None, :]\n" + _CAT, "")),
            "an explicit loop over the frequencies, in float64, cast to float32 at the end"),
)
### END HIDDEN TESTS

TASK = Task(
    id="2a", name="sinusoidal_embedding", title="sinusoidal time embedding", points=10, file=FILE,
    functions=(("hw3_utils.unet", "sinusoidal_embedding"),), notebook="02_unet",
    hint="Follow the docstring: dim/2 frequencies w_i = 10000^(-i / (dim/2 - 1)), the sines first, then "
         "the cosines, as float32.",
    outputs={"emb": torch.float32},
    # float32 w_i carries a relative error of about (|ln w_i| + 2) eps; t w_i then has an absolute
    # error below t max_i w_i (|ln w_i| + 3) eps = 3 t eps (the maximum is at w_0 = 1), and sin/cos
    # pass it on unamplified: 3.6e-4 at t = 999.
    tolerance=Tolerance(0.0, 1e-3, f"values in [-1, 1]; float32 rounding of t w_i gives up to 3 t eps = "
                        f"{3 * (T_STEPS - 1) * EPS32:.1e} at t = 999 in any correct formula; the nearest mistake "
                        "is off by more than 1e-2"),
    public=[dict(t=[0, 1, 10, 999], dim=256), dict(t=[0, 5, 500], dim=16)],
    hidden=HIDDEN, inputs=inputs, run=run, reference=reference, rows=("emb", "t"), row_notes=row_notes,
    shape_note="the embedding of B timesteps is (B, dim): dim/2 sines followed by dim/2 cosines",
    near_miss="how t * w_i is formed: compute the frequencies once, in float32 or float64, and multiply",
    mistakes=MISTAKES, variants=VARIANTS,
)
