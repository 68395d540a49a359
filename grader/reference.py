"""Expected outputs: float64 references from the tasks' own `reference` functions (hw3_utils/tasks/).

- `build_check_data()` -> hw3_utils/check_data.pt, shipped to students: for the public cases the
  reference values the isolation needs (`aux`), the expected outputs, and the fingerprints of the
  known mistakes' outputs.
- `build_reference()` -> what the grader compares with: public + hidden cases (inputs and aux)
  and the expected outputs. Kept in memory, or saved for the Gradescope bundle, which must not
  carry the solution's sources.
- `stale_parts(committed, fresh)`: what differs between two check data beyond the tasks' own
  tolerances, so that the staleness test passes on any CPU and still catches an edited solution.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import REPO

FORMAT = 2  # 2: float64 references, compared at each task's tolerance


def _solution_kit():
    """hw3_utils of the solution kit (this repo), refusing a stub kit."""
    import hw3_utils
    from hw3_utils import checks, tasks

    if Path(hw3_utils.__file__).resolve().parent != (REPO / "hw3_utils").resolve():
        raise RuntimeError(f"the grader must import the solution's hw3_utils from {REPO}, not {hw3_utils.__file__}")
    return checks, tasks


def mistake_fingerprints(task_id: str, cases: list[dict], expected: list[dict]) -> list[dict]:
    """Fingerprints of each known mistake's outputs on `cases`; mistakes that raise are left out."""
    from .patches import applied_in_process  # not in the Gradescope bundle: patches quote the solution

    checks, tasks = _solution_kit()
    t = tasks.task(task_id)
    out = []
    for m in t.mistakes:
        try:
            with applied_in_process(t, m):
                outs = [checks.task_outputs(task_id, c) for c in cases]
        except Exception:
            continue  # a mistake that crashes is reported by its error message instead
        same = all(set(o) == set(e) and all(t.tolerance.ok(o[k], e[k]) for k in e) for o, e in zip(outs, expected))
        if not same:
            fps = [{k: checks.fingerprint(v) for k, v in o.items()} for o in outs]
            out.append({"name": m.name, "feedback": m.feedback, "fingerprints": fps})
    return out


def build_check_data(variants: bool = True) -> dict:
    checks, tasks = _solution_kit()
    data = {"format": FORMAT, "aux": {}, "expected": {}, "variants": {}}
    for tid, t in tasks.TASKS.items():
        cases = checks.public_inputs(tid)
        aux = [checks.reference_aux(tid, c) for c in cases]
        full = [{**c, **a} for c, a in zip(cases, aux)]
        expected = [t.reference(c) for c in full]
        data["aux"][tid] = aux
        data["expected"][tid] = expected
        data["variants"][tid] = mistake_fingerprints(tid, full, expected) if variants else []
    return data


def write_check_data(path: Path | str | None = None) -> Path:
    from hw3_utils.atomic import atomic_write

    checks, _ = _solution_kit()
    path = Path(path or checks.CHECK_DATA)
    data = build_check_data()
    atomic_write(path, lambda f: torch.save(data, f))
    return path


def build_reference(only=None) -> dict:
    """{"cases": {task: [case, ...]}, "expected": {task: [outputs, ...]}, "variants": {task: [...]}}, for every
    task or the task ids in `only` (a release's tasks)."""
    checks, tasks = _solution_kit()
    public = checks.load_check_data()
    ref = {"format": FORMAT, "cases": {}, "expected": {}, "variants": {}}
    for tid, t in tasks.TASKS.items():
        if only is not None and tid not in only:
            continue
        cases = checks.grading_cases(tid)
        ref["cases"][tid] = cases
        ref["expected"][tid] = [t.reference(c) for c in cases]
        ref["variants"][tid] = public["variants"].get(tid, [])
    return ref


def save_reference(ref: dict, path: Path | str) -> Path:
    path = Path(path)
    torch.save(ref, path)
    return path


def load_reference(path: Path | str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def stale_parts(committed: dict, fresh: dict) -> list[str]:
    """Where two check data differ by more than float rounding can explain (empty: up to date).

    Expected outputs and aux tables are compared at the task's own tolerance (what a check could
    notice), fingerprints at the fingerprint tolerance, everything else exactly. So a machine whose
    CPU rounds differently agrees, and an edited solution, case or mistake does not.
    """
    from hw3_utils.checks import FINGERPRINT_TOL
    from hw3_utils.tasks import TASKS

    out = []
    if committed.get("format") != fresh.get("format"):
        return [f"format {committed.get('format')} vs {fresh.get('format')}"]
    for section in ("aux", "expected", "variants"):
        if set(committed[section]) != set(fresh[section]):
            out.append(f"{section}: tasks {sorted(committed[section])} vs {sorted(fresh[section])}")
    for tid in set(committed["expected"]) & set(fresh["expected"]) & set(TASKS):
        tol = TASKS[tid].tolerance
        near = lambda a, b, tol=tol: tol.ok(a, b)  # noqa: E731
        for section in ("aux", "expected"):
            if not _equal(committed[section][tid], fresh[section][tid], near):
                out.append(f"{section} of task {tid}")
        fp_near = lambda a, b: a.shape == b.shape and bool(  # noqa: E731
            torch.allclose(a.double(), b.double(), rtol=FINGERPRINT_TOL, atol=FINGERPRINT_TOL))
        if not _equal(committed["variants"].get(tid), fresh["variants"].get(tid), fp_near):
            out.append(f"known mistakes of task {tid}")
    return out


def _equal(a, b, near) -> bool:
    """Deep equality of nested dicts/lists; tensors compared by `near` (floats) or exactly (integers)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dtype != b.dtype:
            return False
        return near(a, b) if a.is_floating_point() else bool(torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_equal(a[k], b[k], near) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y, near) for x, y in zip(a, b))
    return a == b
