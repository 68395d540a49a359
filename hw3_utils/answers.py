"""The written half of the homework: the answer cells of the notebooks, and which of them are still empty.

Each written question is a Markdown prompt cell followed by an answer cell, marked as nbgrader marks a
manually graded answer: cell metadata `nbgrader = {grade: true, solution: true, points: P, grade_id: "q04"}`.
In the instructor's kit the answer cell is the hint line (HINT), then one solution region (SOLUTION's two
marker lines) holding the model answer followed by the rubric between MARK_SCHEME's two marker lines: a mark
scheme inside the solution region is where nbgrader accepts one in such a cell, and where nbgrader's checksum
of the released cell leaves it out, so that a blank answer still scores 0 by itself. Each marker stands on a
line of its own.
The student release has `YOUR ANSWER HERE` in place of the region (grader/release.py, as nbgrader's
ClearSolutions does), and the cell is marked `deletable: false`. The grader reads the answers from the
submitted notebooks; `python -m hw3_utils.checks` and `make submit` say which are still empty.

Where an answer is looked for (`answers`), and which copy counts (`choose`): a question's answer is its answer
cell (nbgrader metadata with its grade_id), wherever it sits; failing that, a Markdown cell without that
metadata whose cell id is the question's id, or that holds the hint line under the question's prompt (a cell
retyped or pasted after the metadata was lost). Of several copies, the first with text counts, in this order:
the answer cell under its own prompt, any other answer cell, a cell found by its id or hint; then notebook
order. Every answer not taken from its own cell under its prompt, and every question with more than one
copy holding text, is flagged for the person grading.
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


QUESTION_HEADING = re.compile(r"#+\s*Question\s+(\d+)\b")  # a prompt cell's first line: "### Question 4 · ..."
TEXT_CHARS = 20_000  # of one answer; longer text is cut (a few sentences are asked for)
QUESTION_ID = re.compile(r"q\d\d")  # `question_id`'s form: the only ids a question has


def question_id(number: int) -> str:
    """The grade_id of question `number`: "q04" (the answer cell's id and metadata, the sheet's column)."""
    return f"q{number:02d}"


@dataclass
class Answer:
    qid: str  # "q04"
    notebook: str  # "03_forward_diffusion"
    points: int  # from the cell's metadata (0 where it has none)
    text: str  # what the student wrote (the hint, the placeholder and any rubric removed)
    cell: int = 0  # its index in the notebook
    found_by: str = "cell"  # "cell": its answer cell; "id": a cell with the question's id; "hint": the hint line
    in_place: bool = True  # right under its own question's prompt

    @property
    def where(self) -> str:
        return f"{self.notebook}, cell {self.cell + 1}"


@dataclass
class Chosen:
    """The copy of an answer that counts, the other copies with text, and why a person should look."""

    answer: Answer
    others: list[Answer]
    flags: list[str]


def cell_source(cell: dict) -> str:
    """A notebook cell's source as one string (nbformat stores a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def is_answer_cell(cell: dict) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell.get("metadata"), dict) else {}
    return cell.get("cell_type") == "markdown" and isinstance(meta, dict) and bool(
        meta.get("grade") and meta.get("solution") and meta.get("grade_id"))


def _region(text: str, markers: tuple[str, str], start: int = 0) -> tuple[int, int] | None:
    """(begin, end) of the first region of `text` from `start` that opens with markers[0] and closes with the
    nearest markers[1] after it, both markers included; None when there is none."""
    b = text.find(markers[0], start)
    e = text.find(markers[1], b + len(markers[0])) if b >= 0 else -1
    return (b, e + len(markers[1])) if e >= 0 else None


def between(text: str, markers: tuple[str, str]) -> str:
    """The text between a (begin, end) pair of markers, stripped; "" when they are not there."""
    found = _region(text, markers)
    return text[found[0] + len(markers[0]):found[1] - len(markers[1])].strip() if found else ""


def without_regions(text: str, markers: tuple[str, str]) -> str:
    """`text` without every region between a (begin, end) pair of markers, the markers included. Linear in the
    text: once a begin marker has no end after it, no later one has (a regex with .*? would rescan the rest
    for every begin marker)."""
    parts, at = [], 0
    while found := _region(text, markers, at):
        parts.append(text[at:found[0]])
        at = found[1]
    return "".join(parts) + text[at:]


def instructor_parts(src: str) -> tuple[str, str]:
    """(model answer, rubric) of an instructor's answer cell: the solution region without its mark scheme,
    and the mark scheme; "" for a part that is not there."""
    region = between(src, SOLUTION)
    return without_regions(region, MARK_SCHEME).strip(), between(region, MARK_SCHEME)


def answer_text(src: str) -> str:
    """What a student wrote in an answer cell: without the hint line, the placeholder and any rubric."""
    text = without_regions(src, MARK_SCHEME)
    for marker in (*SOLUTION, HINT, PLACEHOLDER):
        text = text.replace(marker, "")
    return text.strip()


def prompt_qid(cell: dict) -> str | None:
    """The question id a prompt cell asks ("### Question 4 · ..." -> "q04"), else None."""
    if cell.get("cell_type") != "markdown":
        return None
    m = QUESTION_HEADING.match(cell_source(cell).lstrip())
    return question_id(int(m.group(1))) if m and len(m.group(1)) < 4 else None


def answers(nb: str | dict, notebook: str) -> list[Answer]:
    """Every answer found in one notebook, in cell order (module docstring: answer cells, and cells that lost
    their metadata); `nb` is its JSON text or its parsed dict, checked here (hw3_utils.student_files); a
    malformed one raises `Unreadable` (a ValueError) saying what is wrong."""
    nb = parse_notebook(nb) if isinstance(nb, str) else check_notebook(nb)
    out, asked, prev = [], None, None  # asked: the question of the nearest prompt above
    for k, cell in enumerate(nb["cells"]):
        src = cell_source(cell)
        qid, found_by, points = None, "cell", 0
        if is_answer_cell(cell):
            meta = cell["metadata"]["nbgrader"]
            qid = str(meta["grade_id"])[:40]
            points = int(meta.get("points") or 0)
        elif cell.get("cell_type") == "markdown" and prompt_qid(cell) is None:
            cid = str(cell.get("id", ""))
            if QUESTION_ID.fullmatch(cid):
                qid, found_by = cid, "id"
            elif HINT in src and asked:
                qid, found_by = asked, "hint"
        if qid:
            out.append(Answer(qid, notebook, points, answer_text(src)[:TEXT_CHARS], k, found_by, prev == qid))
        prev = prompt_qid(cell)
        asked = prev or asked
    return out


def choose(found: list[Answer]) -> dict[str, Chosen]:
    """{question id: the copy that counts} over the answers of all notebooks (module docstring)."""
    by_qid: dict[str, list[Answer]] = {}
    for a in found:
        by_qid.setdefault(a.qid, []).append(a)
    out = {}
    for qid, copies in by_qid.items():
        ranked = sorted(copies, key=lambda a: (not a.text, a.found_by != "cell", not a.in_place, a.notebook, a.cell))
        first, flags = ranked[0], []
        if first.found_by != "cell":
            what = "its cell id" if first.found_by == "id" else "the hint line under the question"
            flags.append(f"{qid}: taken from a cell without its answer metadata ({first.where}, found by {what})")
        elif not first.in_place and first.text:
            flags.append(f"{qid}: its answer cell was moved ({first.where}, not under the question)")
        others = [a for a in ranked[1:] if a.text]
        if first.text and others:
            flags.append(f"{qid}: {1 + len(others)} copies hold text; the one in {first.where} counts (its own "
                         "cell first, then the first in notebook order)")
        out[qid] = Chosen(first, others, flags)
    return out


def read_all(notebooks: dict[str, str | dict]) -> dict[str, Chosen]:
    """`choose` over the notebooks {name: JSON text or checked dict}; a notebook that cannot be read adds none."""
    found = []
    for name, nb in sorted(notebooks.items()):
        try:
            found += answers(nb, Path(name).stem)
        except ValueError:  # student_files.Unreadable
            continue
    return choose(found)


def empty_answers(notebooks: Path) -> list[str]:
    """'03_forward_diffusion: q04 (2 points)' for every question of the saved notebooks still unanswered."""
    texts = {}
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        try:
            texts[path.name] = load_notebook(path)
        except ValueError:
            continue
    chosen = read_all(texts)
    return [f"{c.answer.notebook}: {qid} ({c.answer.points} points)" for qid, c in sorted(chosen.items())
            if not c.answer.text]
