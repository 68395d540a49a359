"""Checks for the assignment's tasks: fixed inputs, the kit's expected outputs, helpful feedback.

In a notebook: `from hw3_utils.checks import check; check("3")` prints
`PASS  Task 3 · q_sample · 15/15 points` or raises `TaskCheckFailed` saying what differs.
From the shell: `python -m hw3_utils.checks [TASK ...]` (exit status 1 when a check fails).

Each task is checked on its own: where a task builds on another one (the UNet uses the time
embedding, the loss uses q_sample), the other task's function is replaced during the check by
reference values carried in the case data, so a mistake in one task costs points only there.
The expected outputs live in `check_data.pt` (tensors only, read with weights_only=True).

`python -m hw3_utils.checks --run --cases CASES.pt --out DIR [--tasks ...]` is the grader's
entry: it only computes outputs (DIR/<task>.pt); the comparison happens in the grader.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent
CHECK_DATA = PACKAGE_DIR / "check_data.pt"
RTOL, ATOL = 1e-4, 1e-5
T_STEPS = 1000  # the DDPM of every diffusion case: T = 1000 linear betas 1e-4 .. 2e-2


@dataclass(frozen=True)
class Task:
    id: str
    number: str  # the label students see: "Task 3"
    name: str  # short name: "Task 3 (q_sample)"
    title: str
    points: int
    file: str
    function: str
    notebook: str
    hint: str

    @property
    def label(self) -> str:
        return f"Task {self.number} ({self.name})"


TASKS: dict[str, Task] = {t.id: t for t in (
    Task("1", "1", "mnist_transform", "data transform to 3-channel [-1, 1]", 10, "hw3_utils/data.py",
         "mnist_transform", "01_data_prep",
         "Build the torchvision pipeline that turns a grey PIL image into in_channels identical channels "
         "with values in [-1, 1] (see the docstring and notebook 01)."),
    Task("2a", "2a", "sinusoidal_embedding", "sinusoidal time embedding", 10, "hw3_utils/unet.py",
         "sinusoidal_embedding", "02_unet",
         "Follow the docstring: dim/2 frequencies w_i = 10000^(-i / (dim/2 - 1)), the sines first, then "
         "the cosines, as float32."),
    Task("2b", "2b", "UNet forward", "time-conditioned Block and UNet forward with skip concatenations", 20,
         "hw3_utils/unet.py", "Block.forward, UNet.forward", "02_unet",
         "Block: conv-norm-ReLU, add the projected time embedding, conv-norm-ReLU. UNet: embed t, go down "
         "with max-pooling, and concatenate each up-sampled map with the matching down block's output."),
    Task("3", "3", "q_sample", "q_sample", 15, "hw3_utils/diffusion.py", "DDPM.q_sample",
         "03_forward_diffusion",
         "Eq. 4 of the DDPM paper: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) noise, with the "
         "buffers of this object indexed at t (see `_at`)."),
    Task("4", "4", "loss", "training loss L_simple", 15, "hw3_utils/diffusion.py", "DDPM.loss",
         "04_training",
         "L_simple (eq. 14): noise x0 to x_t with q_sample, let the model predict the noise, and take the "
         "squared error of each image averaged over its pixels (per_image, shape (B,))."),
    Task("5a", "5a", "p_sample", "one reverse step p_sample", 20, "hw3_utils/diffusion.py", "DDPM.p_sample",
         "05_sampling_and_fid",
         "Algorithm 2, lines 3-4, with the mean of eq. 11; sigma_t^2 is the posterior variance or beta_t as "
         "self.variance says, use `noise` when it is given, and add no noise at t = 0."),
    Task("5b", "5b", "score_run", "FID of the generated folder", 10, "hw3_utils/pipeline.py", "score_run",
         "05_sampling_and_fid",
         "Compute the statistics of the samples of the run's newest checkpoint (`samples_folder`) and their "
         "FID against the train and test references (`fid.reference_npz`)."),
)}

TASK_FILES = sorted({t.file for t in TASKS.values()})


class TaskCheckFailed(AssertionError):
    """A task's output differs from the expected one (the message says how)."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback: the student needs the message, not
        # the frames of this module (the cause, if any, is in the message: file, line, error)
        return [f"\x1b[0;31mTaskCheckFailed\x1b[0m: {self}"]


def _task(task_id) -> Task:
    key = str(task_id)
    if key not in TASKS:
        raise KeyError(f"unknown task {task_id!r}; the tasks are {', '.join(TASKS)}")
    return TASKS[key]


# case inputs ------------------------------------------------------------------------------------
# A spec names the seed and sizes of one case; the inputs are a pure function of it.
_PUBLIC_SPECS: dict[str, list[dict]] = {
    "1": [dict(seed=101, batch=3, channels=3), dict(seed=102, batch=2, channels=1)],
    "2a": [dict(t=[0, 1, 10, 999], dim=256), dict(t=[0, 5, 500], dim=16)],
    "2b": [dict(seed=201, t=[0, 999]), dict(seed=202, t=[1, 500, 10])],
    "3": [dict(seed=301, t=[0, 999, 1, 500]), dict(seed=302, t=[250, 250, 0])],
    "4": [dict(seed=401, t=[0, 999, 10], weights=False), dict(seed=402, t=[1, 2, 3, 900], weights=True)],
    "5a": [dict(seed=501, t=[0, 999, 1, 500], variance="posterior"),
           dict(seed=501, t=[0, 999, 1, 500], variance="beta")],
    "5b": [dict(seed=601, samples=6, refs=8)],
}


def _hidden_specs() -> dict[str, list[dict]]:
    specs: dict[str, list[dict]] = {k: [] for k in TASKS}
    ### BEGIN HIDDEN TESTS
    specs["1"] = [dict(seed=111, batch=4, channels=3)]
    specs["2a"] = [dict(t=[3, 250, 998, 0], dim=64), dict(t=[7, 1], dim=8)]
    specs["2b"] = [dict(seed=211, t=[7, 123, 998])]
    specs["3"] = [dict(seed=311, t=[998, 2, 750, 0, 42])]
    specs["4"] = [dict(seed=411, t=[0, 500], weights=False), dict(seed=412, t=[999, 5, 77], weights=True)]
    specs["5a"] = [dict(seed=511, t=[0, 300, 998], variance="beta"),
                   dict(seed=512, t=[2, 0, 700], variance="posterior")]
    specs["5b"] = [dict(seed=611, samples=5, refs=7)]
    ### END HIDDEN TESTS
    return specs


def tiny_unet_config(seed: int = 0):
    """The tiny UNet of the 2b cases: widths 8/16/32, bottleneck 64, 4 groups, 32-d time embedding."""
    from .config import get_config

    return get_config("smoke", verbose=False, model_channels=8, groups=4, time_emb_dim=32, seed=seed)


def _inputs(task_id: str, spec: dict) -> dict:
    """The inputs of one case (tensors and small values), a pure function of (task, spec)."""
    g = torch.Generator().manual_seed(spec.get("seed", 0))
    case: dict = {"task": task_id, "spec": dict(spec)}
    if task_id == "1":
        b = spec["batch"]
        img = torch.randint(0, 256, (b, 28, 28), generator=g, dtype=torch.int64).to(torch.uint8)
        img[:, 0, :] = 0  # the extremes must land on -1 and +1
        img[:, -1, :] = 255
        case.update(images=img, channels=spec["channels"])
    elif task_id == "2a":
        case.update(t=torch.tensor(spec["t"], dtype=torch.long), dim=spec["dim"])
    elif task_id == "2b":
        b, cfg = len(spec["t"]), tiny_unet_config()
        case.update(x=torch.randn(b, 3, 28, 28, generator=g), t=torch.tensor(spec["t"], dtype=torch.long),
                    h=torch.randn(b, cfg.model_channels * cfg.channel_mult[1], 7, 7, generator=g),
                    temb=torch.randn(b, cfg.time_emb_dim, generator=g))
    elif task_id in ("3", "4"):
        b = len(spec["t"])
        # one channel keeps check_data.pt small; the diffusion code works for any (B, C, H, W)
        case.update(x0=torch.rand(b, 1, 28, 28, generator=g) * 2 - 1, t=torch.tensor(spec["t"], dtype=torch.long),
                    noise=torch.randn(b, 1, 28, 28, generator=g))
        if spec.get("weights"):
            w = torch.ones(b)
            w[-1] = 0  # a padded image, as the fast path makes them
            case["weights"] = w / w.sum()
    elif task_id == "5a":
        b = len(spec["t"])
        case.update(x_t=torch.randn(b, 1, 28, 28, generator=g), t=torch.tensor(spec["t"], dtype=torch.long),
                    noise=torch.randn(b, 1, 28, 28, generator=g), variance=spec["variance"])
    elif task_id == "5b":
        n, m = spec["samples"], spec["refs"]

        def imgs(k, lo, hi):
            grey = torch.randint(lo, hi, (k, 28, 28), generator=g, dtype=torch.int64).to(torch.uint8)
            return grey[..., None].expand(-1, -1, -1, 3).contiguous()

        case.update(old=imgs(n, 0, 256), new=imgs(n, 40, 200), ref_train=imgs(m, 0, 180),
                    ref_test=imgs(m, 60, 256))
    else:
        raise KeyError(task_id)
    return case


def load_check_data(path=None) -> dict:
    path = Path(path or CHECK_DATA)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it ships with the kit (hw3_utils/check_data.pt)")
    return torch.load(path, map_location="cpu", weights_only=True)


def public_inputs(task_id) -> list[dict]:
    """The public cases' inputs, without the reference values some isolation needs."""
    tid = _task(task_id).id
    return [_inputs(tid, s) for s in _PUBLIC_SPECS[tid]]


def public_cases(task_id, data: dict | None = None) -> list[dict]:
    """The public cases of a task: inputs built from fixed seeds plus the reference values
    (`aux`: the embedding table of 2b, the x_t table of 4) stored in check_data.pt."""
    tid = _task(task_id).id
    data = load_check_data() if data is None else data
    cases = public_inputs(tid)
    for case, aux in zip(cases, data["aux"][tid]):
        case.update(aux)
    return cases


def grading_input_specs(task_id) -> list[dict]:
    tid = _task(task_id).id
    return list(_PUBLIC_SPECS[tid]) + list(_hidden_specs()[tid])


def grading_inputs(task_id) -> list[dict]:
    """Public cases' inputs followed by the hidden ones (the student kit has only the public ones)."""
    tid = _task(task_id).id
    return [_inputs(tid, s) for s in grading_input_specs(tid)]


def grading_cases(task_id, data: dict | None = None) -> list[dict]:
    """Public plus hidden cases with their reference values, computed by this kit's own code.

    Only meaningful with the instructor's kit (the grader builds these from the solution)."""
    tid = _task(task_id).id
    return [{**c, **reference_aux(tid, c)} for c in grading_inputs(tid)]


def reference_aux(task_id: str, case: dict) -> dict:
    """The reference values a case carries for isolation, computed with THIS kit's functions.

    Called by whoever builds case data from the solution (instructor side): the embedding table
    for 2b (sinusoidal_embedding of the case's timesteps) and the x_t table for 4 (q_sample).
    """
    if task_id == "2b":
        from .unet import sinusoidal_embedding

        ts = torch.unique(case["t"])
        return {"emb_t": ts, "emb": sinusoidal_embedding(ts, tiny_unet_config().time_emb_dim).detach().clone()}
    if task_id == "4":
        from .diffusion import DDPM

        with torch.no_grad():
            return {"xt": DDPM(T_STEPS).q_sample(case["x0"], case["t"], case["noise"]).detach().clone()}
    return {}


# running the student's code ------------------------------------------------------------------
@contextlib.contextmanager
def _replaced(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


@contextlib.contextmanager
def _replace_everywhere(original, replacement, modules):
    """Swap every module-level reference to `original` (e.g. `from .fid import folder_stats`)."""
    swapped = []
    for mod in modules:
        for name, value in list(vars(mod).items()):
            if value is original:
                setattr(mod, name, replacement)
                swapped.append((mod, name))
    try:
        yield
    finally:
        for mod, name in swapped:
            setattr(mod, name, original)


def _tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} should return a torch.Tensor, got {type(value).__name__}")
    return value.detach().cpu().clone().contiguous()


def _stub_eps_loss(x, t):
    """Fixed noise predictor for task 4 (not the UNet): a closed form of x_t and t."""
    return 0.5 * x + 1e-3 * t.float().view(-1, 1, 1, 1)


def _stub_eps_sample(x, t):
    """Fixed noise predictor for task 5a (not the UNet)."""
    return 0.1 * x + 1e-3 * t.float().view(-1, 1, 1, 1)


def _cheap_stats(arr):
    """A cheap stand-in for Inception statistics: mean and covariance of 4x4-pooled grey pixels."""
    import numpy as np

    x = torch.as_tensor(np.asarray(arr)).double()  # (N, 28, 28, 3)
    grey = x.mean(-1)[:, None]
    feats = torch.nn.functional.avg_pool2d(grey, 4).flatten(1).numpy()  # (N, 49)
    return feats.mean(0), np.cov(feats, rowvar=False)


def _write_pngs(arr: torch.Tensor, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, a in enumerate(arr.numpy()):
        Image.fromarray(a, "RGB").save(folder / f"{k:05d}.png")


def _run_5b(case: dict) -> dict:
    import numpy as np
    from PIL import Image

    import hw3_utils
    from hw3_utils import fid, pipeline
    from hw3_utils.config import get_config

    n = case["new"].shape[0]
    cfg = get_config("smoke", verbose=False, num_samples=n)
    with tempfile.TemporaryDirectory(prefix="hw3check-") as tmp:
        run, refdir = Path(tmp) / "run", Path(tmp) / "refs"
        (run / "checkpoints").mkdir(parents=True)
        refdir.mkdir()
        for epoch, (step, arr) in enumerate(((10, case["old"]), (20, case["new"])), start=1):
            torch.save({"model": {}, "ema": {}, "config": cfg.to_dict(), "epoch": epoch, "step": step},
                       run / "checkpoints" / f"step_{step:08d}.pt")
            _write_pngs(arr, run / f"samples_step_{step:08d}")

        def folder_stats(folder, device=None, batch_size=50, expected=None, progress=True):
            files = fid.check_folder(folder, expected)
            return _cheap_stats(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))

        def reference_npz(cfg, split="train", device=None, data_root=None, cache_dir=None, progress=True):
            if split not in ("train", "test"):
                raise fid.FIDError(f"split must be 'train' or 'test', got {split!r}")
            path = refdir / f"mnist_{split}.npz"
            if not path.exists():
                mu, sigma = _cheap_stats(case[f"ref_{split}"])
                np.savez(path, mu=mu, sigma=sigma)
            return path

        def reference_stats(cfg, cache_dir=None, data_root=None, device=None, split="train", progress=True):
            return refdir / f"mnist_{split}", reference_npz(cfg, split)

        mods = [fid, pipeline, hw3_utils]
        with contextlib.ExitStack() as stack:
            for orig, new in ((fid.folder_stats, folder_stats), (fid.reference_npz, reference_npz),
                              (fid.reference_stats, reference_stats)):
                stack.enter_context(_replace_everywhere(orig, new, mods))
            scores = pipeline.score_run(run, cfg, device=None)
    if not isinstance(scores, dict) or not {"train", "test"} <= set(scores):
        raise TypeError(f"score_run should return a dict with keys 'train' and 'test', got {scores!r:.200}")
    return {"fid": torch.tensor([float(scores["train"]), float(scores["test"])], dtype=torch.float64)}


def task_outputs(task_id, case: dict) -> dict[str, torch.Tensor]:
    """Run the kit's code (the student's, in the student kit) for one task on one case."""
    tid = _task(task_id).id
    torch.manual_seed(0)
    with torch.no_grad():
        if tid == "1":
            from PIL import Image

            from hw3_utils.data import mnist_transform

            tf = mnist_transform(case["channels"])
            xs = [_tensor(tf(Image.fromarray(a.numpy(), "L")), "mnist_transform(...)(image)") for a in case["images"]]
            return {"x": torch.stack(xs)}
        if tid == "2a":
            from hw3_utils.unet import sinusoidal_embedding

            return {"emb": _tensor(sinusoidal_embedding(case["t"], case["dim"]), "sinusoidal_embedding")}
        if tid == "2b":
            from hw3_utils import unet
            from hw3_utils.train import build_model

            own, table_t, table = unet.sinusoidal_embedding, case["emb_t"], case["emb"]

            def table_embedding(t, dim):  # reference values from the case data, not code
                if dim == table.shape[1] and t.ndim == 1 and bool(torch.isin(t.long(), table_t).all()):
                    return table[torch.searchsorted(table_t, t.long())]
                return own(t, dim)

            model = build_model(tiny_unet_config(), "cpu").eval()
            with _replaced(unet, "sinusoidal_embedding", table_embedding):
                block = _tensor(model.down3(case["h"], case["temb"]), "Block.forward")
                out = _tensor(model(case["x"], case["t"]), "UNet.forward")
            return {"block": block, "out": out}
        if tid == "3":
            from hw3_utils.diffusion import DDPM

            return {"xt": _tensor(DDPM(T_STEPS).q_sample(case["x0"], case["t"], case["noise"]), "q_sample")}
        if tid == "4":
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
            loss = ddpm.loss(_stub_eps_loss, case["x0"], t=case["t"].clone(), noise=case["noise"].clone(),
                             weights=case.get("weights"))
            return {"loss": _tensor(loss, "loss")}
        if tid == "5a":
            from hw3_utils.diffusion import DDPM

            ddpm = DDPM(T_STEPS, variance=case["variance"])
            out = ddpm.p_sample(_stub_eps_sample, case["x_t"].clone(), case["t"].clone(), noise=case["noise"].clone())
            return {"x_prev": _tensor(out, "p_sample")}
        if tid == "5b":
            return _run_5b(case)
    raise KeyError(tid)


# comparing ------------------------------------------------------------------------------------
_SHAPE_NOTES = {
    "1": "one image becomes (in_channels, 28, 28): Grayscale must repeat the grey values to in_channels channels",
    "2a": "the embedding of B timesteps is (B, dim): dim/2 sines followed by dim/2 cosines",
    "2b": "the UNet returns the same shape as its input x, a Block (B, c_out, H, W)",
    "3": "x_t has the shape of x0",
    "4": "the loss is a scalar (a 0-d tensor)",
    "5a": "x_{t-1} has the shape of x_t",
    "5b": "",
}
_ROW_KEYS = {"2a": ("emb", "t"), "3": ("xt", "t"), "5a": ("x_prev", "t"), "2b": ("out", "t")}


def fingerprint(x: torch.Tensor) -> torch.Tensor:
    """A small float64 summary of a tensor (shape, 64 strided values, sum, sum of squares), to
    recognise a known mistake's output without shipping it whole."""
    flat = x.detach().double().flatten()
    step = max(1, flat.numel() // 64)
    return torch.cat([torch.tensor([float(flat.numel()), float(x.ndim)], dtype=torch.float64),
                      torch.tensor([float(d) for d in x.shape], dtype=torch.float64),
                      flat[::step][:64], flat.sum()[None], flat.pow(2).sum()[None]])


def _same_fingerprint(x, fp: torch.Tensor) -> bool:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return False
    mine = fingerprint(x)
    return mine.shape == fp.shape and bool(torch.allclose(mine, fp, rtol=1e-4, atol=1e-4))


def matches_variant(outputs, variant: dict) -> bool:
    """True when the outputs on the public cases (the first ones) equal a known mistake's."""
    fps = variant["fingerprints"]
    if not fps or len(outputs) < len(fps):
        return False
    return all(isinstance(o, dict) and set(o) == set(f) and all(_same_fingerprint(o[k], f[k]) for k in f)
               for o, f in zip(outputs, fps))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=RTOL, atol=ATOL))


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ")"


def _rows_message(task_id: str, fails: list[tuple[dict, torch.Tensor, torch.Tensor]]) -> str:
    """Which rows (images) differ, by their timestep, with a note for t = 0 and t = T-1."""
    key, tkey = _ROW_KEYS[task_id]
    bad_t, good_t, variances = set(), set(), set()
    for case, got, exp in fails:
        ts = case[tkey].tolist()
        for i, t in enumerate(ts):
            ok = _close(got[key][i], exp[key][i])
            (good_t if ok else bad_t).add(int(t))
            if not ok and "variance" in case:
                variances.add(case["variance"])
    if not bad_t:
        return ""
    msg = f"rows with t = {', '.join(str(t) for t in sorted(bad_t))} differ"
    if good_t - bad_t:
        msg += f" (rows with t = {', '.join(str(t) for t in sorted(good_t - bad_t)[:6])} match)"
    notes = []
    if task_id == "5a" and bad_t == {0}:
        notes.append("at the last step (t = 0) no noise is added: x_{t-1} is the mean")
    elif task_id == "5a" and 0 not in bad_t and variances and len(variances) == 1:
        notes.append(f"only with variance='{variances.pop()}': check which sigma_t^2 you use")
    if task_id in ("3", "5a") and bad_t and 0 in bad_t and len(bad_t) == 1 and task_id == "3":
        notes.append("t = 0 is the paper's t = 1: alpha-bar at index 0 is alpha_1, not 1")
    if task_id == "2a" and bad_t == {0} | bad_t and 0 in bad_t and len(bad_t) == 1:
        notes.append("at t = 0 every sine is 0 and every cosine is 1")
    return msg + ("; " + "; ".join(notes) if notes else "")


def compare(task_id, outputs, expected, variants=(), cases=None) -> tuple[bool, str]:
    """(ok, message): outputs vs expected (lists over cases of {name: tensor}), with feedback.

    `variants`: [{"feedback": str, "outputs": [...]}], outputs of known mistakes on the first
    cases (the public ones); matching one of them names the mistake.
    """
    tid = _task(task_id).id
    if not isinstance(outputs, list) or len(outputs) != len(expected):
        return False, f"expected outputs for {len(expected)} cases, got {type(outputs).__name__}"
    fails, problem = [], None
    for k, (got, exp) in enumerate(zip(outputs, expected)):
        if not isinstance(got, dict) or set(got) != set(exp):
            return False, f"case {k + 1}: malformed outputs"
        for name, e in exp.items():
            g = got[name]
            if not isinstance(g, torch.Tensor):
                return False, f"case {k + 1}: {name} is not a tensor"
            if problem is None and tuple(g.shape) != tuple(e.shape):
                note = _SHAPE_NOTES.get(tid, "")
                problem = (f"wrong shape: expected {_fmt_shape(e.shape)}, got {_fmt_shape(g.shape)}"
                           + (f" ({note})" if note else ""))
            elif problem is None and g.dtype != e.dtype:
                problem = f"wrong dtype: expected {e.dtype}, got {g.dtype}"
            elif problem is None and g.is_floating_point() and not bool(torch.isfinite(g).all()):
                problem = "the output contains NaN or inf values"
        if problem is None and not all(_close(got[n], exp[n]) for n in exp):
            fails.append((k, got, exp))
    if problem is None and not fails:
        return True, "all cases match"
    for var in variants or ():  # a known mistake?
        if matches_variant(outputs, var):
            return False, f"your output equals the output of a known mistake: {var['feedback']}"
    if problem is not None:
        return False, problem
    k, got, exp = fails[0]
    parts = [f"{len(fails)} of {len(expected)} cases differ"]
    if tid == "1":
        g = got["x"]
        if g.min() >= 0 and g.max() <= 1:
            parts.append("your values lie in [0, 1], the expected ones in [-1, 1]")
        elif g.min() < -1 - 1e-6 or g.max() > 1 + 1e-6:
            parts.append(f"values out of range: the expected ones lie in [-1, 1], yours in "
                         f"[{float(g.min()):.3g}, {float(g.max()):.3g}]")
    if tid == "2b":
        if not _close(got["block"], exp["block"]):
            parts.append("Block.forward differs (conv1-norm1-ReLU, + time_proj(temb) broadcast over H and W, "
                         "conv2-norm2-ReLU)")
        else:
            parts.append("Block.forward matches, the UNet output differs: check the time MLP, the max-pooling "
                         "between down blocks and the skip concatenations")
    if tid == "4":
        g, e = float(got["loss"]), float(exp["loss"])
        ratio = g / e if e else float("inf")
        pixels = cases[k]["x0"][0].numel() if cases is not None else 28 * 28
        if abs(ratio - pixels) < 1e-3 * pixels:
            parts.append("your loss is C*H*W times the expected one: average over the pixels, do not sum")
        else:
            parts.append(f"got {g:.6g}, expected {e:.6g}")
    if tid == "5b":
        parts.append("the FIDs differ: are you scoring the samples of the newest checkpoint?")
    if cases is not None and tid in _ROW_KEYS:
        rows = _rows_message(tid, [(cases[i], o, e) for i, o, e in fails])
        if rows:
            parts.append(rows)
    elif tid in ("3", "5a", "2a", "2b"):
        exp_t = exp[_ROW_KEYS[tid][0]]
        diff = (got[_ROW_KEYS[tid][0]].double() - exp_t.double()).abs().flatten(1).amax(1)
        parts.append(f"largest difference per row: {[round(float(d), 5) for d in diff]}")
    return False, "; ".join(parts)


# reporting ------------------------------------------------------------------------------------
def error_location(err: BaseException) -> str:
    """'path:line' of the deepest frame of the error inside the kit's task files ('' if none)."""
    loc = ""
    for frame in traceback.extract_tb(err.__traceback__):
        path = Path(frame.filename)
        try:
            rel = path.resolve().relative_to(PACKAGE_DIR.parent)
        except ValueError:
            continue
        if path.name != "checks.py":
            loc = f"{rel.as_posix()}:{frame.lineno}"
    if not loc and isinstance(err, SyntaxError) and err.filename:
        loc = f"{err.filename}:{err.lineno}"
    return loc


def describe_error(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0][:400] if str(err).strip() else ""
    loc = error_location(err)
    return f"{type(err).__name__}: {msg}" + (f" ({loc})" if loc else "")


def _not_implemented(task: Task, err: BaseException) -> str:
    own = str(err).startswith(f"Task {task.number} ")
    where = "" if own else f" (raised by: {describe_error(err)})"
    return (f"{task.label}: not implemented yet{where}. {task.hint} "
            f"Then re-run the check cell in notebook {task.notebook[:2]} "
            f"(or `python -m hw3_utils.checks {task.number}`).")


def check(task_id, data: dict | None = None, verbose: bool = True) -> None:
    """Run one task's public checks; print PASS or raise TaskCheckFailed explaining what differs.

    Returns None, so a notebook's check cell shows only the PASS line (or the failure).
    """
    task = _task(task_id)
    data = load_check_data() if data is None else data
    cases = public_cases(task.id, data)
    try:
        outputs = [task_outputs(task.id, c) for c in cases]
    except NotImplementedError as err:
        raise TaskCheckFailed(_not_implemented(task, err)) from None
    except Exception as err:
        raise TaskCheckFailed(f"{task.label}: your code raised {describe_error(err)}. {task.hint}") from err
    ok, msg = compare(task.id, outputs, data["expected"][task.id], data["variants"].get(task.id, ()), cases)
    if not ok:
        raise TaskCheckFailed(f"{task.label}: {msg}. Hint: {task.hint}")
    if verbose:
        print(f"PASS  Task {task.number} · {task.name} · {task.points}/{task.points} points")


def check_all(task_ids=None) -> dict[str, bool]:
    """Run several checks, printing a line for each; returns {task: passed}."""
    results = {}
    for tid in task_ids or TASKS:
        try:
            check(tid)
            results[tid] = True
        except TaskCheckFailed as err:
            task = _task(tid)
            print(f"FAIL  Task {task.number} · {task.name} · 0/{task.points} points\n      {err}")
            results[tid] = False
    return results


# the grader's runner ---------------------------------------------------------------------------
def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run_cases(cases_path, out_dir, tasks=None) -> None:
    """For each task in order: DIR/<task>.started, then DIR/<task>.pt with {"outputs": [...]} or {"error": str}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = torch.load(cases_path, map_location="cpu", weights_only=True)
    for tid in tasks or [t for t in TASKS if t in cases]:
        (out / f"{tid}.started").write_text("")
        try:
            payload = {"outputs": [task_outputs(tid, c) for c in cases[tid]]}
        except NotImplementedError as err:
            payload = {"error": _not_implemented(TASKS[tid], err)}
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # SystemExit too: one task's failure must not end the run
            payload = {"error": describe_error(err)}
        try:
            _atomic_save(payload, out / f"{tid}.pt")
        except Exception as err:
            _atomic_save({"error": f"outputs could not be saved: {describe_error(err)}"}, out / f"{tid}.pt")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw3_utils.checks", description="Check the assignment's tasks.")
    p.add_argument("tasks", nargs="*", help=f"task ids ({', '.join(TASKS)}); all when none")
    p.add_argument("--run", action="store_true", help="grader mode: compute outputs for --cases into --out")
    p.add_argument("--cases")
    p.add_argument("--out")
    p.add_argument("--tasks", dest="task_list", nargs="*")
    args = p.parse_args(argv)
    if args.run:
        if not args.cases or not args.out:
            p.error("--run needs --cases and --out")
        torch.set_num_threads(1)
        run_cases(args.cases, args.out, args.task_list or None)
        return 0
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; the tasks are {', '.join(TASKS)}")
    results = check_all(args.tasks or None)
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
