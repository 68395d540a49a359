"""Known mistakes, each a source patch of the solution: (task, file, exact old text, new text, feedback).

They serve twice: their outputs on the public cases go into check_data.pt as `variants`, so a
student whose output equals one of them reads that mutant's feedback line; and the tests grade
each mutant to prove it loses points in its own task and in no other (tests/test_grader.py).
Every old text must occur exactly once in the solution (checked by `check_mutants`), so a patch
never silently stops applying when the solution is edited.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass
from pathlib import Path

from . import REPO


@dataclass(frozen=True)
class Mutant:
    name: str
    task: str
    file: str
    old: str
    new: str
    feedback: str


_Q = "return self._at(self.sqrt_alpha_bars, t) * x0 + self._at(self.sqrt_one_minus_alpha_bars, t) * noise"
_UP = ("        h = self.up_block1(torch.cat([self.up1(h), s3], dim=1), temb)\n"
       "        h = self.up_block2(torch.cat([self.up2(h), s2], dim=1), temb)\n"
       "        h = self.up_block3(torch.cat([self.up3(h), s1], dim=1), temb)\n")

MUTANTS: tuple[Mutant, ...] = (
    Mutant("one-channel", "1", "hw3_utils/data.py",
           "transforms.Grayscale(num_output_channels=in_channels),\n"
           "        transforms.ToTensor(),\n"
           "        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),",
           "transforms.Grayscale(num_output_channels=1),\n"
           "        transforms.ToTensor(),\n"
           "        transforms.Normalize([0.5], [0.5]),",
           "the image keeps a single channel: the grey values must be repeated to in_channels channels"),
    Mutant("no-normalize", "1", "hw3_utils/data.py",
           "        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),\n", "",
           "the values stay in [0, 1] (what ToTensor gives): the kit works in [-1, 1]"),
    Mutant("sin-cos-swapped", "2a", "hw3_utils/unet.py",
           "torch.cat([args.sin(), args.cos()], dim=1)", "torch.cat([args.cos(), args.sin()], dim=1)",
           "sines and cosines are swapped: the dim/2 sines come first, then the cosines"),
    Mutant("frequency-exponent", "2a", "hw3_utils/unet.py",
           "torch.arange(half, device=t.device) / (half - 1))", "torch.arange(half, device=t.device) / half)",
           "the frequency exponent is off: w_i = 10000^(-i / (dim/2 - 1)), so the last frequency is exactly 1/10000"),
    Mutant("no-skip", "2b", "hw3_utils/unet.py", _UP,
           _UP.replace(", s3]", ", self.up1(h)]").replace(", s2]", ", self.up2(h)]").replace(", s1]", ", self.up3(h)]"),
           "the up path ignores the skip connections: concatenate each up-sampled map with the output of the "
           "down block of the same resolution"),
    Mutant("block-without-time", "2b", "hw3_utils/unet.py",
           "        h = h + self.time_proj(temb)[:, :, None, None]\n", "",
           "the Block ignores the time embedding: add its projection, broadcast over H and W, between the convs"),
    Mutant("no-sqrt", "3", "hw3_utils/diffusion.py", _Q,
           "return self._at(self.alpha_bars, t) * x0 + self._at(1 - self.alpha_bars, t) * noise",
           "the square roots are missing: the coefficients are sqrt(alpha-bar_t) and sqrt(1 - alpha-bar_t)"),
    Mutant("q-t-off-by-one", "3", "hw3_utils/diffusion.py", _Q, "t = t - 1\n        " + _Q,
           "the timestep is off by one: code index t already holds the paper's t + 1 (see the module docstring)"),
    Mutant("loss-vs-x0", "4", "hw3_utils/diffusion.py",
           "per_image = (pred.float() - noise).pow(2)", "per_image = (pred.float() - x0).pow(2)",
           "the prediction is compared with x0: the network predicts the noise, so L_simple compares it with "
           "the noise that was added"),
    Mutant("noise-at-t0", "5a", "hw3_utils/diffusion.py",
           "return mean + nonzero * var.sqrt() * noise", "return mean + var.sqrt() * noise",
           "noise is added at the last step: at t = 0 (the paper's t = 1) the result is the mean, z = 0"),
    Mutant("beta-for-posterior", "5a", "hw3_utils/diffusion.py",
           'var = self._at(self.posterior_variance if self.variance == "posterior" else self.betas, t)',
           "var = self._at(self.betas, t)",
           "sigma_t^2 = beta_t is used where variance='posterior' asks for the posterior variance beta-tilde_t "
           "(eq. 7)"),
    Mutant("p-t-off-by-one", "5a", "hw3_utils/diffusion.py",
           "beta, alpha = self._at(self.betas, t), self._at(self.alphas, t)",
           "beta, alpha = self._at(self.betas, t - 1), self._at(self.alphas, t - 1)",
           "the schedule is read at t - 1: code index t already is the paper's t + 1"),
    Mutant("oldest-samples", "5b", "hw3_utils/pipeline.py",
           "folder = samples_folder(run)", 'folder = sorted(Path(run).glob("samples_*"))[0]',
           "the FID is computed on an older samples folder: score the samples of the newest checkpoint"),
)

# The functions of each task, as (module, dotted name): what an in-process mutant swaps.
TASK_FUNCTIONS = {
    "1": [("hw3_utils.data", "mnist_transform")],
    "2a": [("hw3_utils.unet", "sinusoidal_embedding")],
    "2b": [("hw3_utils.unet", "Block.forward"), ("hw3_utils.unet", "UNet.forward")],
    "3": [("hw3_utils.diffusion", "DDPM.q_sample")],
    "4": [("hw3_utils.diffusion", "DDPM.loss")],
    "5a": [("hw3_utils.diffusion", "DDPM.p_sample")],
    "5b": [("hw3_utils.pipeline", "score_run")],
}


def check_mutants(root: Path = REPO) -> list[str]:
    """Problems with the mutants against the solution at `root` (empty when all apply exactly once)."""
    problems = []
    names = set()
    for m in MUTANTS:
        if m.name in names:
            problems.append(f"{m.name}: duplicate name")
        names.add(m.name)
        count = (root / m.file).read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: its old text occurs {count} times in {m.file} (must be exactly once)")
    return problems


def mutated_source(m: Mutant, root: Path = REPO) -> str:
    text = (root / m.file).read_text()
    if text.count(m.old) != 1:
        raise ValueError(f"mutant {m.name}: old text occurs {text.count(m.old)} times in {m.file}")
    return text.replace(m.old, m.new)


def apply_to_tree(m: Mutant, tree: Path, root: Path = REPO) -> None:
    """Write the mutated file into `tree` (a copy of the kit)."""
    (Path(tree) / m.file).write_text(mutated_source(m, root))


def _resolve(obj, dotted: str):
    *owners, name = dotted.split(".")
    for part in owners:
        obj = getattr(obj, part)
    return obj, name


@contextlib.contextmanager
def applied_in_process(m: Mutant, root: Path = REPO):
    """Swap the task's functions of the live (solution) `hw3_utils` for the mutant's, then restore.

    The mutated module is executed in a scratch namespace; its functions are rebuilt with the live
    module's globals, so everything they call (including the checks' isolation patches) is live.
    """
    import importlib

    swaps = []
    scratch: dict[str, dict] = {}
    try:
        for modname, dotted in TASK_FUNCTIONS[m.task]:
            live = importlib.import_module(modname)
            if modname not in scratch:
                ns = {"__name__": f"{modname}__mutant", "__package__": "hw3_utils",
                      "__file__": str(root / m.file)}
                source = mutated_source(m, root) if Path(live.__file__).resolve() == (root / m.file).resolve() \
                    else Path(live.__file__).read_text()
                exec(compile(source, str(root / m.file), "exec"), ns)
                scratch[modname] = ns
            src_owner, name = _resolve(types.SimpleNamespace(**scratch[modname]), dotted)
            fn = getattr(src_owner, name)
            rebuilt = types.FunctionType(fn.__code__, vars(live), fn.__name__, fn.__defaults__, fn.__closure__)
            rebuilt.__kwdefaults__ = fn.__kwdefaults__
            owner, name = _resolve(live, dotted)
            swaps.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
            setattr(owner, name, rebuilt)
        yield
    finally:
        for owner, name, old in reversed(swaps):
            setattr(owner, name, old)
