"""What a grade says: typed task results, and the one place where text from a submission is made safe.

Every string in a `Graded` record (the student's name, each task's message, the notes on the zip, the
notebooks, fid.json and the manifest, the flags) can carry what a submission wrote: an exception message, a
file name, a profile name, a manifest field. `untrusted()` makes each of them safe once, when the record is
built (`Graded.__post_init__`): control characters and terminal escape sequences removed, line breaks made
spaces, and the characters that HTML or Markdown would read as structure escaped. grades.csv, the feedback
files, summary.md, Gradescope's results.json and the terminal all print the record as it is. The written
answers are the exception: kept as written (capped), they reach a page only through grader/ta_view.py's
sanitizer, and a TA's comment reaches the feedback through `untrusted` (grader/written.py).

Failure kinds are a field (`Kind`), which the summary and the look-flags read; no decision matches words.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from hw3_utils.answers import TEXT_CHARS
from hw3_utils.atomic import atomic_write

from .extract import kit_tasks

LIMIT = 1000  # characters of one message or note
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
# HTML first (& < >), then what CommonMark reads inline: code spans, emphasis, links and images, tables,
# strikethrough, and the backslash itself. Intraword underscores (hw3_utils) never form emphasis: kept.
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MARKDOWN = re.compile(r"([\\`*\[\]|~])")


def untrusted(text, limit: int = LIMIT) -> str:
    """`text` made safe to print in Markdown, HTML and a terminal: one line, no control characters, no
    HTML or Markdown structure, at most `limit` characters (cut with an ellipsis)."""
    s = _ANSI.sub("", str(text))
    s = re.sub(r"[\r\n\t\v\f]+", " ", s)
    s = _CONTROL.sub("", s)
    if len(s) > limit:
        s = s[:limit - 1] + "…"
    s = "".join(_HTML.get(c, c) for c in s)
    return _MARKDOWN.sub(r"\\\1", s)


NAME_CHARS = 80  # of a student id
HASH_CHARS = 8  # of the hash that tells apart two zips whose names give one id


def safe_name(name) -> str:
    """A student or question id as a file name and CSV field: letters, digits, '_', '.', '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))[:NAME_CHARS] or "submission"


def _hashed(name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    return f"{safe_name(name)[:NAME_CHARS - HASH_CHARS - 1]}_{digest}"


def student_ids(names, taken=()) -> tuple[dict[str, str], dict[str, str]]:
    """({name: student id}, {name: why to look}) for the zips' stems `names` of one batch. The id is `safe_name`'s,
    unless two names give one id (`a b` and `a_b`, or two long names cut alike): then each of those gets it with a
    short hash of its own name, and a flag. A name whose hashed id is in `taken` (the students of OUT's earlier
    grading, for a regrade) keeps it."""
    names = list(names)
    by_id: dict[str, list[str]] = {}
    for name in names:
        by_id.setdefault(safe_name(name), []).append(name)
    ids, flags, taken = {}, {}, set(taken)
    for name in names:
        same = by_id[safe_name(name)]
        if len(same) > 1 or _hashed(name) in taken:
            ids[name] = _hashed(name)
            others = ", ".join(repr(n) for n in same if n != name) or "an earlier grading's"
            flags[name] = (f"the zip {name!r} gives the id {safe_name(name)} as {others} does: graded as "
                           f"{ids[name]} (match it to the student by hand)")
        else:
            ids[name] = safe_name(name)
    return ids, flags


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, fields: list[str], rows) -> None:
    """A CSV written atomically (grades.csv, the grading sheet, the final gradebook)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


class Kind(enum.Enum):
    """How a task went, as the summary and the look-flags read it."""

    PASS = "pass"
    WRONG = "wrong"  # ran, outputs differ (or malformed)
    NOT_IMPLEMENTED = "not implemented"
    ERROR = "error"  # the student's code raised
    CRASH = "crash"  # the process died (signal, exit, memory)
    TIMEOUT = "timeout"
    NOT_SUBMITTED = "not submitted"  # rejected zip, missing file, no task files
    SANDBOX = "sandbox"  # the sandbox could not start: the grader's problem

    @property
    def needs_look(self) -> bool:
        return self in (Kind.CRASH, Kind.TIMEOUT, Kind.SANDBOX)


@dataclass
class TaskResult:
    points: int
    kind: Kind
    message: str  # "PASS" or what failed, over all cases
    public: str = ""  # the same over the public cases only ("" when it is `message`): what shows before the due date

    def __post_init__(self):
        self.message = untrusted(self.message)
        self.public = untrusted(self.public) if self.public else self.message


def passed(points: int, public: str = "") -> TaskResult:
    return TaskResult(points, Kind.PASS, "PASS", public)


def failed(kind: Kind, message: str, public: str = "") -> TaskResult:
    return TaskResult(0, kind, f"FAIL: {message}", public)


@dataclass
class Graded:
    """One graded submission: rendered as grades.csv's row, the Markdown feedback and Gradescope's results.json.
    Its strings are made safe once, here (`untrusted`)."""

    student: str
    status: str  # "graded", "rejected: ...", "no task files"
    tasks: dict[str, TaskResult]
    notes: list[str] = field(default_factory=list)
    sandbox: str = ""  # how the code ran (grader/sandbox.py's description of the mode)
    flags: list[str] = field(default_factory=list)  # why a human should look (grader/summary.py)
    # the written half, kept as written (capped) for the TA's pages, which render it only through their
    # sanitizer (grader/ta_view.py): answers by question id, and grader.written.submission_written's rest
    answers: dict[str, str] = field(default_factory=dict)
    written: dict = field(default_factory=dict)

    def __post_init__(self):
        self.student = safe_name(self.student)
        self.status = untrusted(self.status, 200)
        self.notes = [untrusted(n) for n in self.notes]
        self.flags = [untrusted(f, 200) for f in self.flags]
        self.answers = {safe_name(q): str(a)[:TEXT_CHARS] for q, a in self.answers.items()}

    def identify(self, student: str, flag: str | None = None) -> None:
        """Grade under the id `student` (`student_ids`'), flagged with `flag` (why) when it is not the zip's own."""
        self.student = safe_name(student)
        if flag:
            self.flags.append(untrusted(flag, 200))
            self.notes.append(f"graded as {self.student}: your zip's name gives the same student id as another "
                              "submission's (an instructor matches it to you)")

    @property
    def total(self) -> int:
        return sum(r.points for r in self.tasks.values())

    def graded_tasks(self) -> dict:
        """{task id: Task} of the tasks this submission was graded on (the release's), in the registry's order."""
        return {tid: t for tid, t in kit_tasks().items() if tid in self.tasks}

    def points(self) -> dict[str, int]:
        return {t: self.tasks[t].points for t in self.graded_tasks()}

    def row(self) -> dict:
        return {"student": self.student, **self.points(), "total": self.total, "status": self.status}

    def markdown(self) -> str:
        tasks = self.graded_tasks()
        md = [f"# Feedback for {self.student}", "",
              f"Total: **{self.total} / {sum(t.points for t in tasks.values())}** ({self.status})", "",
              f"_{self.sandbox}_", "", "| task | points | result |", "| --- | --- | --- |"]
        for t, task in tasks.items():
            r = self.tasks.get(t, TaskResult(0, Kind.ERROR, "FAIL: not run"))
            md.append(f"| Task {task.number} ({task.name}) | {r.points} / {task.points} | {r.message} |")
        if self.notes:
            md += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(md) + "\n"

    def gradescope(self, header: str = "") -> dict:
        """Gradescope's results.json. Per task two tests: its public cases (visible at once, no points: a check
        the student can act on) and all its cases (its points, visible after the due date), so hidden cases
        are held back until then. No top-level score: Gradescope sums the tests' scores."""
        tests = []
        for tid, t in self.graded_tasks().items():
            r = self.tasks[tid]
            tests += [{"name": f"Task {t.number} ({t.name}): public cases", "score": 0, "max_score": 0,
                       "output": r.public, "output_format": "md", "visibility": "visible"},
                      {"name": f"Task {t.number} ({t.name}): {t.title}, all cases", "score": r.points,
                       "max_score": t.points, "output": r.message, "output_format": "md",
                       "visibility": "after_due_date"}]
        notes = "\n".join(f"- {n}" for n in self.notes)
        return {"output": f"{header}{self.status}. {self.sandbox}\n\n{notes}".strip(), "output_format": "md",
                "tests": tests, "visibility": "visible", "stdout_visibility": "hidden"}
