"""The written half of the homework, for the instructor: the questions, each submission's answers, the grading
sheet, and the merge of its points with the autograder's into the final gradebook.

The questions live in the instructor's notebooks (hw3_utils/answers.py describes the cells): the prompt cell,
then the answer cell with its points, model answer and rubric. `make grade` writes

    OUT/written/sheet.csv     one row per student and question: points (to fill in), max points, comment
    OUT/written/<qid>.md      one page per question: prompt, rubric, model answer, then every student's answer

and `python -m grader merge OUT` (`make merge`) combines the filled sheet with OUT/grades.csv into
OUT/final/grades.csv (every part) and OUT/final/lms.csv (student id, total, code, written) for an LMS import.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from hw3_utils.answers import answers, cell_source, instructor_parts, is_answer_cell
from hw3_utils.atomic import atomic_write

from . import REPO
from .render import read_csv, write_csv

SHEET_FIELDS = ["student", "question", "max_points", "points", "comment", "answered"]


@dataclass
class Question:
    qid: str
    notebook: str
    points: int
    title: str  # "Question 4 · reading the schedule (2 points)"
    prompt: str
    rubric: str
    model: str


def questions(root: Path = REPO) -> list[Question]:
    """The written questions of the instructor's notebooks, in order."""
    out = []
    for path in sorted((Path(root) / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for k, cell in enumerate(cells):
            if not is_answer_cell(cell):
                continue
            src = cell_source(cell)
            prompt = cell_source(cells[k - 1]) if k else ""
            head, _, body = prompt.partition("\n")
            meta = cell["metadata"]["nbgrader"]
            model, rubric = instructor_parts(src)
            out.append(Question(meta["grade_id"], path.stem, int(meta["points"]), head.lstrip("# ").strip(),
                                body.strip(), rubric, model))
    return out


def written_answers(notebooks: dict) -> dict[str, str]:
    """{question id: what the student wrote} from a submission's notebooks as extract.read_notebooks read
    them (checked JSON, or the error of one that cannot be read, which adds no answers). Untrusted text."""
    out = {}
    for name, nb in sorted(notebooks.items()):
        if isinstance(nb, dict):
            out.update({a.qid: a.text for a in answers(nb, Path(name).stem)})
    return out


def write_sheet(graded: list, out: Path, keep_others: bool = False) -> Path:
    """OUT/written/sheet.csv and one page per question. `keep_others` (a regrade): the rows of students not in
    `graded` stay as they are, points filled in included; the regraded students' rows start blank again."""
    qs = questions()
    folder = Path(out) / "written"
    folder.mkdir(parents=True, exist_ok=True)
    sheet = folder / "sheet.csv"
    regraded = {g.student for g in graded}
    rows = [r for r in read_csv(sheet) if r["student"] not in regraded] if keep_others and sheet.exists() else []
    for g in graded:
        for q in qs:
            text = g.answers.get(q.qid, "")
            answered = bool(re.sub(r"[>\s]", "", text))
            rows.append({"student": g.student, "question": q.qid, "max_points": q.points,
                         "points": "" if answered else 0, "comment": "" if answered else "no answer",
                         "answered": "yes" if answered else "no"})
    rows.sort(key=lambda r: (r["student"], r["question"]))
    write_csv(sheet, SHEET_FIELDS, rows)
    for q in qs:
        page = [f"# {q.qid} · {q.title}", "", f"From `{q.notebook}`, {q.points} points.", "", q.prompt, "",
                "## Rubric", "", q.rubric, "", "## Model answer", "", q.model, "", "## Answers", ""]
        for g in sorted(graded, key=lambda g: g.student):
            text = g.answers.get(q.qid, "")
            page += [f"### {g.student}", "", text if re.sub(r"[>\s]", "", text) else "_no answer_", ""]
        atomic_write(folder / f"{q.qid}.md", "\n".join(page) + "\n")
    return sheet


class MergeError(ValueError):
    """The sheet cannot be merged: points missing or out of range, unknown students or questions."""


def merge(out: Path) -> tuple[Path, Path]:
    """OUT/grades.csv (the autograder's) + OUT/written/sheet.csv (filled in) -> OUT/final/grades.csv and
    OUT/final/lms.csv. Refuses, listing every problem, when a point is missing or out of range."""
    out = Path(out)
    auto = read_csv(out / "grades.csv")
    sheet = read_csv(out / "written" / "sheet.csv")
    qs = {q.qid: q for q in questions()}
    students = {r["student"] for r in auto}
    problems, written = [], {s: {} for s in students}
    for r in sheet:
        where = f"sheet.csv: {r.get('student')} / {r.get('question')}"
        if r.get("student") not in students:
            problems.append(f"{where}: no such student in grades.csv")
            continue
        if r.get("question") not in qs:
            problems.append(f"{where}: no such question")
            continue
        try:
            p = float(r.get("points", ""))
        except ValueError:
            problems.append(f"{where}: points {r.get('points')!r} is not a number (fill it in)")
            continue
        if not 0 <= p <= qs[r["question"]].points:
            problems.append(f"{where}: {p:g} is outside 0..{qs[r['question']].points}")
            continue
        written[r["student"]][r["question"]] = p
    for s in sorted(students):
        problems += [f"sheet.csv: {s} / {q}: missing" for q in qs if q not in written[s]]
    if problems:
        raise MergeError("the grading sheet cannot be merged:\n" + "\n".join(problems))
    final_fields = [*auto[0].keys(), *qs, "written", "grand_total"] if auto else []
    final_fields = [f for f in final_fields if f != "total"]
    final_fields.insert(final_fields.index(next(iter(qs))) if qs else len(final_fields), "code")
    final, lms = [], []
    for r in sorted(auto, key=lambda r: r["student"]):
        pts = written[r["student"]]
        w = sum(pts.values())
        row = {k: v for k, v in r.items() if k != "total"}
        row.update({"code": r["total"], **{q: f"{pts[q]:g}" for q in qs}, "written": f"{w:g}",
                    "grand_total": f"{float(r['total']) + w:g}"})
        final.append(row)
        lms.append({"student_id": r["student"], "total": row["grand_total"], "code": r["total"], "written": f"{w:g}"})
    (out / "final").mkdir(exist_ok=True)
    write_csv(out / "final" / "grades.csv", final_fields, final)
    write_csv(out / "final" / "lms.csv", ["student_id", "total", "code", "written"], lms)
    return out / "final" / "grades.csv", out / "final" / "lms.csv"
