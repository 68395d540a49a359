"""Task 4: the training loss L_simple (eq. 14): per-image MSE between the added and the predicted noise.

Isolated from task 3: during the check, `q_sample` returns reference x_t values for the case's own
inputs, and the network is a fixed closed form of x_t and t, not the UNet.
"""

from __future__ import annotations

import torch

from .base import EPS32, T_STEPS, Task, Tolerance, as_output
from .task_3 import diffusion_inputs

FILE = "hw3_utils/diffusion.py"


def stub_eps(x, t):
    """The fixed noise predictor of the loss cases: a closed form of x_t and t."""
    return 0.5 * x + 1e-3 * t.to(x.dtype).view(-1, 1, 1, 1)


def run(case: dict) -> dict:
    from hw3_utils.diffusion import DDPM

    ddpm = DDPM(T_STEPS)
    own = ddpm.q_sample

    def table_q_sample(x0, t, noise=None):  # the reference x_t for the case's own inputs
        if (noise is not None and isinstance(t, torch.Tensor) and x0.shape == case["x0"].shape
                and t.shape == case["t"].shape and torch.equal(x0, case["x0"])
                and torch.equal(t.cpu(), case["t"]) and torch.equal(noise, case["noise"])):
            return case["xt"].clone()
        return own(x0, t, noise)

    ddpm.q_sample = table_q_sample
    loss = ddpm.loss(stub_eps, case["x0"], t=case["t"].clone(), noise=case["noise"].clone(),
                     weights=case.get("weights"))
    return {"loss": as_output(loss, "loss")}


def explain(case: dict, got: dict, expected: dict) -> list[str]:
    g, e = float(got["loss"]), float(expected["loss"])
    pixels = case["x0"][0].numel()
    if e and abs(g / e - pixels) < 1e-3 * pixels:
        return ["your loss is C*H*W times the expected one: average over the pixels, do not sum"]
    return [f"got {g:.6g}, expected {e:.6g}"]


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
aux = reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=411, t=[0, 500], weights=False), dict(seed=412, t=[999, 5, 77], weights=True)]


def aux(case: dict) -> dict:  # noqa: F811 (the student kit has aux = None)
    """x_t of the case from task 3's float64 spec, stored as float32."""
    from .task_3 import q_sample64

    return {"xt": q_sample64(case["x0"], case["t"], case["noise"]).float()}


def reference(case: dict) -> dict:  # noqa: F811
    """L_simple in float64 on the case's x_t table."""
    pred = stub_eps(case["xt"].double(), case["t"])
    per_image = (pred - case["noise"].double()).pow(2).flatten(1).mean(dim=1)
    w = case.get("weights")
    return {"loss": per_image.mean() if w is None else (per_image * w.double()).sum()}


_PER_IMAGE = ("        pred = model(self.q_sample(x0, t, noise), t)\n"
              "        per_image = (pred.float() - noise).pow(2).flatten(1).mean(dim=1)  # (B,) mean over each image\n")
MISTAKES = (
    mistake("loss-vs-x0", FILE,
            "per_image = (pred.float() - noise).pow(2)", "per_image = (pred.float() - x0).pow(2)",
            "the prediction is compared with x0: the network predicts the noise, so L_simple compares it with "
            "the noise that was added"),
)
VARIANTS = (
    variant("mse-loss-none", FILE, (_PER_IMAGE,
            "        x_t = self.q_sample(x0=x0, t=t, noise=noise)\n"
            "        per_image = torch.nn.functional.mse_loss(model(x_t, t), noise, reduction='none')\n"
            "        per_image = per_image.mean(dim=(1, 2, 3))\n"),
            "F.mse_loss(reduction='none') averaged over (C, H, W), q_sample called with keywords"),
    variant("inline-q-sample", FILE, (_PER_IMAGE,
            "        a = self.sqrt_alpha_bars[t].view(-1, 1, 1, 1)\n"
            "        s = self.sqrt_one_minus_alpha_bars[t].view(-1, 1, 1, 1)\n"
            "        eps = model(a * x0 + s * noise, t)\n"
            "        per_image = ((noise - eps) ** 2).reshape(b, -1).mean(-1)\n"),
            "x_t written out instead of calling q_sample, (noise - eps)^2 reshaped to (B, -1)"),
)
### END HIDDEN TESTS

TASK = Task(
    id="4", name="loss", title="training loss L_simple", points=15, file=FILE,
    functions=(("hw3_utils.diffusion", "DDPM.loss"),), notebook="04_training",
    hint="L_simple (eq. 14): noise x0 to x_t with q_sample, let the model predict the noise, and take the "
         "squared error of each image averaged over its pixels (per_image, shape (B,)).",
    outputs={"loss": torch.float32},
    # A mean of a few thousand float32 squares of size about 1: any order of summation stays
    # within sqrt(n) eps relatively, about 1e-5; sum-instead-of-mean is 784 times off.
    tolerance=Tolerance(1e-4, 1e-6, f"a mean of about 3,000 float32 squares: any order of summation is "
                        f"within sqrt(n) eps = {55 * EPS32:.0e} relatively; the nearest mistake is off by more "
                        "than 10%"),
    public=[dict(seed=401, t=[0, 999, 10], weights=False), dict(seed=402, t=[1, 2, 3, 900], weights=True)],
    hidden=HIDDEN, inputs=diffusion_inputs, run=run, aux=aux, reference=reference, explain=explain,
    shape_note="the loss is a scalar (a 0-d tensor)",
    near_miss="how the squared errors are averaged: over each image's pixels, then over the batch "
              "(or weighted by `weights`)",
    mistakes=MISTAKES, variants=VARIANTS,
)
