"""Applying the tasks' source patches: known mistakes and correct variants (hw3_utils/tasks/task_*.py).

They serve twice. The mistakes' outputs on the public cases go into check_data.pt as fingerprints,
so a student whose output equals one of them reads that mistake's feedback. And the tests grade
every patch, to prove that a mistake loses points in its own task and in no other, and that a
correct variant gets full marks everywhere (tests/test_checks.py, tests/test_grader.py).
Every old text must occur exactly once in the solution (`check_patches`), so a patch never
silently stops applying when the solution is edited.
"""

from __future__ import annotations

import contextlib
import importlib
import types
from pathlib import Path

from hw3_utils.tasks import Patch, Task, mistakes, variants

from . import REPO


def all_patches() -> list[tuple[Task, Patch]]:
    return mistakes() + variants()


def check_patches(root: Path = REPO) -> list[str]:
    """Problems with the patches against the solution at `root` (empty when all apply exactly once)."""
    problems, names = [], set()
    for t, p in all_patches():
        if p.name in names:
            problems.append(f"{p.name}: duplicate name")
        names.add(p.name)
        if p.file != t.file:
            problems.append(f"{p.name}: patches {p.file}, but task {t.id} lives in {t.file}")
        try:
            patched_source(p, root)
        except ValueError as err:
            problems.append(str(err))
    return problems


def patched_source(p: Patch, root: Path = REPO) -> str:
    text = (root / p.file).read_text()
    for k, (old, new) in enumerate(p.edits, start=1):
        if text.count(old) != 1:
            raise ValueError(f"{p.name}: the old text of edit {k} occurs {text.count(old)} times in {p.file} "
                             "(must be exactly once)")
        text = text.replace(old, new)
    return text


def apply_to_tree(p: Patch, tree: Path, root: Path = REPO) -> None:
    """Write the patched file into `tree` (a copy of the kit)."""
    (Path(tree) / p.file).write_text(patched_source(p, root))


def _resolve(obj, dotted: str):
    *owners, name = dotted.split(".")
    for part in owners:
        obj = getattr(obj, part)
    return obj, name


@contextlib.contextmanager
def applied_in_process(t: Task, p: Patch, root: Path = REPO):
    """Swap the task's functions of the live (solution) `hw3_utils` for the patched ones, then restore.

    The patched module is executed in a scratch namespace; its functions are rebuilt with the live
    module's globals, so everything they call (including the checks' isolation patches) is live.
    """
    swaps = []
    scratch: dict[str, dict] = {}
    try:
        for modname, dotted in t.functions:
            live = importlib.import_module(modname)
            if modname not in scratch:
                ns = {"__name__": f"{modname}__patched", "__package__": "hw3_utils", "__file__": str(root / p.file)}
                patched = Path(live.__file__).resolve() == (root / p.file).resolve()
                source = patched_source(p, root) if patched else Path(live.__file__).read_text()
                exec(compile(source, str(root / p.file), "exec"), ns)
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


def worst_ratio(t: Task, cases: list[dict], expected: list[dict]) -> float:
    """The largest |got - expected| / tolerance bound of the live code over `cases` (1 = at the
    tolerance; inf when a shape differs or the code raises)."""
    from hw3_utils.checks import task_outputs

    worst = 0.0
    try:
        for c, e in zip(cases, expected):
            got = task_outputs(t.id, c)
            for k in e:
                if got[k].shape != e[k].shape:
                    return float("inf")
                worst = max(worst, float(((got[k].double() - e[k]).abs() / t.tolerance.bound(e[k])).max()))
    except Exception:
        return float("inf")
    return worst


def tolerance_table() -> list[dict]:
    """Per task, on the public and hidden cases: the tolerance, the worst correct form's share of it
    (solution and variants) and the nearest known mistake's multiple of it."""
    from hw3_utils.checks import grading_cases
    from hw3_utils.tasks import TASKS

    rows = []
    for t in TASKS.values():
        cases = grading_cases(t.id)
        expected = [t.reference(c) for c in cases]
        correct = {"solution": worst_ratio(t, cases, expected)}
        for v in t.variants:
            with applied_in_process(t, v):
                correct[v.name] = worst_ratio(t, cases, expected)
        wrong = {}
        for m in t.mistakes:
            with applied_in_process(t, m):
                wrong[m.name] = worst_ratio(t, cases, expected)
        worst = max(correct, key=correct.get)
        near = min(wrong, key=wrong.get)
        rows.append({"task": t.id, "rtol": t.tolerance.rtol, "atol": t.tolerance.atol, "why": t.tolerance.why,
                     "correct": correct, "mistakes": wrong, "worst_correct": (worst, correct[worst]),
                     "nearest_mistake": (near, wrong[near])})
    return rows


def tolerance_markdown(rows: list[dict]) -> str:
    out = ["| task | tolerance (vs float64) | why | worst correct form | nearest known mistake |",
           "| --- | --- | --- | --- | --- |"]
    for r in rows:
        tol = " + ".join(x for x in (f"{r['rtol']:g} x abs(expected)" if r["rtol"] else "",
                                     f"{r['atol']:g}" if r["atol"] else "") if x)
        (wn, wv), (mn, mv) = r["worst_correct"], r["nearest_mistake"]
        mistake = "wrong shape" if mv == float("inf") else f"{mv:.3g} x the tolerance"
        out.append(f"| {r['task']} | {tol} | {r['why']} | {wv:.1%} of it ({wn}) | {mistake} ({mn}) |")
    return "\n".join(out)
