"""The written half of the homework: the answer cells of the notebooks, and which of them are still empty.

Each written question is a Markdown prompt cell followed by an answer cell, marked as nbgrader marks a
manually graded answer: cell metadata `nbgrader = {grade: true, solution: true, points: P, grade_id: "q04"}`.
In the instructor's kit the answer cell is the hint line (HINT), then one solution region (SOLUTION's two
marker lines) holding the model answer followed by the rubric between MARK_SCHEME's two marker lines: a mark
scheme inside the solution region is where nbgrader accepts one in such a cell, and where nbgrader's checksum
of the released cell leaves it out, so that a blank answer still scores 0 by itself. Each marker stands on a
line of its own.
The student release has `YOUR ANSWER HERE` in place of the region (grader/release.py, as nbgrader's
ClearSolutions does). The grader reads the answers from the submitted notebooks; `python -m hw3_utils.checks`
and `make submit` say which are still empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .student_files import check_notebook, load_notebook, parse_notebook

PLACEHOLDER = "YOUR ANSWER HERE"
HINT = "**Your answer** (edit this cell; a few sentences, Markdown):"
SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
MARK_SCHEME = ("=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ===")


@dataclass
class Answer:
    qid: str  # "q04"
    notebook: str  # "03_forward_diffusion"
    points: int
    text: str  # what the student wrote (the hint, the placeholder and any rubric removed)


def cell_source(cell: dict) -> str:
    """A notebook cell's source as one string (nbformat stores a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def is_answer_cell(cell: dict) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell.get("metadata"), dict) else {}
    return cell.get("cell_type") == "markdown" and isinstance(meta, dict) and bool(
        meta.get("grade") and meta.get("solution") and meta.get("grade_id"))


def between(text: str, markers: tuple[str, str]) -> str:
    """The text between a (begin, end) pair of markers, stripped; "" when they are not there."""
    m = re.search(re.escape(markers[0]) + r"(.*?)" + re.escape(markers[1]), text, re.S)
    return m.group(1).strip() if m else ""


def instructor_parts(src: str) -> tuple[str, str]:
    """(model answer, rubric) of an instructor's answer cell: the solution region without its mark scheme,
    and the mark scheme; "" for a part that is not there."""
    region = between(src, SOLUTION)
    rubric = between(region, MARK_SCHEME)
    model = re.sub(re.escape(MARK_SCHEME[0]) + ".*?" + re.escape(MARK_SCHEME[1]), "", region, flags=re.S)
    return model.strip(), rubric


def answer_text(src: str) -> str:
    """What a student wrote in an answer cell: without the hint line, the placeholder and any rubric."""
    text = re.sub(re.escape(MARK_SCHEME[0]) + ".*?" + re.escape(MARK_SCHEME[1]), "", src, flags=re.S)
    for marker in (*SOLUTION, HINT, PLACEHOLDER):
        text = text.replace(marker, "")
    return text.strip()


def answers(nb: str | dict, notebook: str) -> list[Answer]:
    """The answer cells of one notebook, in order: `nb` is its JSON text or its parsed dict, checked here
    (hw3_utils.student_files); a malformed one raises `Unreadable` (a ValueError) saying what is wrong."""
    nb = parse_notebook(nb) if isinstance(nb, str) else check_notebook(nb)
    out = []
    for cell in nb["cells"]:
        if is_answer_cell(cell):
            meta = cell["metadata"]["nbgrader"]
            points = meta.get("points", 0)
            out.append(Answer(str(meta["grade_id"])[:40], notebook, int(points) if points is not None else 0,
                              answer_text(cell_source(cell))))
    return out


def empty_answers(notebooks: Path) -> list[str]:
    """'03_forward_diffusion: q04 (2 points)' for every answer cell of the saved notebooks still empty."""
    out = []
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        try:
            found = answers(load_notebook(path), path.stem)
        except ValueError:
            continue
        out += [f"{a.notebook}: {a.qid} ({a.points} points)" for a in found if not a.text]
    return out
