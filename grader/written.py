"""The written half of the homework, for the instructor: the questions frozen at release, each submission's
answers, the grading sheet, and the merge of its points with the autograder's into the final gradebook.

The questions live in the instructor's notebooks (hw3_utils/answers.py describes the cells). `make release`
freezes them (points, prompts, rubrics, model answers) into QUESTIONS_FILE, an instructor-only file never
shipped; grading copies it into OUT and grading and merging read that copy, so an edit of the notebooks after
the release changes no one's maximum. `make grade` writes

    OUT/written/questions.json  the frozen questions this OUT is graded against
    OUT/written/answers.json    every student's answers (text, sha256, where found), their run's figures and FID
    OUT/written/sheet.csv       one row per student and question: points (to fill in), max points, comment,
                                answered, flag (why to look: moved, duplicated, changed since graded)
    OUT/written/<qid>.html      one page per question (grader/ta_view.py), from the whole store

A regrade (`make regrade`, `update=True`) replaces the regraded students in the store and keeps everyone
else; a student's row keeps its points and comment while the answer's sha256 is unchanged, and is blanked and
flagged when the answer changed. `python -m grader merge OUT` (`make merge`) combines the filled sheet with
OUT/grades.csv into OUT/final/grades.csv and lms.csv, writes the written points and the TA's comments into
each student's feedback (OUT/feedback/<student>.md), and the same as Gradescope tests
(OUT/final/gradescope_written.json, which `make gradescope WRITTEN=...` bundles).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from hw3_utils.answers import QUESTION_ID, cell_source, instructor_parts, is_answer_cell, read_all
from hw3_utils.atomic import atomic_write

from . import REPO
from .render import read_csv, safe_name, untrusted, write_csv

SHEET_FIELDS = ["student", "question", "max_points", "points", "comment", "answered", "flag"]
QUESTIONS_FILE = REPO / "grader" / "questions.json"  # written by `make release`; keep it with the release
QUESTIONS = "questions.json"  # OUT/written/'s copy
STORE = "answers.json"
CHANGED = "answer changed since it was graded: look again"
OTHERS_KEPT = 3  # copies of one answer kept beside the one that counts (on the page, in the store)
FEEDBACK_HEADING = "## Written answers"


@dataclass
class Question:
    qid: str
    notebook: str
    points: int
    title: str  # "Question 4 · reading the schedule (2 points)"
    prompt: str
    rubric: str
    model: str


def questions(root: Path = REPO, without=()) -> list[Question]:
    """The written questions of the instructor's notebooks as they are now, in order; those of the optional
    extensions `without` (a release's WITHOUT, release.left_out) left out."""
    out = []
    for path in sorted((Path(root) / "notebooks").glob("*.ipynb")):
        if _left_out(path.stem, without):
            continue
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


def _left_out(notebook: str, without) -> bool:
    """Whether a release without the extensions `without` leaves out the notebook named `notebook` (its stem)."""
    from .release import left_out

    return bool(without) and left_out(f"notebooks/{notebook}.ipynb", without)


def _write_questions(path: Path, qs: list[Question], commit: str | None, without=()) -> Path:
    atomic_write(Path(path), json.dumps({"source_commit": commit, "without": list(without),
                                         "total_points": sum(q.points for q in qs),
                                         "questions": [asdict(q) for q in qs]}, indent=1) + "\n")
    return Path(path)


def freeze(path: Path = QUESTIONS_FILE, root: Path = REPO, commit: str | None = None, without=()) -> Path:
    """Write the questions of `root`'s notebooks to `path` (`make release` does, beside the kit, never in it);
    a release without the extensions `without` freezes none of theirs."""
    return _write_questions(path, questions(root, without), commit, without)


def load_questions(path: Path) -> list[Question]:
    return [Question(**q) for q in json.loads(Path(path).read_text(encoding="utf-8"))["questions"]]


def graded_questions(out: Path, source: Path | None = None, without=()) -> list[Question]:
    """The questions OUT is graded against: its own copy; else the release's frozen file (`source`), copied in;
    else, with a warning, the notebooks as they are now (frozen into OUT from then on). A grading without the
    extensions `without` (`make grade WITHOUT=...`) copies none of their questions."""
    copy, source = Path(out) / "written" / QUESTIONS, Path(source or QUESTIONS_FILE)
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            commit = json.loads(source.read_text(encoding="utf-8")).get("source_commit")
            _write_questions(copy, [q for q in load_questions(source) if not _left_out(q.notebook, without)], commit,
                             without)
        else:
            if (REPO / "notebooks").is_dir():
                print(f"warning: {source} does not exist (`make release` writes it): the questions are read from "
                      f"the notebooks as they are now and frozen in {copy}", file=sys.stderr)
            freeze(copy, without=without)
    return load_questions(copy)


def _said_without(path: Path) -> tuple[str, ...] | None:
    """The extensions a release left out as `path` records them (RELEASE.json, or a frozen questions file: its
    "without"); None where the file is missing, unreadable or silent on it."""
    try:
        said = json.loads(Path(path).read_text(encoding="utf-8")).get("without")
    except (OSError, ValueError, AttributeError):
        return None
    return tuple(str(x) for x in said) if isinstance(said, list) else None


def _option(without) -> str:
    return f"WITHOUT={','.join(without)}" if without else "no WITHOUT"


def release_without(without, out: Path, release_dir: Path | None = None) -> tuple[str, ...]:
    """The extensions a grading into `out` leaves out: `without` (`make grade WITHOUT=`), checked against what the
    release says it left out: the prebuilt kit's RELEASE.json (whose word stands when `without` is empty), and the
    questions this OUT is graded against (OUT's copy, else QUESTIONS_FILE, as `graded_questions`). A mismatch
    raises release.ReleaseError saying which WITHOUT to pass: graded otherwise, the left-out tasks and questions
    would be scored 0 for every student, or the kit's own left out."""
    from .release import ReleaseError

    without = tuple(without or ())
    copy = Path(out) / "written" / QUESTIONS
    sources = [copy if copy.is_file() else QUESTIONS_FILE]
    if release_dir is not None:
        sources.insert(0, Path(release_dir) / "RELEASE.json")
        kit = _said_without(sources[0])
        without = kit if kit is not None and not without else without
    for path in sources:
        said = _said_without(path)
        if said is not None and set(said) != set(without):
            raise ReleaseError(
                f"{path} says the students' release was made with {_option(said)}, but this grading has "
                f"{_option(without)}: grade with {_option(said)} as the release was made (make grade SUBMISSIONS=DIR"
                f"{' WITHOUT=' + ','.join(said) if said else ''}; python -m grader grade"
                f"{' --without ' + ','.join(said) if said else ''}), or make the release again")
    return without


# what a submission says ------------------------------------------------------------------------------------
def written_answers(notebooks: dict) -> dict[str, str]:
    """{question id: the text that counts} from a submission's notebooks as extract.read_notebooks read them
    (checked JSON, or the error of one that cannot be read, which adds no answers). Untrusted text."""
    return {qid: c.answer.text for qid, c in read_all(_readable(notebooks)).items()}


def _readable(notebooks: dict) -> dict:
    return {name: nb for name, nb in notebooks.items() if isinstance(nb, dict)}


def submission_written(notebooks: dict, files: dict[str, Path]) -> tuple[dict, dict, list[str]]:
    """(answers {qid: text}, the rest of the written half for `Graded.written`, flags for a human look) of one
    submission: its notebooks as extract.read_notebooks read them and its extracted files (for fid.json).
    written = {"flags": {qid: [...]}, "others": {qid: [texts of copies not counted]},
               "run": {notebook: ta_view.notebook_run}, "fid": ta_view.fid_rows of its fid.json or None}."""
    from hw3_utils.student_files import Unreadable, load_json

    from .extract import FID_RE
    from .ta_view import fid_rows, notebook_run

    readable = _readable(notebooks)
    chosen = {q: c for q, c in read_all(readable).items() if QUESTION_ID.fullmatch(q)}  # no other id is ever asked
    fid = None
    for name in sorted(n for n in files if FID_RE.match(n))[:1]:
        try:
            fid = fid_rows(load_json(files[name]))
        except Unreadable:
            fid = None
    written = {"flags": {q: c.flags for q, c in chosen.items() if c.flags},
               "others": {q: [a.text for a in c.others[:OTHERS_KEPT]] for q, c in chosen.items() if c.others},
               "run": {Path(name).stem: notebook_run(nb) for name, nb in sorted(readable.items())}, "fid": fid}
    return {q: c.answer.text for q, c in chosen.items()}, written, [f for c in chosen.values() for f in c.flags]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def store_entry(g, folder: Path, qids) -> dict:
    """One student's entry of the store from their `Graded` record: their answers to the questions `qids` (the
    frozen ones), with at most OTHERS_KEPT other copies each; their figures written to run/<student>/."""
    import shutil

    w = g.written or {}
    entry = {"answers": {}, "run": {}, "fid": w.get("fid")}
    for qid, text in g.answers.items():
        if qid in qids:
            entry["answers"][qid] = {"text": text, "sha256": _sha(text), "flags": w.get("flags", {}).get(qid, []),
                                     "others": w.get("others", {}).get(qid, [])[:OTHERS_KEPT]}
    figures = folder / "run" / g.student
    shutil.rmtree(figures, ignore_errors=True)
    for nb, shown in (w.get("run") or {}).items():
        files = {}
        for name, data in shown.get("figures", {}).items():
            files[name] = f"{safe_name(nb)}_{name}.png"
            figures.mkdir(parents=True, exist_ok=True)
            atomic_write(figures / files[name], data)
        entry["run"][nb] = {"figures": files, "printed": shown.get("printed", []),
                            "writes_fid": shown.get("writes_fid", False)}
    return entry


# the sheet, the store, the pages ----------------------------------------------------------------------------
def _row(student: str, q: Question, answer: dict, old: dict | None, old_sha: str | None) -> dict:
    """The sheet's row for one answer: blank points (0 when unanswered) and its flags; while the answer is
    unchanged since `old` (its sha256 `old_sha`), the old row's points and comment. CHANGED flags an answer that
    changed, and stays until the TA scores it."""
    text = answer.get("text", "")
    answered = bool(re.sub(r"[>\s]", "", text))
    unchanged = old is not None and old_sha == _sha(text)
    unscored = unchanged and old.get("points", "") == "" and CHANGED in old.get("flag", "")
    flags = list(answer.get("flags", [])) + ([CHANGED] if old is not None and answered and (
        not unchanged or unscored) else [])
    row = {"student": student, "question": q.qid, "max_points": q.points, "points": "" if answered else 0,
           "comment": "" if answered else "no answer", "answered": "yes" if answered else "no",
           "flag": "; ".join(flags)}
    if unchanged:
        row.update(points=old.get("points", ""), comment=old.get("comment", ""))
    return row


def write_sheet(graded: list, out: Path, keep_others: bool = False, without=()) -> Path:
    """The store, OUT/written/sheet.csv and the pages, for the students in `graded`. `keep_others` (a regrade):
    every other student stays in the store, the sheet and the pages as they were. `without`: the extensions the
    release left out (`graded_questions`)."""
    from .ta_view import write_pages

    folder = Path(out) / "written"
    folder.mkdir(parents=True, exist_ok=True)
    qs = graded_questions(out, without=without)
    sheet, store_path = folder / "sheet.csv", folder / STORE
    old_store = json.loads(store_path.read_text(encoding="utf-8")) if store_path.exists() else {}
    old_rows = {(r["student"], r["question"]): r for r in read_csv(sheet)} if sheet.exists() else {}
    regraded = {g.student for g in graded}
    store = {s: e for s, e in old_store.items() if keep_others and s not in regraded}
    rows = [r for (s, _), r in old_rows.items() if s in store]
    for g in graded:
        store[g.student] = store_entry(g, folder, {q.qid for q in qs})
        before = old_store.get(g.student, {}).get("answers", {})
        for q in qs:
            rows.append(_row(g.student, q, store[g.student]["answers"].get(q.qid, {}),
                             old_rows.get((g.student, q.qid)), before.get(q.qid, {}).get("sha256")))
    rows.sort(key=lambda r: (r["student"], r["question"]))
    atomic_write(store_path, json.dumps(store, indent=1, ensure_ascii=True) + "\n")
    write_csv(sheet, SHEET_FIELDS, rows)
    write_pages(qs, store, folder)
    return sheet


# the merge -------------------------------------------------------------------------------------------------
class MergeError(ValueError):
    """The sheet cannot be merged: points missing or out of range, unknown students or questions."""


def _points(sheet: list[dict], qs: dict, students: set) -> dict:
    """{student: {qid: (points, comment)}} of the filled sheet; MergeError listing every problem."""
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
        written[r["student"]][r["question"]] = (p, r.get("comment") or "")
    for s in sorted(students):
        problems += [f"sheet.csv: {s} / {q}: missing" for q in qs if q not in written[s]]
    if problems:
        raise MergeError("the grading sheet cannot be merged:\n" + "\n".join(problems))
    return written


def feedback_section(qs: dict, pts: dict) -> str:
    """The written half of a student's feedback (Markdown): points and the TA's comment (made safe) per question."""
    total = sum(p for p, _ in pts.values())
    lines = [FEEDBACK_HEADING, "", f"Written: **{total:g} / {sum(q.points for q in qs.values())}**", "",
             "| question | points | comment |", "| --- | --- | --- |"]
    for qid, q in qs.items():
        p, comment = pts[qid]
        lines.append(f"| {untrusted(q.title, 200)} | {p:g} / {q.points} | {untrusted(comment)} |")
    return "\n".join(lines) + "\n"


def _write_feedback(out: Path, student: str, section: str) -> None:
    """Put the written section into OUT/feedback/<student>.md, in place of an earlier one (merge runs again)."""
    path = out / "feedback" / f"{safe_name(student)}.md"
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Feedback for {safe_name(student)}\n"
    text = text.split("\n" + FEEDBACK_HEADING + "\n", 1)[0].rstrip("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text + "\n\n" + section)


def merge(out: Path) -> tuple[Path, Path]:
    """OUT/grades.csv (the autograder's) + OUT/written/sheet.csv (filled in) -> OUT/final/grades.csv and
    OUT/final/lms.csv; the written points and comments into each feedback file and into
    OUT/final/gradescope_written.json. Refuses, listing every problem, when a point is missing or out of range."""
    from .gradescope import written_tests

    out = Path(out)
    auto = read_csv(out / "grades.csv") if (out / "grades.csv").is_file() else []
    if not auto:
        raise MergeError(f"{out / 'grades.csv'} holds no student (missing or empty): grade the submissions first "
                         f"(make grade SUBMISSIONS=DIR OUT={out}), fill in {out / 'written' / 'sheet.csv'}, then merge")
    qs = {q.qid: q for q in graded_questions(out)}
    written = _points(read_csv(out / "written" / "sheet.csv"), qs, {r["student"] for r in auto})
    final_fields = [*auto[0].keys(), *qs, "written", "grand_total"]
    final_fields = [f for f in final_fields if f != "total"]
    final_fields.insert(final_fields.index(next(iter(qs))) if qs else len(final_fields), "code")
    final, lms, tests = [], [], {}
    for r in sorted(auto, key=lambda r: r["student"]):
        pts = written[r["student"]]
        w = sum(p for p, _ in pts.values())
        row = {k: v for k, v in r.items() if k != "total"}
        row.update({"code": r["total"], **{q: f"{pts[q][0]:g}" for q in qs}, "written": f"{w:g}",
                    "grand_total": f"{float(r['total']) + w:g}"})
        final.append(row)
        lms.append({"student_id": r["student"], "total": row["grand_total"], "code": r["total"], "written": f"{w:g}"})
        _write_feedback(out, r["student"], feedback_section(qs, pts))
        tests[r["student"]] = written_tests(qs, pts)
    (out / "final").mkdir(exist_ok=True)
    write_csv(out / "final" / "grades.csv", final_fields, final)
    write_csv(out / "final" / "lms.csv", ["student_id", "total", "code", "written"], lms)
    atomic_write(out / "final" / "gradescope_written.json", json.dumps(tests, indent=1) + "\n")
    return out / "final" / "grades.csv", out / "final" / "lms.csv"
