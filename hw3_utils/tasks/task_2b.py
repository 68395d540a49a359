"""Task 2b: the time-conditioned Block and the UNet's forward pass with its skip concatenations.

Isolated from task 2a: during the check, `sinusoidal_embedding` is replaced by a table of reference
values for the case's timesteps, so a mistake in 2a costs no points here.
"""

from __future__ import annotations

import torch

from .base import EPS32, Task, Tolerance, as_output, replaced

FILE = "hw3_utils/unet.py"


def tiny_unet_config(seed: int = 0):
    """The tiny UNet of the 2b cases: widths 8/16/32, bottleneck 64, 4 groups, 32-d time embedding."""
    from hw3_utils.config import get_config

    return get_config("full-smoke", verbose=False, model_channels=8, groups=4, time_emb_dim=32, seed=seed)


def inputs(spec: dict) -> dict:
    g = torch.Generator().manual_seed(spec["seed"])
    b, cfg = len(spec["t"]), tiny_unet_config()
    return {"x": torch.randn(b, 3, 28, 28, generator=g), "t": torch.tensor(spec["t"], dtype=torch.long),
            "h": torch.randn(b, cfg.model_channels * cfg.channel_mult[1], 7, 7, generator=g),
            "temb": torch.randn(b, cfg.time_emb_dim, generator=g)}


def _forward(case: dict, dtype: torch.dtype) -> dict:
    """Block (down3) and UNet outputs of the tiny model, with the embedding read from the case's table."""
    from hw3_utils import unet
    from hw3_utils.train import build_model

    own, table_t, table = unet.sinusoidal_embedding, case["emb_t"], case["emb"].to(dtype)

    def table_embedding(t, dim):  # reference values from the case data, not code
        if dim == table.shape[1] and t.ndim == 1 and bool(torch.isin(t.long(), table_t).all()):
            return table[torch.searchsorted(table_t, t.long())]
        return own(t, dim)

    model = build_model(tiny_unet_config(), "cpu").to(dtype).eval()
    with replaced(unet, "sinusoidal_embedding", table_embedding):
        block = as_output(model.down3(case["h"].to(dtype), case["temb"].to(dtype)), "Block.forward")
        out = as_output(model(case["x"].to(dtype), case["t"]), "UNet.forward")
    return {"block": block, "out": out}


def run(case: dict) -> dict:
    return _forward(case, torch.float32)


def explain(case: dict, got: dict, expected: dict) -> list[str]:
    if not TASK.tolerance.ok(got["block"], expected["block"]):
        return ["Block.forward differs (conv1-norm1-ReLU, + time_proj(temb) broadcast over H and W, "
                "conv2-norm2-ReLU)"]
    return ["Block.forward matches, the UNet output differs: check that every block gets temb, the max-pooling "
            "between down blocks and the skip concatenations"]


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
aux = reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=211, t=[7, 123, 998])]


def aux(case: dict) -> dict:  # noqa: F811 (the student kit has aux = None)
    """The embedding table of the case's timesteps, from task 2a's float64 spec, stored as float32."""
    from .task_2a import embedding64

    ts = torch.unique(case["t"])
    return {"emb_t": ts, "emb": embedding64(ts, tiny_unet_config().time_emb_dim).float()}


def reference(case: dict) -> dict:  # noqa: F811
    """The solution's Block and UNet in float64 (weights, inputs and table), on the same case."""
    return {k: v.double() for k, v in _forward(case, torch.float64).items()}


_UP = ("        h = self.up_block1(torch.cat([self.up1(h), s3], dim=1), temb)\n"
       "        h = self.up_block2(torch.cat([self.up2(h), s2], dim=1), temb)\n"
       "        h = self.up_block3(torch.cat([self.up3(h), s1], dim=1), temb)\n")
_DOWN = ("        s2 = self.down2(F.max_pool2d(s1, 2), temb)\n"
         "        s3 = self.down3(F.max_pool2d(s2, 2), temb)\n"
         "        h = self.bottleneck(F.max_pool2d(s3, 2), temb)\n")
_BLOCK = ("        h = F.relu(self.norm1(self.conv1(x)))\n"
          "        h = h + self.time_proj(temb)[:, :, None, None]\n"
          "        return F.relu(self.norm2(self.conv2(h)))\n")
MISTAKES = (
    mistake("no-skip", FILE, _UP,
            _UP.replace(", s3]", ", self.up1(h)]").replace(", s2]", ", self.up2(h)]")
            .replace(", s1]", ", self.up3(h)]"),
            "the up path ignores the skip connections: concatenate each up-sampled map with the output of the "
            "down block of the same resolution"),
    mistake("block-without-time", FILE, "        h = h + self.time_proj(temb)[:, :, None, None]\n", "",
            "the Block ignores the time embedding: add its projection, broadcast over H and W, between the convs"),
)
VARIANTS = (
    variant("modules-and-unsqueeze", FILE, (_BLOCK,
            "        h = torch.relu(self.norm1(self.conv1(x)))\n"
            "        h = h + self.time_proj(temb).unsqueeze(-1).unsqueeze(-1)\n"
            "        h = self.conv2(h)\n"
            "        return nn.ReLU()(self.norm2(h))\n"),
            "torch.relu and an nn.ReLU module, unsqueeze twice instead of [:, :, None, None]"),
    variant("maxpool-module-concat", FILE, ((_DOWN,
            "        pool = nn.MaxPool2d(kernel_size=2, stride=2)\n"
            "        s2 = self.down2(pool(s1), temb)\n"
            "        s3 = self.down3(pool(s2), temb)\n"
            "        h = self.bottleneck(pool(s3), temb)\n"),
            (_UP, "        for up, block, skip in ((self.up1, self.up_block1, s3), (self.up2, self.up_block2, s2),\n"
                  "                                (self.up3, self.up_block3, s1)):\n"
                  "            h = block(torch.concat((up(h), skip), 1), temb)\n")),
            "an nn.MaxPool2d module, and the up path as a loop with torch.concat"),
    variant("view-projection", FILE, ("        h = h + self.time_proj(temb)[:, :, None, None]\n",
                                      "        b, c = h.shape[:2]\n"
                                      "        h = h + self.time_proj(temb).view(b, c, 1, 1)\n"),
            "the projected embedding reshaped with view(B, C, 1, 1)"),
)
### END HIDDEN TESTS

TASK = Task(
    id="2b", name="UNet forward", title="time-conditioned Block and UNet forward with skip concatenations",
    points=20, file=FILE, functions=(("hw3_utils.unet", "Block.forward"), ("hw3_utils.unet", "UNet.forward")),
    notebook="02_unet",
    hint="Block: conv-norm-ReLU, add the projected time embedding, conv-norm-ReLU. UNet: with temb (given), go "
         "down with max-pooling, and concatenate each up-sampled map with the matching down block's output.",
    outputs={"block": torch.float32, "out": torch.float32},
    # Each output element sums a few hundred float32 products (3x3 convs over up to 128 channels)
    # and is renormalised by GroupNorm: the rounding of any order of summation stays near
    # sqrt(n) eps |terms|, about 1e-6 here.
    tolerance=Tolerance(1e-4, 1e-4, f"outputs of size about 1; float32 sums of a few hundred products differ "
                        f"by about sqrt(n) eps = {24 * EPS32:.0e} between orders of summation (2e-6 between "
                        "two CPUs); the nearest mistake is off by more than 1e-2"),
    public=[dict(seed=201, t=[0, 999]), dict(seed=202, t=[1, 500, 10])],
    hidden=HIDDEN, inputs=inputs, run=run, aux=aux, reference=reference, explain=explain, rows=("out", "t"),
    shape_note="the UNet returns the same shape as its input x, a Block (B, c_out, H, W)",
    near_miss="the order of operations inside Block.forward (norm, then ReLU, then the time embedding)",
    mistakes=MISTAKES, variants=VARIANTS,
)
