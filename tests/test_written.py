"""The written half: questions with points and rubrics in the notebooks, stripped from the release, the
grading sheet, the merge with the autograder's points, and a regrade that replaces one student's rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from grader import REPO
from grader.release import make_release
from grader.render import Graded, passed
from grader.written import MergeError, merge, questions, write_sheet
from hw3_utils.answers import MARK_SCHEME, PLACEHOLDER, SOLUTION, answers, empty_answers
from hw3_utils.tasks import TASKS


def test_questions_have_points_rubrics_and_model_answers():
    qs = questions()
    assert sorted(q.qid for q in qs) == [f"q{k:02d}" for k in range(1, 11)]
    assert sum(q.points for q in qs) == 20
    for q in qs:
        assert q.title.startswith("Question ") and f"({q.points} points)" in q.title, q.title
        assert len(q.prompt) > 50 and q.rubric.count("- ") >= 2 and len(q.model) > 100, q.qid
        pts = sum(int(line.split()[1]) for line in q.rubric.splitlines() if line.startswith("- "))
        assert pts == q.points, f"{q.qid}: the rubric's points add up to {pts}, the question has {q.points}"


def test_release_strips_model_answers_and_rubrics(tmp_path):
    kit = make_release(tmp_path / "kit", quiet=True, repo_url="none")
    texts = {p.stem: p.read_text() for p in (kit / "notebooks").glob("*.ipynb")}
    for q in questions():
        assert q.model[:60] not in texts[q.notebook] and q.rubric[:60] not in texts[q.notebook], q.qid
    for text in texts.values():
        assert not any(m in text for m in (*SOLUTION, *MARK_SCHEME))
    found = [a for name, text in texts.items() for a in answers(text, name)]
    assert len(found) == len(questions()) and all(a.text == "" for a in found)
    assert PLACEHOLDER in texts["05_sampling_and_fid"]
    assert len(empty_answers(kit / "notebooks")) == len(questions()) and empty_answers(REPO / "notebooks") == []


def _graded(student: str, said: dict[str, str]) -> Graded:
    return Graded(student, "graded", {t: passed(task.points) for t, task in TASKS.items()}, answers=said)


def _grades_csv(out: Path, students: list[str]) -> None:
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["student", *TASKS, "total", "status"])
        w.writeheader()
        w.writerows(_graded(s, {}).row() for s in students)


def _fill(sheet: Path, points) -> None:
    rows = list(csv.DictReader(open(sheet)))
    for r in rows:
        if r["points"] == "":
            r["points"] = points(r)
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_sheet_merge_and_regrade(tmp_path):
    out = tmp_path / "grades"
    out.mkdir()
    ada = _graded("ada", {"q01": "Because the noise is N(0, I).\n| fake | row |", "q04": "t = 260 <script>x</script>"})
    bob = _graded("bob", {q.qid: "an answer" for q in questions()})
    _grades_csv(out, ["ada", "bob"])
    sheet = write_sheet([ada, bob], out)
    rows = list(csv.DictReader(open(sheet)))
    assert len(rows) == 2 * len(questions()) and {r["answered"] for r in rows if r["student"] == "bob"} == {"yes"}
    empty = [r for r in rows if r["student"] == "ada" and r["answered"] == "no"]
    assert len(empty) == len(questions()) - 2 and all(r["points"] == "0" and r["comment"] == "no answer" for r in empty)
    page = (out / "written" / "q04.md").read_text()
    assert "## Rubric" in page and "## Model answer" in page and "### ada" in page and "&lt;script&gt;" in page
    q01 = (out / "written" / "q01.md").read_text()
    assert "> Because the noise is N(0, I).\n> \\| fake \\| row \\|" in q01  # two lines, inert
    with pytest.raises(MergeError, match="bob / q01: points '' is not a number"):
        merge(out)
    _fill(sheet, lambda r: "1.5" if r["student"] == "ada" else r["max_points"])
    final, lms = merge(out)
    lms_rows = {r["student_id"]: r for r in csv.DictReader(open(lms))}
    assert lms_rows["bob"] == {"student_id": "bob", "total": "120", "code": "100", "written": "20"}
    assert lms_rows["ada"]["written"] == "3" and lms_rows["ada"]["total"] == "103"
    final_rows = list(csv.DictReader(open(final)))
    assert list(final_rows[0]) == ["student", *TASKS, "status", "code", *[q.qid for q in questions()], "written",
                                   "grand_total"]
    assert final_rows[0]["q01"] == "1.5" and final_rows[1]["grand_total"] == "120"
    # a point out of range is refused with where it is
    bad = list(csv.DictReader(open(sheet)))
    bad[0]["points"] = "9"
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(bad[0]))
        w.writeheader()
        w.writerows(bad)
    with pytest.raises(MergeError, match="ada / q01: 9 is outside 0..2"):
        merge(out)
    # regrading ada: her rows start again, bob's filled-in points stay
    write_sheet([_graded("ada", {"q01": "new"})], out, keep_others=True)
    rows = list(csv.DictReader(open(sheet)))
    assert [r["points"] for r in rows if r["student"] == "bob"] == [str(q.points) for q in questions()]
    assert [r["points"] for r in rows if r["student"] == "ada" and r["question"] == "q01"] == [""]


def test_the_answer_cells_are_nbgrader_cells():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader")
            if meta:
                assert cell["cell_type"] == "markdown" and meta["grade"] and meta["solution"], path.name
                assert meta["grade_id"] == cell["id"] and isinstance(meta["points"], int)
