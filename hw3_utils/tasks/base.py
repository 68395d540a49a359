"""What a task is: the `Task` record every task module fills in, its `Tolerance`, and `Patch`.

A task module (`task_<id>.py` beside this file) holds everything about one task: its cases (public,
and hidden ones the student kit does not have), how to run the student's code on a case, the
float64 reference, how to explain a difference, its tolerance with the reason for it, and the source
patches that the instructor's tests grade: known mistakes (which must lose exactly this task's
points) and correct variants written differently from the solution (which must get full marks).
The hidden cases, the references and the patches sit in `### BEGIN HIDDEN TESTS` regions, so the
student release carries none of them (they quote or restate the solution).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

EPS32 = float(torch.finfo(torch.float32).eps)  # 2^-23 = 1.19e-7: one rounding of a float32 value near 1
T_STEPS = 1000  # the DDPM of every diffusion case: T = 1000 linear betas 1e-4 .. 2e-2


@dataclass(frozen=True)
class Tolerance:
    """|got - expected| <= atol + rtol * |expected|, elementwise, against a float64 reference.

    `why` is the error analysis in one sentence: what float32 rounding any correct formula can
    produce, and how far the nearest known mistake lies beyond it (docs/instructors.md, "Tolerances").
    """

    rtol: float
    atol: float
    why: str

    def bound(self, expected: torch.Tensor) -> torch.Tensor:
        return self.atol + self.rtol * expected.double().abs()

    def ok(self, got: torch.Tensor, expected: torch.Tensor) -> bool:
        return got.shape == expected.shape and bool(
            ((got.double() - expected.double()).abs() <= self.bound(expected)).all())


@dataclass(frozen=True)
class Patch:
    """A source patch of the solution: each `old` text occurs exactly once in `file`, and becomes `new`.

    A known mistake has `feedback` (what a student whose output equals it reads); a correct variant
    has `correct=True` and `why` (what it does differently).
    """

    name: str
    file: str
    edits: tuple[tuple[str, str], ...]
    feedback: str = ""
    correct: bool = False
    why: str = ""


def mistake(name: str, file: str, old: str, new: str, feedback: str) -> Patch:
    return Patch(name, file, ((old, new),), feedback=feedback)


def variant(name: str, file: str, edits, why: str) -> Patch:
    edits = (edits,) if isinstance(edits[0], str) else tuple(edits)
    return Patch(name, file, edits, correct=True, why=why)


@dataclass
class Task:
    """One task of the assignment. See the module docstring; each task module defines `TASK`."""

    id: str
    name: str  # short name: "Task 3 (q_sample)"
    title: str
    points: int
    file: str  # where the student writes it
    functions: tuple[tuple[str, str], ...]  # (module, dotted name): what it covers, swapped by patches
    notebook: str
    hint: str
    outputs: dict[str, torch.dtype]  # each output and the dtype the student's code must give
    tolerance: Tolerance
    public: list[dict]  # case specs: the inputs are a pure function of a spec (`inputs`)
    inputs: Callable[[dict], dict]
    run: Callable[[dict], dict]  # the student's code on one case -> {output: tensor}
    hidden: list[dict] = field(default_factory=list)
    aux: Callable[[dict], dict] | None = None  # reference values the isolation needs (instructor side)
    reference: Callable[[dict], dict] | None = None  # float64 expected outputs (instructor side)
    explain: Callable[[dict, dict, dict], list[str]] | None = None  # (case, got, expected) -> lines
    rows: tuple[str, str] | None = None  # (output, case key) when output rows are indexed by timestep
    row_notes: Callable[[set, set, set], list[str]] | None = None  # (bad t, good t, variances) -> lines
    shape_note: str = ""
    near_miss: str = ""  # where float32 rounding hides, for outputs that are close but not close enough
    mistakes: tuple[Patch, ...] = ()
    variants: tuple[Patch, ...] = ()

    @property
    def number(self) -> str:  # the label students see: "Task 3"
        return self.id

    @property
    def label(self) -> str:
        return f"Task {self.number} ({self.name})"

    @property
    def function(self) -> str:
        return ", ".join(dotted for _, dotted in self.functions)


# helpers for the tasks' `run` functions --------------------------------------------------------
def as_output(value, what: str) -> torch.Tensor:
    """The student's return value as a detached CPU tensor, or a TypeError naming the function."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} should return a torch.Tensor, got {type(value).__name__}")
    return value.detach().cpu().clone().contiguous()


@contextlib.contextmanager
def replaced(owner, name: str, value):
    """Set owner.name = value for the duration (e.g. a task's dependency replaced by reference values)."""
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)
