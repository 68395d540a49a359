"""The assignment's machinery, fast parts: the marker stripper, the checks, check_data.pt, the mutants."""

from __future__ import annotations

import json

import pytest
import torch

from grader.mutants import MUTANTS, applied_in_process, check_mutants
from grader.reference import build_check_data, tensors_equal
from grader.release import MarkerError, strip_notebook, strip_text
from hw3_utils import checks


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

    assert sum(t.points for t in checks.TASKS.values()) == 100
    assert list(checks.TASKS) == ["1", "2a", "2b", "3", "4", "5a", "5b"]
    for t in checks.TASKS.values():
        assert (REPO / t.file).is_file() and (REPO / "notebooks" / f"{t.notebook}.ipynb").is_file()


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
    mutant = next(m for m in MUTANTS if m.name == "noise-at-t0")
    with applied_in_process(mutant), pytest.raises(checks.TaskCheckFailed) as err:
        checks.check("5a", verbose=False)
    msg = str(err.value)
    assert msg.startswith("Task 5a (p_sample): your output equals the output of a known mistake: " + mutant.feedback)
    # without the variants: the rows that differ, by timestep
    data = checks.load_check_data()
    data = {**data, "variants": {}}
    with applied_in_process(mutant), pytest.raises(checks.TaskCheckFailed, match=r"rows with t = 0 differ.*t = 0"):
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


# check_data.pt and the mutants -------------------------------------------------------------------
def test_check_data_is_up_to_date_and_small():
    assert checks.CHECK_DATA.stat().st_size < 300_000
    committed = checks.load_check_data()
    fresh = build_check_data()
    assert tensors_equal(committed, fresh), "hw3_utils/check_data.pt is stale: run `make check-data`"


def test_mutants_apply_exactly_once_and_cover_every_task():
    assert check_mutants() == []
    assert len(MUTANTS) >= 11
    assert {m.task for m in MUTANTS} == set(checks.TASKS)


def test_every_mutant_is_caught_by_the_public_checks_in_its_task_only():
    data = checks.load_check_data()
    for m in MUTANTS:
        with applied_in_process(m):
            for tid in checks.TASKS:
                if tid == m.task:
                    with pytest.raises(checks.TaskCheckFailed, match="known mistake"):
                        checks.check(tid, data=data, verbose=False)
                else:
                    checks.check(tid, data=data, verbose=False)  # raises if this task were hit
