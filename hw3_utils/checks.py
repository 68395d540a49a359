"""Checks for the assignment's tasks: fixed inputs, the kit's expected outputs, helpful feedback.

In a notebook: `from hw3_utils.checks import check; check("3")` prints
`PASS  Task 3 · q_sample · 15/15 points` or raises `TaskCheckFailed` saying what differs.
From the shell: `python -m hw3_utils.checks [TASK ...]` (exit status 1 when a check fails).

What each task is (its cases, how its code runs, its tolerance) lives in `hw3_utils/tasks/`, one
module per task; this module runs them and compares. Each task is checked on its own: where a
task builds on another one, the other's function is replaced by reference values carried in the
case data, so a mistake in one task costs points only there. The expected outputs are float64
references in `check_data.pt` (tensors only, read with weights_only=True); the student's float32
outputs must lie within the task's tolerance of them (docs/instructors.md, "Tolerances").

`python -m hw3_utils.checks --run --cases CASES.pt --results-fd N [TASK ...]` is the grader's entry: it only
computes outputs and sends them down the pipe N (hw3_utils/results_pipe.py); the comparison happens in the grader.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

import torch

from . import results_pipe
from .tasks import TASK_FILES, TASKS, Task, task

__all__ = ["TASKS", "TASK_FILES", "TaskCheckFailed", "check", "check_all", "compare", "main"]

PACKAGE_DIR = Path(__file__).resolve().parent
CHECK_DATA = PACKAGE_DIR / "check_data.pt"
NEAR = 1e-2  # a worst relative difference below this is a near miss: the idea is right, the arithmetic not
FINGERPRINT_TOL = 1e-4  # how closely an output must equal a known mistake's to be named as it


class TaskCheckFailed(AssertionError):
    """A task's output differs from the expected one (the message says how)."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback: the student needs the message, not
        # the frames of this module (the cause, if any, is in the message: file, line, error)
        return [f"\x1b[0;31mTaskCheckFailed\x1b[0m: {self}"]


# cases ------------------------------------------------------------------------------------------
def load_check_data(path=None) -> dict:
    path = Path(path or CHECK_DATA)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it ships with the kit (hw3_utils/check_data.pt)")
    return torch.load(path, map_location="cpu", weights_only=True)


def public_inputs(task_id) -> list[dict]:
    """The public cases' inputs, without the reference values some isolation needs."""
    t = task(task_id)
    return [_case(t, s) for s in t.public]


def _case(t: Task, spec: dict) -> dict:
    return {"task": t.id, "spec": dict(spec), **t.inputs(spec)}


def public_cases(task_id, data: dict | None = None) -> list[dict]:
    """The public cases of a task: inputs built from fixed seeds plus the reference values
    (`aux`, e.g. the embedding table of 2b, the x_t table of 4) stored in check_data.pt."""
    t = task(task_id)
    data = load_check_data() if data is None else data
    cases = public_inputs(t.id)
    for case, aux in zip(cases, data["aux"][t.id]):
        case.update(aux)
    return cases


def grading_inputs(task_id) -> list[dict]:
    """Public cases' inputs followed by the hidden ones (the student kit has only the public ones)."""
    t = task(task_id)
    return [_case(t, s) for s in (*t.public, *t.hidden)]


def reference_aux(task_id, case: dict) -> dict:
    """The reference values a case carries for isolation (instructor side; {} for most tasks)."""
    t = task(task_id)
    return t.aux(case) if t.aux else {}


def grading_cases(task_id) -> list[dict]:
    """Public plus hidden cases with their reference values (only meaningful in the instructor's kit)."""
    return [{**c, **reference_aux(task_id, c)} for c in grading_inputs(task_id)]


def task_outputs(task_id, case: dict) -> dict[str, torch.Tensor]:
    """Run the kit's code (the student's, in the student kit) for one task on one case."""
    torch.manual_seed(0)
    with torch.no_grad():
        return task(task_id).run(case)


# comparing ------------------------------------------------------------------------------------
def fingerprint(x: torch.Tensor) -> torch.Tensor:
    """A small float64 summary of a tensor (shape, 64 strided values, sum, sum of squares), to
    recognise a known mistake's output without shipping it whole."""
    flat = x.detach().double().flatten()
    step = max(1, flat.numel() // 64)
    return torch.cat([torch.tensor([float(flat.numel()), float(x.ndim)], dtype=torch.float64),
                      torch.tensor([float(d) for d in x.shape], dtype=torch.float64),
                      flat[::step][:64], flat.sum()[None], flat.pow(2).sum()[None]])


def same_fingerprint(x, fp: torch.Tensor) -> bool:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return False
    mine = fingerprint(x)
    return mine.shape == fp.shape and bool(torch.allclose(mine, fp, rtol=FINGERPRINT_TOL, atol=FINGERPRINT_TOL))


def matches_variant(outputs, variant: dict) -> bool:
    """True when the outputs on the public cases (the first ones) equal a known mistake's."""
    fps = variant["fingerprints"]
    if not fps or len(outputs) < len(fps):
        return False
    return all(isinstance(o, dict) and set(o) == set(f) and all(same_fingerprint(o[k], f[k]) for k in f)
               for o, f in zip(outputs, fps))


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ")"


def _structure(t: Task, k: int, got, exp: dict) -> str | None:
    """What is wrong with the form of one case's outputs (keys, type, shape, dtype, finiteness), or None."""
    if not isinstance(got, dict) or set(got) != set(exp):
        return f"case {k + 1}: malformed outputs"
    for name, e in exp.items():
        g = got[name]
        if not isinstance(g, torch.Tensor):
            return f"case {k + 1}: {name} is not a tensor"
        if tuple(g.shape) != tuple(e.shape):
            return (f"wrong shape: expected {_fmt_shape(e.shape)}, got {_fmt_shape(g.shape)}"
                    + (f" ({t.shape_note})" if t.shape_note else ""))
        want = t.outputs.get(name, e.dtype)
        if g.dtype != want:
            return f"wrong dtype: expected {want}, got {g.dtype}"
        if g.is_floating_point() and not bool(torch.isfinite(g).all()):
            return "the output contains NaN or inf values"
    return None


def _rows_message(t: Task, fails: list[tuple[dict, dict, dict]]) -> str:
    """Which rows (images) differ, by their timestep, with the task's notes on what that suggests."""
    key, tkey = t.rows
    bad_t, good_t, variances = set(), set(), set()
    for case, got, exp in fails:
        for i, ti in enumerate(case[tkey].tolist()):
            ok = t.tolerance.ok(got[key][i], exp[key][i])
            (good_t if ok else bad_t).add(int(ti))
            if not ok and "variance" in case:
                variances.add(case["variance"])
    if not bad_t:
        return ""
    msg = f"rows with t = {', '.join(str(x) for x in sorted(bad_t))} differ"
    if good_t - bad_t:
        msg += f" (rows with t = {', '.join(str(x) for x in sorted(good_t - bad_t)[:6])} match)"
    notes = t.row_notes(bad_t, good_t, variances) if t.row_notes else []
    return msg + ("; " + "; ".join(notes) if notes else "")


def _near_miss(t: Task, fails: list[tuple[int, dict | None, dict, dict]]) -> str:
    """'close: worst relative difference 3e-4, at t = 999; ...' when every difference is small."""
    worst, where = 0.0, ""
    for k, case, got, exp in fails:
        for name, e in exp.items():
            g, e = got[name].double(), e.double()
            rowwise = t.rows is not None and name == t.rows[0] and case is not None and e.ndim >= 2
            gs, es = (g.flatten(1), e.flatten(1)) if rowwise else (g.reshape(1, -1), e.reshape(1, -1))
            scale = es.abs().amax(dim=1, keepdim=True).clamp(min=t.tolerance.atol)
            rel = ((gs - es).abs() / scale).amax(dim=1)
            i = int(rel.argmax())
            if float(rel[i]) > worst:
                worst = float(rel[i])
                where = f"at t = {int(case[t.rows[1]][i])}" if rowwise else f"in case {k + 1}"
    if worst >= NEAR:
        return ""
    return (f"close: worst relative difference {worst:.1e}, {where}: the idea looks right and the arithmetic "
            f"is not; look at float32 rounding in {t.near_miss or 'your formula'}")


def compare(task_id, outputs, expected, variants=(), cases=None, public: int | None = None) -> tuple[bool, str]:
    """(ok, message): outputs vs expected (lists over cases of {name: tensor}), with feedback.

    Each output must have the task's dtype and lie within the task's tolerance of the (float64)
    expected value. `variants`: [{"feedback": str, "fingerprints": [...]}], known mistakes on the
    first cases (the public ones); matching one of them names the mistake. `public`: how many of the
    cases (the first ones) are public; the feedback shows values (the task's `explain`) of public cases
    only, and of a hidden case only which property failed (shape, rows with t = ..., near miss), so
    that feedback shown at once (Gradescope) is no oracle for the hidden expected values.
    """
    t = task(task_id)
    if not isinstance(outputs, list) or len(outputs) != len(expected):
        return False, f"expected outputs for {len(expected)} cases, got {type(outputs).__name__}"
    problem, fails = None, []
    for k, (got, exp) in enumerate(zip(outputs, expected)):
        problem = _structure(t, k, got, exp)
        if problem is not None:
            if problem.startswith("case "):
                return False, problem
            break
        if not all(t.tolerance.ok(got[n], exp[n]) for n in exp):
            fails.append((k, got, exp))
    if problem is None and not fails:
        return True, "all cases match"
    for var in variants or ():  # a known mistake?
        if matches_variant(outputs, var):
            return False, f"your output equals the output of a known mistake: {var['feedback']}"
    if problem is not None:
        return False, problem
    shown = [(k, got, exp) for k, got, exp in fails if public is None or k < public]
    parts = [f"{len(fails)} of {len(expected)} cases differ"]
    if shown and t.explain and cases is not None:
        k, got, exp = shown[0]
        parts += t.explain(cases[k], got, exp)
    elif not shown:
        parts[0] += " (hidden cases: their values are not shown)"
    if cases is not None and t.rows:
        rows = _rows_message(t, [(cases[i], o, e) for i, o, e in fails])
        if rows:
            parts.append(rows)
    near = _near_miss(t, [(i, cases[i] if cases is not None else None, o, e) for i, o, e in fails])
    if near:
        parts.append(near)
    return False, "; ".join(parts)


# reporting ------------------------------------------------------------------------------------
def error_location(err: BaseException) -> str:
    """'path:line' of the deepest frame of the error inside the kit, outside the checks ('' if none)."""
    loc = ""
    for frame in traceback.extract_tb(err.__traceback__):
        path = Path(frame.filename).resolve()
        try:
            rel = path.relative_to(PACKAGE_DIR.parent)
        except ValueError:
            continue
        if path.name != "checks.py" and path.parent != PACKAGE_DIR / "tasks":
            loc = f"{rel.as_posix()}:{frame.lineno}"
    if not loc and isinstance(err, SyntaxError) and err.filename:
        loc = f"{err.filename}:{err.lineno}"
    return loc


def describe_error(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0][:400] if str(err).strip() else ""
    loc = error_location(err)
    return f"{type(err).__name__}: {msg}" + (f" ({loc})" if loc else "")


def not_implemented(t: Task, err: BaseException) -> str:
    own = str(err).startswith(f"Task {t.number} ")
    where = "" if own else f" (raised by: {describe_error(err)})"
    return (f"{t.label}: not implemented yet{where}. {t.hint} "
            f"Then re-run the check cell in notebook {t.notebook[:2]} "
            f"(or `python -m hw3_utils.checks {t.number}`).")


def check(task_id, data: dict | None = None, verbose: bool = True) -> None:
    """Run one task's public checks; print PASS or raise TaskCheckFailed explaining what differs.

    Returns None, so a notebook's check cell shows only the PASS line (or the failure).
    """
    t = task(task_id)
    data = load_check_data() if data is None else data
    cases = public_cases(t.id, data)
    try:
        outputs = [task_outputs(t.id, c) for c in cases]
    except NotImplementedError as err:
        raise TaskCheckFailed(not_implemented(t, err)) from None
    except Exception as err:
        raise TaskCheckFailed(f"{t.label}: your code raised {describe_error(err)}. {t.hint}") from err
    ok, msg = compare(t.id, outputs, data["expected"][t.id], data["variants"].get(t.id, ()), cases)
    if not ok:
        raise TaskCheckFailed(f"{t.label}: {msg}. Hint: {t.hint}")
    if verbose:
        print(f"PASS  Task {t.number} · {t.name} · {t.points}/{t.points} points")


def check_all(task_ids=None) -> dict[str, bool]:
    """Run several checks, printing a line for each; returns {task: passed}."""
    results = {}
    for tid in task_ids or TASKS:
        try:
            check(tid)
            results[tid] = True
        except TaskCheckFailed as err:
            t = task(tid)
            print(f"FAIL  Task {t.number} · {t.name} · 0/{t.points} points\n      {err}")
            results[tid] = False
    return results


# the grader's runner ---------------------------------------------------------------------------
def run_cases(cases_path, results_fd: int, tasks=None) -> None:
    """Run each task in order (default: every task of the cases file) and send its outputs, or the error its code
    raised, on the results pipe `results_fd` (hw3_utils/results_pipe.py holds the protocol)."""
    cases = torch.load(cases_path, map_location="cpu", weights_only=True)
    for tid in tasks or [t for t in TASKS if t in cases]:
        results_pipe.send(results_fd, results_pipe.started(tid))
        try:
            payload = results_pipe.outputs_payload([task_outputs(tid, c) for c in cases[tid]])
        except NotImplementedError as err:
            payload = results_pipe.error_payload(not_implemented(TASKS[tid], err), not_implemented=True)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # SystemExit too: one task's failure must not end the run
            payload = results_pipe.error_payload(describe_error(err))
        try:
            record = results_pipe.result(tid, payload)
        except Exception as err:
            record = results_pipe.result(tid, results_pipe.error_payload(
                f"outputs could not be saved: {describe_error(err)}"))
        results_pipe.send(results_fd, record)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw3_utils.checks", description="Check the assignment's tasks.")
    p.add_argument("tasks", nargs="*", metavar="TASK",
                   help=f"the tasks to check, or with --run to run ({', '.join(TASKS)}); all when none")
    p.add_argument("--run", action="store_true",
                   help="the grader's mode: run the tasks on --cases and send their outputs to --results-fd")
    p.add_argument("--cases", help="with --run: the cases file (torch.save of {task: [case, ...]})")
    p.add_argument("--results-fd", type=int, help="with --run: the results pipe's file descriptor")
    args = p.parse_args(argv)
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; the tasks are {', '.join(TASKS)}")
    if args.run:
        if not args.cases or args.results_fd is None:
            p.error("--run needs --cases and --results-fd")
        torch.set_num_threads(1)
        run_cases(args.cases, args.results_fd, args.tasks or None)
        return 0
    results = check_all(args.tasks or None)
    if not args.tasks:  # the written half: graded by hand, so only said, never failed
        from .answers import empty_answers

        empty = empty_answers(Path(__file__).resolve().parent.parent / "notebooks")
        print("Written answers still empty: " + "; ".join(empty) if empty else "Written answers: all filled in.")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
