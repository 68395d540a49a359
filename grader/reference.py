"""Expected outputs, computed in this (the instructor's) process from the solution.

- `build_check_data()` -> hw3_utils/check_data.pt, shipped to students: for the public cases the
  reference values the isolation needs (`aux`), the expected outputs and the mutants' outputs.
- `build_reference()` -> what the grader compares with: public + hidden cases (inputs and aux)
  and the expected outputs. Kept in memory, or saved for the Gradescope bundle, which must not
  carry the solution's sources.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import REPO

FORMAT = 1


def _solution_checks():
    """hw3_utils.checks of the solution kit (this repo), refusing a stub kit."""
    import hw3_utils
    from hw3_utils import checks

    if Path(hw3_utils.__file__).resolve().parent != (REPO / "hw3_utils").resolve():
        raise RuntimeError(f"the grader must import the solution's hw3_utils from {REPO}, not {hw3_utils.__file__}")
    return checks


def variants_for(task_id: str, cases: list[dict], expected: list[dict]) -> list[dict]:
    """Outputs of each mutant of the task on `cases`; mutants that raise are left out."""
    from .mutants import MUTANTS, applied_in_process  # not in the Gradescope bundle: it quotes the solution

    checks = _solution_checks()
    out = []
    for m in MUTANTS:
        if m.task != task_id:
            continue
        try:
            with applied_in_process(m):
                outs = [checks.task_outputs(task_id, c) for c in cases]
        except Exception:
            continue  # a mistake that crashes is reported by its error message instead
        same = all(set(o) == set(e) and all(o[k].shape == e[k].shape and torch.allclose(o[k], e[k]) for k in e)
                   for o, e in zip(outs, expected))
        if not same:
            fps = [{k: checks.fingerprint(v) for k, v in o.items()} for o in outs]
            out.append({"name": m.name, "feedback": m.feedback, "fingerprints": fps})
    return out


def build_check_data(variants: bool = True) -> dict:
    checks = _solution_checks()
    data = {"format": FORMAT, "aux": {}, "expected": {}, "variants": {}}
    for tid in checks.TASKS:
        cases = checks.public_inputs(tid)
        aux = [checks.reference_aux(tid, c) for c in cases]
        full = [{**c, **a} for c, a in zip(cases, aux)]
        expected = [checks.task_outputs(tid, c) for c in full]
        data["aux"][tid] = aux
        data["expected"][tid] = expected
        data["variants"][tid] = variants_for(tid, full, expected) if variants else []
    return data


def write_check_data(path: Path | str | None = None) -> Path:
    checks = _solution_checks()
    path = Path(path or checks.CHECK_DATA)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(build_check_data(), tmp)
    tmp.replace(path)
    return path


def build_reference() -> dict:
    """{"cases": {task: [case, ...]}, "expected": {task: [outputs, ...]}, "variants": {task: [...]}}."""
    checks = _solution_checks()
    public = checks.load_check_data()
    ref = {"format": FORMAT, "cases": {}, "expected": {}, "variants": {}}
    for tid in checks.TASKS:
        cases = checks.grading_cases(tid)
        ref["cases"][tid] = cases
        ref["expected"][tid] = [checks.task_outputs(tid, c) for c in cases]
        ref["variants"][tid] = public["variants"].get(tid, [])
    return ref


def save_reference(ref: dict, path: Path | str) -> Path:
    path = Path(path)
    torch.save(ref, path)
    return path


def load_reference(path: Path | str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def tensors_equal(a, b) -> bool:
    """Deep equality of nested dicts/lists of tensors and plain values (for the staleness test)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-7)))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b
