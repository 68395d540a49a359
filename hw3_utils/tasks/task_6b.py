"""Task 6b: the guided noise prediction of classifier-free guidance, eps-tilde = (1 + w) eps(x_t, t, y) -
w eps(x_t, t, null) (Ho & Salimans 2022, eq. 6). Notebook 06, an optional extension.

The network is a fixed closed form of x_t, t and the label, not the UNet, so only the guidance arithmetic and
the labels it asks for count (task 6a's label embedding plays no part).
"""

from __future__ import annotations

import torch

from hw3_utils.config import NUM_DIGITS

from .base import EPS32, Task, Tolerance, as_output

FILE = "hw3_utils/guidance.py"
NULL = NUM_DIGITS  # the null label of the kit's conditional configs: their num_classes


def stub_eps(x, t, y):
    """The fixed conditional noise predictor of the cases: a closed form of x_t, t and the label (int64)."""
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != x.shape[:1]:
        what = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(f"the model's labels must be int64, one per image ({x.shape[0]},), got {what}")
    lab = y.to(x.dtype).view(-1, 1, 1, 1)
    return torch.tanh(x) * (0.5 + 0.1 * lab) + 0.3 * torch.cos(lab) + 1e-3 * t.to(x.dtype).view(-1, 1, 1, 1)


def inputs(spec: dict) -> dict:
    g = torch.Generator().manual_seed(spec["seed"])
    b = len(spec["y"])
    return {"x_t": torch.randn(b, 1, 8, 8, generator=g), "t": torch.randint(0, 1000, (b,), generator=g),
            "y": torch.tensor(spec["y"], dtype=torch.long), "w": spec["w"]}


def run(case: dict) -> dict:
    from hw3_utils.guidance import guided_eps

    out = guided_eps(stub_eps, case["x_t"].clone(), case["t"].clone(), case["y"].clone(), case["w"], NULL)
    return {"eps": as_output(out, "guided_eps")}


def explain(case: dict, got: dict, expected: dict) -> list[str]:
    diff = float((got["eps"].double() - expected["eps"].double()).abs().max())
    lines = [f"with w = {case['w']}: the largest difference is {diff:.3g}"]
    if case["w"] == 0:
        lines.append("at w = 0 the guided prediction is the conditional one, eps(x_t, t, y)")
    return lines


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=6111, y=[9, 0, 4], w=4.0), dict(seed=6112, y=[1, 2], w=0.0), dict(seed=6113, y=[7], w=1.0)]


def reference(case: dict) -> dict:  # noqa: F811 (the student kit has reference = None)
    """Eq. 6 of Ho & Salimans in float64, on the stub in float64."""
    x, t, y, w = case["x_t"].double(), case["t"], case["y"], case["w"]
    return {"eps": (1 + w) * stub_eps(x, t, y) - w * stub_eps(x, t, torch.full_like(y, NULL))}


_MIX = "    return (1 + w) * eps_cond - w * eps_null\n"
_CALLS = ("    eps_cond = model(x_t, t, y).float()\n"
          "    eps_null = model(x_t, t, torch.full_like(y, null)).float()\n")
MISTAKES = (
    mistake("guidance-sign-flipped", FILE, _MIX, "    return (1 + w) * eps_null - w * eps_cond\n",
            "the guidance pushes away from the digit asked for: eps-tilde = (1 + w) eps(x_t, t, y) - w eps(x_t, t, "
            "null), the conditional prediction weighted by 1 + w"),
    mistake("scale-without-one-plus", FILE, _MIX, "    return eps_null + w * (eps_cond - eps_null)\n",
            "this is w eps(x_t, t, y) - (w - 1) eps(x_t, t, null), the guidance-scale convention (scale s = 1 + w, "
            "as diffusers' guidance_scale): with the guidance weight w of Ho & Salimans the conditional prediction "
            "gets 1 + w, so that w = 0 is the plain conditional model"),
    mistake("null-label-zero-at-sampling", FILE, "    eps_null = model(x_t, t, torch.full_like(y, null)).float()\n",
            "    eps_null = model(x_t, t, torch.zeros_like(y)).float()\n",
            "the unconditional prediction asks for label 0, which is digit 0: the unconditional branch uses the "
            "null label `null`"),
)
VARIANTS = (
    variant("one-pass-of-2b", FILE, (_CALLS + _MIX,
            "    b = x_t.shape[0]\n"
            "    labels = torch.cat([y, torch.full_like(y, null)])\n"
            "    eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), labels).float()\n"
            "    eps_cond, eps_null = eps.chunk(2)\n"
            "    return (1 + w) * eps_cond - w * eps_null\n"),
            "one forward pass of the 2B batch [x_t, x_t] with labels [y, null], split with chunk"),
    variant("difference-form", FILE, (_CALLS + _MIX,
            "    eps_c = model(x_t, t, y)\n"
            "    eps_u = model(x_t, t, y.new_full(y.shape, null))\n"
            "    return eps_u + (1 + w) * (eps_c - eps_u)\n"),
            "eps(null) + (1 + w) (eps(y) - eps(null)), the null labels from new_full"),
    variant("lerp", FILE, (_MIX, "    return torch.lerp(eps_null, eps_cond, 1 + w)\n"),
            "torch.lerp(eps_null, eps_cond, 1 + w), the same line as an extrapolation past eps_cond"),
)
### END HIDDEN TESTS

TASK = Task(
    id="6b", name="guided_eps", title="the guided noise prediction (classifier-free guidance)", points=5, file=FILE,
    functions=(("hw3_utils.guidance", "guided_eps"),), notebook="06_guidance",
    hint="Ask the model twice, with the labels y and with the null label for every image, and mix: "
         "(1 + w) eps(x_t, t, y) - w eps(x_t, t, null). Labels are int64.",
    outputs={"eps": torch.float32},
    # eps-tilde sums two float32 predictions of size up to about 2 weighted by up to 1 + w = 5: any order or form of
    # the sum (the difference form, lerp) stays within a few eps of the largest term, about 1e-6 absolute.
    tolerance=Tolerance(1e-4, 1e-4, f"eps-tilde of size up to about 10, two float32 predictions weighted by up to "
                        f"1 + w = 5: any correct form is within a few eps = {EPS32:.0e} of the largest term (about "
                        "1e-6); the nearest mistake moves eps-tilde by w times the gap between the two predictions, "
                        "0.1 or more"),
    public=[dict(seed=6101, y=[3, 0, 7, 9], w=2.0), dict(seed=6102, y=[5, 5, 1], w=0.5)],
    hidden=HIDDEN, inputs=inputs, run=run, reference=reference, explain=explain,
    shape_note="eps-tilde has the shape of x_t",
    near_miss="the mix of the two predictions: (1 + w) times the conditional one, minus w times the unconditional",
    mistakes=MISTAKES, variants=VARIANTS,
)
