"""Task 2b: the time-conditioned Block and the UNet's forward pass with its skip concatenations.

Isolated from task 2a: during the check, `sinusoidal_embedding` is replaced by a table of reference
values for the case's timesteps, so a mistake in 2a costs no points here.

The kit computes `temb` above the solution region (`UNet.embedding`), so that a conditional UNet's label
embedding reaches every block; a case with labels (a conditional UNet whose label table is not zero) catches
code that embeds t again and so overwrites it. That case's embedding is the reference time_mlp(table) + E[y],
not task 6a's code, so it runs the same in a release without notebook 06.
Points: 20, the embedding line given: the Block and the down and up paths with their skips are the task's work.
"""

from __future__ import annotations

import torch

from hw3_utils.config import NUM_DIGITS

from .base import EPS32, Task, Tolerance, as_output, replaced

FILE = "hw3_utils/unet.py"


def tiny_unet_config(seed: int = 0, num_classes: int = 0):
    """The tiny UNet of the 2b cases: widths 8/16/32, bottleneck 64, 4 groups, 32-d time embedding
    (and a label table of NUM_DIGITS + 1 rows when num_classes is NUM_DIGITS)."""
    from hw3_utils.config import get_config

    return get_config("full-smoke", verbose=False, model_channels=8, groups=4, time_emb_dim=32, seed=seed,
                      num_classes=num_classes)


def inputs(spec: dict) -> dict:
    """A case's inputs; a spec with labels `y` adds them and the label table of a conditional UNet."""
    g = torch.Generator().manual_seed(spec["seed"])
    b, cfg = len(spec["t"]), tiny_unet_config()
    case = {"x": torch.randn(b, 3, 28, 28, generator=g), "t": torch.tensor(spec["t"], dtype=torch.long),
            "h": torch.randn(b, cfg.model_channels * cfg.channel_mult[1], 7, 7, generator=g),
            "temb": torch.randn(b, cfg.time_emb_dim, generator=g)}
    if "y" in spec:
        case.update(y=torch.tensor(spec["y"], dtype=torch.long),
                    label_table=torch.randn(NUM_DIGITS + 1, cfg.time_emb_dim, generator=g))
    return case


def _forward(case: dict, dtype: torch.dtype) -> dict:
    """Block (down3) and UNet outputs of the tiny model, with the embedding read from the case's table
    (plus the case's label table, for a case with labels)."""
    from hw3_utils import unet
    from hw3_utils.train import build_model

    own, table_t, table = unet.sinusoidal_embedding, case["emb_t"], case["emb"].to(dtype)

    def table_embedding(t, dim):  # reference values from the case data, not code
        if dim == table.shape[1] and t.ndim == 1 and bool(torch.isin(t.long(), table_t).all()):
            return table[torch.searchsorted(table_t, t.long())]
        return own(t, dim)

    y = case.get("y")
    model = build_model(tiny_unet_config(num_classes=NUM_DIGITS if y is not None else 0), "cpu").to(dtype).eval()
    if y is not None:
        labels = case["label_table"].to(dtype)

        def embedding(t, y=None):  # UNet.embedding's temb (y None: the null label) without task 6a's code
            y = torch.full_like(t, NUM_DIGITS) if y is None else y
            return model.time_mlp(unet.sinusoidal_embedding(t, model.time_emb_dim)) + labels[y]

        model.embedding = embedding
    with replaced(unet, "sinusoidal_embedding", table_embedding):
        block = as_output(model.down3(case["h"].to(dtype), case["temb"].to(dtype)), "Block.forward")
        out = as_output(model(case["x"].to(dtype), case["t"], y), "UNet.forward")
    return {"block": block, "out": out}


def run(case: dict) -> dict:
    return _forward(case, torch.float32)


def explain(case: dict, got: dict, expected: dict) -> list[str]:
    if not TASK.tolerance.ok(got["block"], expected["block"]):
        return ["Block.forward differs (conv1-norm1-ReLU, + time_proj(temb) broadcast over H and W, "
                "conv2-norm2-ReLU)"]
    if "y" in case:
        return ["Block.forward matches, the UNet output differs on this case with labels (a class-conditional "
                "UNet, whose temb also holds the label's embedding): use temb as the line above your code gives it, "
                "without embedding t again; then check the max-pooling and the skip concatenations"]
    return ["Block.forward matches, the UNet output differs: check that every block gets temb, the max-pooling "
            "between down blocks and the skip concatenations"]


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
aux = reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=211, t=[7, 123, 998]), dict(seed=212, t=[999, 0, 321], y=[NUM_DIGITS, 0, 9])]


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
    mistake("re-embeds-t", FILE, "        s1 = self.down1(x, temb)\n",
            "        temb = self.time_mlp(sinusoidal_embedding(t, self.time_emb_dim))\n"
            "        s1 = self.down1(x, temb)\n",
            "UNet.forward embeds t again and overwrites the temb it is given, which in a class-conditional UNet "
            "also holds the label's embedding: the labels are lost. Use temb as the line above your code gives it"),
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
    hint="Block: conv-norm-ReLU, add the projected time embedding, conv-norm-ReLU. UNet: temb is given (the line "
         "above: the time embedding, plus the label's in a class-conditional UNet), so use it as it is and do not "
         "embed t again; go down with max-pooling, and concatenate each up-sampled map with the matching down "
         "block's output.",
    outputs={"block": torch.float32, "out": torch.float32},
    # Each output element sums a few hundred float32 products (3x3 convs over up to 128 channels)
    # and is renormalised by GroupNorm: the rounding of any order of summation stays near
    # sqrt(n) eps |terms|, about 1e-6 here.
    tolerance=Tolerance(1e-4, 1e-4, f"outputs of size about 1; float32 sums of a few hundred products differ "
                        f"by about sqrt(n) eps = {24 * EPS32:.0e} between orders of summation (2e-6 between "
                        "two CPUs); the nearest mistake is off by more than 1e-2"),
    public=[dict(seed=201, t=[0, 999]), dict(seed=202, t=[1, 500, 10]),
            dict(seed=203, t=[3, 999], y=[7, NUM_DIGITS])],  # with labels: a class-conditional UNet
    hidden=HIDDEN, inputs=inputs, run=run, aux=aux, reference=reference, explain=explain, rows=("out", "t"),
    shape_note="the UNet returns the same shape as its input x, a Block (B, c_out, H, W)",
    near_miss="the order of operations inside Block.forward (norm, then ReLU, then the time embedding)",
    mistakes=MISTAKES, variants=VARIANTS,
)
