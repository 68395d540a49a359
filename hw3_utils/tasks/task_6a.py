"""Task 6a: the conditioning of classifier-free guidance: label dropout in training (`drop_labels`) and the
label's embedding added to the time embedding (`add_label_embedding`). Notebook 06, an optional extension.

The two functions are checked on fixed inputs (labels, uniform draws, a time embedding, an embedding table):
no UNet and no other task's code runs, so a mistake elsewhere costs nothing here.
"""

from __future__ import annotations

import torch
from torch import nn

from hw3_utils.config import NUM_DIGITS

from .base import EPS32, Task, Tolerance, as_output

FILE = "hw3_utils/guidance.py"
NULL = NUM_DIGITS  # the null label of the kit's conditional configs: their num_classes
DIM = 32  # the time embedding's width in the cases: small, the functions do not depend on it


def inputs(spec: dict) -> dict:
    g = torch.Generator().manual_seed(spec["seed"])
    b = spec["b"]
    y_emb = torch.randint(0, NULL + 1, (b,), generator=g)
    y_emb[0] = NULL  # the null label's own row is used in every case
    return {"y": torch.randint(0, NULL, (b,), generator=g), "u": torch.rand(b, generator=g), "p": spec["p"],
            "temb": torch.randn(b, DIM, generator=g), "y_emb": y_emb,
            "table": torch.randn(NULL + 1, DIM, generator=g)}


def run(case: dict) -> dict:
    from hw3_utils.guidance import add_label_embedding, drop_labels

    dropped = drop_labels(case["y"].clone(), case["p"], NULL, u=case["u"].clone())
    if not isinstance(dropped, torch.Tensor) or dropped.dtype != torch.long:
        what = dropped.dtype if isinstance(dropped, torch.Tensor) else type(dropped).__name__
        raise TypeError(f"drop_labels should return int64 labels (indices into the embedding table), got {what}")
    table = nn.Embedding(NULL + 1, DIM)
    with torch.no_grad():
        table.weight.copy_(case["table"])
    temb = add_label_embedding(case["temb"].clone(), case["y_emb"].clone(), table)
    # the labels as float32 (small integers, exact) so that a known mistake's output can be recognised
    return {"labels": as_output(dropped, "drop_labels").float(), "temb": as_output(temb, "add_label_embedding")}


def explain(case: dict, got: dict, expected: dict) -> list[str]:
    lines = []
    g, e = got["labels"].long(), expected["labels"].long()
    if not torch.equal(g, e):
        bad = (g != e).nonzero().flatten().tolist()
        lines.append(f"drop_labels: {len(bad)} of {len(e)} labels differ (e.g. label {bad[0]}: got {int(g[bad[0]])}, "
                     f"expected {int(e[bad[0]])}, with u = {float(case['u'][bad[0]]):.3f} and p = {case['p']})")
    if not TASK.tolerance.ok(got["temb"], expected["temb"]):
        lines.append("add_label_embedding differs: the time embedding plus the label's row of the table, table(y)")
    return lines


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=6011, b=24, p=0.1), dict(seed=6012, b=12, p=0.75)]


def reference(case: dict) -> dict:  # noqa: F811 (the student kit has reference = None)
    """Both functions in float64: y replaced by the null label where u < p; temb plus the label's row."""
    labels = torch.where(case["u"] < case["p"], torch.full_like(case["y"], NULL), case["y"])
    return {"labels": labels.double(), "temb": case["temb"].double() + case["table"].double()[case["y_emb"]]}


_DROP = "    return torch.where(u < p, torch.full_like(y, null), y)\n"
_ADD = "    return temb + table(y)\n"
MISTAKES = (
    mistake("null-label-zero", FILE, _DROP, "    return torch.where(u < p, torch.zeros_like(y), y)\n",
            "dropped labels become 0, which is digit 0's label: a dropped label becomes the null label (`null`, "
            "10 here), which has a row of its own in the embedding table, so 'no label' never means 'a 0'"),
    mistake("dropout-inverted", FILE, _DROP, "    return torch.where(u < p, y, torch.full_like(y, null))\n",
            "the share p of the labels is kept and the rest dropped: a label becomes the null label where its "
            "draw u < p, so that p of them are dropped"),
    mistake("label-replaces-time", FILE, _ADD, "    return table(y)\n",
            "the label's embedding replaces the time embedding: add it to temb, so that the blocks still know t"),
)
VARIANTS = (
    variant("masked-fill-and-rows", FILE, ((_DROP, "    return y.masked_fill(u < p, null)\n"),
                                           (_ADD, "    return temb + table.weight[y]\n")),
            "masked_fill for the dropout; the table's rows indexed directly instead of calling the module"),
    variant("clone-assign-one-hot", FILE, ((_DROP, "    keep = u >= p\n"
                                                   "    out = y.clone()\n"
                                                   "    out[~keep] = null\n"
                                                   "    return out\n"),
                                           (_ADD, "    one_hot = torch.nn.functional.one_hot(y, table.num_embeddings)\n"
                                                  "    return temb + one_hot.to(temb.dtype) @ table.weight\n")),
            "a cloned tensor assigned through a mask; the embedding as a one-hot matrix product"),
)
### END HIDDEN TESTS

TASK = Task(
    id="6a", name="conditioning", title="label dropout and the label embedding (classifier-free guidance)",
    points=5, file=FILE,
    functions=(("hw3_utils.guidance", "drop_labels"), ("hw3_utils.guidance", "add_label_embedding")),
    notebook="06_guidance",
    hint="drop_labels: where u < p the label becomes `null`, elsewhere it stays y (int64). add_label_embedding: "
         "temb plus the label's row of the embedding table, table(y).",
    outputs={"labels": torch.float32, "temb": torch.float32},
    # Labels are small integers, exact in float32: any difference is a wrong label. temb + table(y) is one float32
    # addition per element, within half an ulp (eps/2 relative) of the float64 sum whatever way the row is looked up;
    # the bound is the other tasks' 1e-4, far from both.
    tolerance=Tolerance(1e-4, 1e-4, f"labels are exact; temb + table(y) (values of size about 1) is one float32 "
                        f"addition, within eps / 2 = {EPS32 / 2:.0e} relatively of the float64 sum; the nearest "
                        "mistake changes a label by 1 or more, or temb by a whole row of the table"),
    public=[dict(seed=6001, b=16, p=0.3), dict(seed=6002, b=16, p=0.9)],
    hidden=HIDDEN, inputs=inputs, run=run, reference=reference, explain=explain,
    shape_note="drop_labels returns one label per input label (B,); add_label_embedding the shape of temb (B, D)",
    near_miss="add_label_embedding: add the table's row as it is, in float32",
    mistakes=MISTAKES, variants=VARIANTS,
)
