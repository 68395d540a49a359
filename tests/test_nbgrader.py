"""The real nbgrader on the kit's notebooks: `nbgrader generate_assignment` with no flags on the instructor's
notebooks gives the kit's own release cell for cell, and `nbgrader autograde` (with the kit's config,
grader/nbgrader_config.py) scores blank answers 0 by itself and leaves a written one to a person."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from grader import REPO
from grader.release import strip_notebook
from hw3_utils.answers import PLACEHOLDER, is_answer_cell

ASSIGNMENT = "hw3"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([sys.executable, "-m", "nbgrader", *args, ASSIGNMENT], cwd=course, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"


def _course(tmp: Path) -> Path:
    course = tmp / "course"
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    for nb in NOTEBOOKS:
        shutil.copyfile(nb, course / "source" / ASSIGNMENT / nb.name)
    config = (REPO / "grader" / "nbgrader_config.py").read_text()
    config += f"\nc.CourseDirectory.root = {str(course)!r}\nc.CourseDirectory.course_id = 'hw3-test'\n"
    (course / "nbgrader_config.py").write_text(config)
    return course


def _kit_release(nb: Path) -> dict:
    return json.loads(strip_notebook(nb.read_text(encoding="utf-8"), nb.name)[0])


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _submit(course: Path, student: str, answer: dict[str, str]) -> None:
    """The student release's notebooks as handed in, with `answer` ({question id: text}) written in."""
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    for nb in NOTEBOOKS:
        kit = _kit_release(nb)
        for cell in kit["cells"]:
            qid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if is_answer_cell(cell) and qid in answer:
                cell["source"] = _source(cell).replace(PLACEHOLDER, answer[qid])
        (folder / nb.name).write_text(json.dumps(kit, indent=1), encoding="utf-8")


@pytest.mark.slow
def test_nbgrader_releases_as_the_kit_does_and_scores_blank_answers_zero(tmp_path):
    course = _course(tmp_path)
    _nbgrader(course, "generate_assignment")  # no flags: the mark schemes sit where nbgrader accepts them
    answer_cells = 0
    for nb in NOTEBOOKS:
        theirs = json.loads((course / "release" / ASSIGNMENT / nb.name).read_text(encoding="utf-8"))["cells"]
        ours = _kit_release(nb)["cells"]
        assert len(theirs) == len(ours), nb.name
        for k, (a, b) in enumerate(zip(theirs, ours)):
            where = f"{nb.name}, cell {k + 1}"
            assert (a["cell_type"], a.get("id"), _source(a)) == (b["cell_type"], b.get("id"), _source(b)), where
            assert a["metadata"].get("deletable", True) == b["metadata"].get("deletable", True), where
            if is_answer_cell(b):
                answer_cells += 1
                assert b["metadata"]["deletable"] is False and "editable" not in a["metadata"], where
                assert {k: a["metadata"]["nbgrader"][k] for k in b["metadata"]["nbgrader"]} == \
                    b["metadata"]["nbgrader"], where
    assert answer_cells >= 8
    first = _kit_release(NOTEBOOKS[0])
    qid = next(c["metadata"]["nbgrader"]["grade_id"] for c in first["cells"] if is_answer_cell(c))
    _submit(course, "ada", {})
    _submit(course, "bob", {qid: "Because the noise is $\\mathcal N(0, I)$."})
    _nbgrader(course, "autograde")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "hw3-test") as gb:
        for student in ("ada", "bob"):
            grades = [g for nb in gb.find_submission(ASSIGNMENT, student).notebooks for g in nb.grades]
            assert len(grades) == answer_cells
            for g in grades:
                if student == "bob" and g.name == qid:
                    assert g.needs_manual_grade and g.auto_score is None, g.name
                else:  # blank: "no response", 0 points without a person
                    assert g.auto_score == 0 and not g.needs_manual_grade and g.max_score > 0, (student, g.name)
