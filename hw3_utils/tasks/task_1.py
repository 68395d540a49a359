"""Task 1: the data transform, a grey PIL image -> in_channels identical channels in [-1, 1]."""

from __future__ import annotations

import torch

from .base import EPS32, Task, Tolerance, as_output

FILE = "hw3_utils/data.py"


def inputs(spec: dict) -> dict:
    g = torch.Generator().manual_seed(spec["seed"])
    img = torch.randint(0, 256, (spec["batch"], 28, 28), generator=g, dtype=torch.int64).to(torch.uint8)
    img[:, 0, :] = 0  # the extremes must land on -1 and +1
    img[:, -1, :] = 255
    return {"images": img, "channels": spec["channels"]}


def run(case: dict) -> dict:
    from PIL import Image

    from hw3_utils.data import mnist_transform

    tf = mnist_transform(case["channels"])
    xs = [as_output(tf(Image.fromarray(a.numpy(), "L")), "mnist_transform(...)(image)") for a in case["images"]]
    return {"x": torch.stack(xs)}


def explain(case: dict, got: dict, expected: dict) -> list[str]:
    g = got["x"]
    if g.min() >= 0 and g.max() <= 1:
        return ["your values lie in [0, 1], the expected ones in [-1, 1]"]
    if g.min() < -1 - 1e-6 or g.max() > 1 + 1e-6:
        return [f"values out of range: the expected ones lie in [-1, 1], yours in "
                f"[{float(g.min()):.3g}, {float(g.max()):.3g}]"]
    return []


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=111, batch=4, channels=3)]


def reference(case: dict) -> dict:  # noqa: F811 (the student kit has reference = None)
    """The spec in float64: k / 255 scaled from [0, 1] to [-1, 1], repeated to `channels`."""
    x = case["images"].double().div(255).mul(2).sub(1)
    return {"x": x[:, None].expand(-1, case["channels"], -1, -1).contiguous()}


MISTAKES = (
    mistake("one-channel", FILE,
            "transforms.Grayscale(num_output_channels=in_channels),\n"
            "        transforms.ToTensor(),\n"
            "        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),",
            "transforms.Grayscale(num_output_channels=1),\n"
            "        transforms.ToTensor(),\n"
            "        transforms.Normalize([0.5], [0.5]),",
            "the image keeps a single channel: the grey values must be repeated to in_channels channels"),
    mistake("no-normalize", FILE,
            "        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),\n", "",
            "the values stay in [0, 1] (what ToTensor gives): the kit works in [-1, 1]"),
)
_SOLUTION = ("    return transforms.Compose([\n"
             "        transforms.Grayscale(num_output_channels=in_channels),\n"
             "        transforms.ToTensor(),\n"
             "        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),\n"
             "    ])\n")
VARIANTS = (
    variant("tensor-arithmetic", FILE, (_SOLUTION,
            "    return transforms.Compose([\n"
            "        transforms.PILToTensor(),\n"
            "        transforms.Lambda(lambda x: (x.float() / 127.5 - 1.0).repeat(in_channels, 1, 1)),\n"
            "    ])\n"),
            "uint8 / 127.5 - 1 instead of ToTensor + Normalize, repeat instead of Grayscale(n)"),
    variant("lambda-scale", FILE, ("        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),\n",
                                   "        transforms.Lambda(lambda x: x * 2 - 1),\n"),
            "x * 2 - 1 after ToTensor instead of Normalize(0.5, 0.5)"),
    variant("normalize-tuples", FILE, ("transforms.Normalize([0.5] * in_channels, [0.5] * in_channels)",
                                       "transforms.Normalize(mean=(0.5,) * in_channels, std=(0.5,) * in_channels)"),
            "Normalize with tuples and keywords"),
    variant("totensor-repeat", FILE, (_SOLUTION,
            "    return transforms.Compose([\n"
            "        transforms.ToTensor(),\n"
            "        transforms.Lambda(lambda x: x.repeat(in_channels, 1, 1)),\n"
            "        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),\n"
            "    ])\n"),
            "ToTensor on the grey image, then repeat to in_channels channels instead of Grayscale(n)"),
    variant("convert-image-dtype", FILE, ("        transforms.ToTensor(),\n",
                                          "        transforms.PILToTensor(),\n"
                                          "        transforms.ConvertImageDtype(torch.float32),\n"),
            "PILToTensor + ConvertImageDtype (uint8 / 255) instead of ToTensor"),
)
### END HIDDEN TESTS

TASK = Task(
    id="1", name="mnist_transform", title="data transform to 3-channel [-1, 1]", points=10, file=FILE,
    functions=(("hw3_utils.data", "mnist_transform"),), notebook="01_data_prep",
    hint="Build the torchvision pipeline that turns a grey PIL image into in_channels identical channels "
         "with values in [-1, 1] (see the docstring and notebook 01).",
    outputs={"x": torch.float32},
    tolerance=Tolerance(0.0, 1e-4, f"values k/255 in [-1, 1]: any float32 formula is within a few "
                        f"rounding steps ({2 * EPS32:.1e}); the nearest mistake is a whole grey level off "
                        "(2/255 = 7.8e-3)"),
    public=[dict(seed=101, batch=3, channels=3), dict(seed=102, batch=2, channels=1)],
    hidden=HIDDEN, inputs=inputs, run=run, reference=reference, explain=explain,
    shape_note="one image becomes (in_channels, 28, 28): Grayscale must repeat the grey values to in_channels "
               "channels",
    near_miss="the scaling to [-1, 1]: (x - 0.5) / 0.5 of ToTensor's x in [0, 1]",
    mistakes=MISTAKES, variants=VARIANTS,
)
