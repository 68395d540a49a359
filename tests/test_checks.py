"""The assignment's machinery, fast parts: the stripper, the checks, check_data.pt, mistakes and variants."""

from __future__ import annotations

import json

import pytest
import torch

from grader.patches import applied_in_process, check_patches, tolerance_table
from grader.reference import build_check_data, stale_parts
from grader.release import MarkerError, strip_notebook, strip_text
from hw3_utils import checks
from hw3_utils.tasks import TASKS, mistakes, variants

MISTAKES, VARIANTS = mistakes(), variants()


# the stripper -----------------------------------------------------------------------------------
def test_strip_py_keeps_indentation_and_replaces_each_region():
    src = (
        "def f(x):\n"
        "    y = 1\n"
        "    ### BEGIN SOLUTION 3\n"
        "    return x + y\n"
        "    ### END SOLUTION\n"
        "\n"
        "class A:\n"
        "    def g(self):\n"
        "        ### BEGIN SOLUTION 5a\n"
        "        a = 2\n"
        "        return a\n"
        "        ### END SOLUTION\n"
        "        # after\n"
    )
    out, found = strip_text(src, "x.py")
    assert found == ["3", "5a"]
    assert "return x + y" not in out and "a = 2" not in out and "BEGIN" not in out
    lines = out.splitlines()
    assert lines[2].startswith("    # TODO Task 3 (q_sample):")
    assert any(ln.startswith("        # TODO Task 5a (p_sample):") for ln in lines)
    assert "        raise NotImplementedError(" in lines
    assert "        # after" in lines and "    y = 1" in lines
    ns = {}
    exec(compile(out, "x.py", "exec"), ns)  # the stubbed file is valid Python
    with pytest.raises(NotImplementedError, match=r"^Task 3 \(q_sample, 15 points\): not implemented yet"):
        ns["f"](1)
    with pytest.raises(NotImplementedError, match="python -m hw3_utils.checks 5a"):
        ns["A"]().g()


def test_strip_removes_hidden_tests():
    src = "a = 1\n    ### BEGIN HIDDEN TESTS\nsecret = 2\n    ### END HIDDEN TESTS\nb = 3\n"
    out, found = strip_text(src)
    assert out == "a = 1\nb = 3\n" and found == []


@pytest.mark.parametrize("src, match", [
    ("### BEGIN SOLUTION 3\n### BEGIN SOLUTION 4\n### END SOLUTION\n", r"x\.py:2: .*nested"),
    ("x = 1\n### END SOLUTION\n", r"x\.py:2: .*without a matching BEGIN"),
    ("### BEGIN SOLUTION 3\nx = 1\n", r"x\.py:1: region opened here is never closed"),
    ("### BEGIN SOLUTION 9z\n### END SOLUTION\n", r"x\.py:1: .*unknown task"),
    ("### BEGIN SOLUTION\n### END SOLUTION\n", r"x\.py:1: .*names no task"),
    ("### BEGIN HIDDEN TESTS\n### END SOLUTION\n", r"x\.py:2: .*another kind"),
])
def test_strip_rejects_bad_markers(src, match):
    with pytest.raises(MarkerError, match=match):
        strip_text(src, "x.py")


def test_strip_notebook_code_cells_only_and_drops_outputs():
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["### BEGIN SOLUTION 3 is how markers look\n"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 3, "outputs": [{"output_type": "stream"}],
         "source": ["x = 1\n", "### BEGIN SOLUTION 3\n", "y = x + 1\n", "### END SOLUTION\n", "print(y)"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 4, "outputs": [],
         "source": ["check('3')\n", "### BEGIN HIDDEN TESTS\n", "assert secret\n", "### END HIDDEN TESTS\n"]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    out, found = strip_notebook(json.dumps(nb), "n.ipynb")
    cells = json.loads(out)["cells"]
    assert found == ["3"]
    assert cells[0] == nb["cells"][0]  # markdown untouched
    code = "".join(cells[1]["source"])
    assert "y = x + 1" not in code and code.startswith("x = 1\n# TODO Task 3 (q_sample):") and code.endswith("print(y)")
    assert cells[1]["outputs"] == [] and cells[1]["execution_count"] is None
    assert "".join(cells[2]["source"]) == "check('3')\n"
    with pytest.raises(MarkerError, match=r"n\.ipynb \(cell 2\):2"):
        bad = json.loads(json.dumps(nb))
        bad["cells"][1]["source"] = ["x\n", "### END SOLUTION\n"]
        strip_notebook(json.dumps(bad), "n.ipynb")


# the checks ----------------------------------------------------------------------------------------
def test_check_passes_on_the_solution(capsys):
    for tid, task in checks.TASKS.items():
        assert checks.check(tid) is None  # raises TaskCheckFailed on a failure
        assert f"PASS  Task {task.number} · {task.name} · {task.points}/{task.points} points" in capsys.readouterr().out


def test_tasks_add_up_to_100_and_files_exist():
    from grader import REPO
    from grader.release import extension_tasks

    extension = extension_tasks()  # notebook 06's tasks: points beyond the 100 of the assignment
    assert sum(t.points for tid, t in TASKS.items() if tid not in extension) == 100
    assert sorted(extension) == ["6a", "6b"] and sum(TASKS[t].points for t in extension) == 10
    assert len(TASKS) >= 7 and all(t.points > 0 for t in TASKS.values())
    for t in TASKS.values():
        assert (REPO / t.file).is_file() and (REPO / "notebooks" / f"{t.notebook}.ipynb").is_file()
        assert t.reference is not None and len(t.mistakes) >= 1 and len(t.variants) >= 2, t.id


def test_public_cases_cover_the_edges():
    t3 = torch.cat([c["t"] for c in checks.public_cases("3")])
    assert 0 in t3 and 999 in t3 and len(set(t3.tolist())) >= 4
    assert {c["variance"] for c in checks.public_cases("5a")} == {"posterior", "beta"}
    assert {c["dim"] for c in checks.public_cases("2a")} == {256, 16}
    imgs = torch.cat([c["images"].flatten() for c in checks.public_cases("1")])
    assert imgs.dtype == torch.uint8 and 0 in imgs and 255 in imgs
    hidden = checks.grading_inputs("3")
    assert len(hidden) > len(checks.public_inputs("3"))


def test_check_reports_a_known_mistake_and_rows():
    task, mutant = next((t, m) for t, m in MISTAKES if m.name == "noise-at-t0")
    with applied_in_process(task, mutant), pytest.raises(checks.TaskCheckFailed) as err:
        checks.check("5a", verbose=False)
    msg = str(err.value)
    assert msg.startswith("Task 5a (p_sample): your output equals the output of a known mistake: " + mutant.feedback)
    # without the variants: the rows that differ, by timestep
    data = checks.load_check_data()
    data = {**data, "variants": {}}
    with applied_in_process(task, mutant), pytest.raises(checks.TaskCheckFailed,
                                                          match=r"rows with t = 0 differ.*t = 0"):
        checks.check("5a", data=data, verbose=False)


def test_check_messages_for_stub_errors_and_shapes(monkeypatch):
    from hw3_utils import diffusion, unet

    def stub(self, x0, t, noise=None):
        raise NotImplementedError("Task 3 (q_sample, 15 points): not implemented yet.")

    monkeypatch.setattr(diffusion.DDPM, "q_sample", stub)
    with pytest.raises(checks.TaskCheckFailed, match=r"^Task 3 \(q_sample\): not implemented yet\. Eq\. 4"):
        checks.check("3", verbose=False)
    monkeypatch.setattr(unet, "sinusoidal_embedding", lambda t, dim: {}["boom"])
    with pytest.raises(checks.TaskCheckFailed, match=r"^Task 2a \(sinusoidal_embedding\): your code raised "
                                                     r"KeyError: 'boom' \(tests/test_checks\.py:\d+\)"):
        checks.check("2a", verbose=False)
    monkeypatch.setattr(unet, "sinusoidal_embedding", lambda t, dim: torch.zeros(len(t), dim // 2))
    with pytest.raises(checks.TaskCheckFailed, match=r"wrong shape: expected \(4, 256\), got \(4, 128\)"):
        checks.check("2a", verbose=False)
    monkeypatch.setattr(unet, "sinusoidal_embedding", lambda t, dim: torch.full((len(t), dim), float("nan")))
    with pytest.raises(checks.TaskCheckFailed, match="NaN or inf"):
        checks.check("2a", verbose=False)
    # task 2b does not depend on the student's embedding: isolation
    checks.check("2b", verbose=False)


def test_cli_exit_status(capsys):
    assert checks.main(["3", "2a"]) == 0
    assert "PASS  Task 3" in capsys.readouterr().out


# the results pipe: the checks runner's side and the grader's --------------------------------------
def _records(data: bytes, tasks) -> list:
    import io

    from hw3_utils import results_pipe

    return list(results_pipe.read_records(io.BytesIO(data), tasks))


@pytest.mark.slow
def test_the_grader_mode_runs_the_named_tasks_and_its_records_decode(tmp_path):
    """`python -m hw3_utils.checks --run --cases C --results-fd N 3 2a`: only the positional tasks, in their
    order; each result decodes to the outputs task_outputs gives (the grader's comparison starts from them)."""
    import os
    import subprocess
    import sys

    from hw3_utils import results_pipe

    cases = {tid: checks.public_inputs(tid) for tid in ("2a", "3", "4")}
    torch.save(cases, tmp_path / "cases.pt")
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "hw3_utils.checks", "--run", "--cases", str(tmp_path / "cases.pt"),
                             "--results-fd", str(w), "3", "2a"], pass_fds=(w,))
    os.close(w)
    with os.fdopen(r, "rb") as f:
        records = list(results_pipe.read_records(f, cases))
    assert proc.wait(timeout=120) == 0
    assert [(kind, tid) for kind, tid, _ in records] == [("S", "3"), ("R", "3"), ("S", "2a"), ("R", "2a")]
    for _, tid, data in records[1::2]:
        want = [checks.task_outputs(tid, c) for c in cases[tid]]
        got = results_pipe.decode(data, want)
        assert all(torch.equal(g[k], w[k]) for g, w in zip(got, want) for k in w)


def test_the_pipe_reader_stops_at_what_is_not_a_record_and_drains_it():
    from hw3_utils import results_pipe as rp

    ok = rp.started("3") + rp.result("3", rp.error_payload("boom"))
    assert [(k, t) for k, t, _ in _records(ok, ["3"])] == [("S", "3"), ("R", "3")]
    assert _records(rp.started("9") + ok, ["3"]) == []  # a task it does not wait for: the rest is ignored
    assert _records(b"S 3 extra\n" + ok, ["3"]) == []
    assert _records(b"x" * 500 + b"\n" + ok, ["3"]) == []  # a header over MAX_HEADER bytes
    too_big = f"R 3 {rp.MAX_RESULT + 1}\n".encode()
    assert _records(rp.started("3") + too_big + b"0" * 10, ["3"]) == [("S", "3", None)]
    assert _records(rp.started("3") + b"R 3 100\nshort", ["3"]) == [("S", "3", None)]  # the pipe closed early


def _payload(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_decode_returns_outputs_errors_or_says_what_is_malformed():
    from hw3_utils import results_pipe as rp

    expected = [{"x": torch.zeros(2, 3)}, {"x": torch.zeros(2, 3)}]
    good = [{"x": torch.ones(2, 3)}, {"x": torch.full((2, 3), 2.0)}]
    got = rp.decode(_payload(rp.outputs_payload(good)), expected)
    assert all(torch.equal(g["x"], w["x"]) for g, w in zip(got, good))
    err = rp.decode(_payload(rp.error_payload("Task 3 is not implemented", not_implemented=True)), expected)
    assert err == rp.TaskError("Task 3 is not implemented", not_implemented=True)
    assert rp.decode(_payload(rp.error_payload("x" * 5000)), expected) == rp.TaskError("x" * 1000)
    malformed = {
        b"not a pickle": "could not be read",
        _payload({"outputs": good[:1]}): "malformed outputs",  # one case short
        _payload({"outputs": [{"y": torch.ones(2, 3)}] * 2}): "malformed outputs",  # another name
        _payload({"outputs": [{"x": [1.0]}] * 2}): "case 1's x is a list, not a tensor",
        _payload({"outputs": [{"x": torch.ones(2, 3, dtype=torch.complex64)}] * 2}): "has dtype torch.complex64",
        _payload({"outputs": [{"x": torch.zeros(1).expand(2**40)}] * 2}): "far more than the 6 expected",
        _payload({"outputs": [{"x": torch.zeros(2, 3).to_sparse()}] * 2}): "sparse_coo tensor",
    }
    for data, why in malformed.items():
        with pytest.raises(rp.Malformed, match=why):
            rp.decode(data, expected)


# check_data.pt --------------------------------------------------------------------------------
def _perturbed(obj, rel: float):
    if isinstance(obj, torch.Tensor):
        return obj * (1 + rel) if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: _perturbed(v, rel) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_perturbed(v, rel) for v in obj]
    return obj


@pytest.mark.slow
def test_check_data_is_up_to_date_and_small():
    assert checks.CHECK_DATA.stat().st_size < 500_000
    committed = checks.load_check_data()
    assert stale_parts(committed, build_check_data()) == [], "hw3_utils/check_data.pt is stale: run `make check-data`"


def test_staleness_ignores_float_noise_and_catches_an_edited_solution():
    committed = checks.load_check_data()
    # what another CPU's rounding does to the values (the AMD EPYC saw 2e-6 and 1.5e-5): not stale
    assert stale_parts(committed, _perturbed(committed, 1e-5)) == []
    assert stale_parts(committed, _perturbed(committed, -1e-5)) == []
    # an edited solution region is: each task's expected outputs come from its code
    task, patch = next((t, m) for t, m in MISTAKES if m.name == "q-t-off-by-one")
    fresh = build_check_data(variants=False)
    with applied_in_process(task, patch):
        edited = {**fresh, "expected": {**fresh["expected"], "3": [checks.task_outputs("3", c)
                                                                    for c in checks.public_cases("3")]}}
    assert "expected of task 3" in stale_parts(fresh, edited)
    assert "known mistakes of task 1" in stale_parts(committed, {**committed, "variants": {**committed["variants"],
                                                                                          "1": []}})


# known mistakes and correct variants ------------------------------------------------------------
def test_patches_apply_exactly_once_and_cover_every_task():
    assert check_patches() == []
    assert len(MISTAKES) >= 13 and len(VARIANTS) >= 14
    assert {t.id for t, _ in MISTAKES} == set(TASKS) == {t.id for t, _ in VARIANTS}


@pytest.mark.slow
def test_every_mistake_is_caught_by_the_public_checks_in_its_task_only():
    data = checks.load_check_data()
    for task, m in MISTAKES:
        with applied_in_process(task, m):
            for tid in TASKS:
                if tid == task.id:
                    with pytest.raises(checks.TaskCheckFailed, match="known mistake"):
                        checks.check(tid, data=data, verbose=False)
                else:
                    checks.check(tid, data=data, verbose=False)  # raises if this task were hit


@pytest.mark.parametrize("task, variant", VARIANTS, ids=[v.name for _, v in VARIANTS])
def test_every_correct_variant_passes_every_check(task, variant):
    data = checks.load_check_data()
    with applied_in_process(task, variant):
        for tid in TASKS:
            checks.check(tid, data=data, verbose=False)


@pytest.mark.slow
def test_tolerances_leave_room_on_both_sides():
    # every correct form uses at most half of its task's tolerance on the public and hidden cases,
    # and every known mistake lies at least 10 times beyond it or has the wrong shape (docs/instructors.md)
    for row in tolerance_table():
        assert all(v <= 0.5 for v in row["correct"].values()), (row["task"], row["correct"])
        assert all(v >= 10 for v in row["mistakes"].values()), (row["task"], row["mistakes"])


def test_near_miss_says_how_close_and_where(monkeypatch):
    from hw3_utils import diffusion

    own = diffusion.DDPM.q_sample

    def slightly_off(self, x0, t, noise=None):
        out = own(self, x0, t, noise)
        return out * (1 + 3e-3 * (t == 999).float().view(-1, 1, 1, 1))  # right idea, rounding-size error at t = 999

    monkeypatch.setattr(diffusion.DDPM, "q_sample", slightly_off)
    with pytest.raises(checks.TaskCheckFailed) as err:
        checks.check("3", verbose=False)
    msg = str(err.value)
    assert "rows with t = 999 differ" in msg
    assert "close: worst relative difference 3.0e-03, at t = 999" in msg
    assert "float32 rounding in the schedule" in msg
    # far off is not close
    monkeypatch.setattr(diffusion.DDPM, "q_sample", lambda self, x0, t, noise=None: own(self, x0, t, noise) * 1.1)
    with pytest.raises(checks.TaskCheckFailed) as err:
        checks.check("3", verbose=False)
    assert "close:" not in str(err.value)
