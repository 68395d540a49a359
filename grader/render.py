"""What a grade says: typed task results, and the one place where text from a submission is made safe.

Every string in a `Graded` record (the student's name, each task's message, the notes on the zip, the
notebooks, fid.json and the manifest, the flags) can carry what a submission wrote: an exception message, a
file name, a profile name, a manifest field. `untrusted()` makes each of them safe once, when the record is
built (`Graded.__post_init__`): control characters and terminal escape sequences removed, line breaks made
spaces, and the characters that HTML or Markdown would read as structure escaped. grades.csv, the feedback
files, summary.md, Gradescope's results.json and the terminal all print the record as it is.

Failure kinds are a field (`Kind`), which the summary and the look-flags read; no decision matches words.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

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
    message: str  # "PASS" or what failed

    def __post_init__(self):
        self.message = untrusted(self.message)


def passed(points: int) -> TaskResult:
    return TaskResult(points, Kind.PASS, "PASS")


def failed(kind: Kind, message: str) -> TaskResult:
    return TaskResult(0, kind, f"FAIL: {message}")


def _tasks():
    from hw3_utils.checks import TASKS

    return TASKS


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

    def __post_init__(self):
        self.student = re.sub(r"[^A-Za-z0-9_.-]", "_", self.student)[:80] or "submission"
        self.status = untrusted(self.status, 200)
        self.notes = [untrusted(n) for n in self.notes]
        self.flags = [untrusted(f, 200) for f in self.flags]

    @property
    def total(self) -> int:
        return sum(r.points for r in self.tasks.values())

    def points(self) -> dict[str, int]:
        return {t: self.tasks[t].points if t in self.tasks else 0 for t in _tasks()}

    def row(self) -> dict:
        return {"student": self.student, **self.points(), "total": self.total, "status": self.status}

    def markdown(self) -> str:
        tasks = _tasks()
        md = [f"# Feedback for {self.student}", "",
              f"Total: **{self.total} / {sum(t.points for t in tasks.values())}** ({self.status})", "",
              f"_{self.sandbox}_", "", "| task | points | result |", "| --- | --- | --- |"]
        for t, task in tasks.items():
            r = self.tasks.get(t, TaskResult(0, Kind.ERROR, "FAIL: not run"))
            md.append(f"| Task {task.number} ({task.name}) | {r.points} / {task.points} | {r.message} |")
        if self.notes:
            md += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(md) + "\n"

    def gradescope(self) -> dict:
        """Gradescope's results.json: one test per task, the notes in the overall output (Markdown)."""
        tests = [{"name": f"Task {t.number} ({t.name}): {t.title}", "score": self.tasks[tid].points,
                  "max_score": t.points, "output": self.tasks[tid].message, "output_format": "md"}
                 for tid, t in _tasks().items()]
        notes = "\n".join(f"- {n}" for n in self.notes)
        return {"score": self.total, "output": f"{self.status}. {self.sandbox}\n\n{notes}".strip(),
                "output_format": "md", "tests": tests, "visibility": "visible", "stdout_visibility": "hidden"}
