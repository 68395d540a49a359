"""What the docs tests check, shared by tests/test_docs.py (the repository) and tests/test_release.py (the kit).

`broken_links`: relative Markdown links that point to no file. `results_history`: the lines of a page that
carry a measurement's history (the student kit's README must have none).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

# The target of an inline Markdown link or image, ](target) or ](target "title"); code spans are removed first.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
EXTERNAL = re.compile(r"([a-z][a-z0-9+.-]*:|#)", re.I)  # a URL (https:, mailto:, ...) or an anchor of the page


def relative_links(page: Path) -> list[str]:
    """The relative link targets of a Markdown page, without their #anchors, in order."""
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    return [unquote(t.split("#", 1)[0]) for t in LINK.findall(text) if not EXTERNAL.match(t)]


def broken_links(pages, root: Path) -> list[str]:
    """'page: target' for every relative link of `pages` that names no existing file or folder, or leaves `root`."""
    root = root.resolve()
    bad = []
    for page in pages:
        for target in relative_links(page):
            dest = (page.parent / target).resolve() if not target.startswith("/") else None
            if dest is None or not dest.is_relative_to(root) or not dest.exists():
                bad.append(f"{page.relative_to(root)}: {target}")
    return bad


# A page holds results history when a line has any of these:
HISTORY = {
    "a date": re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b"),
    "a CI rehearsal": re.compile(r"\brehears", re.I),
    "a student walk": re.compile(r"\b(student'?s?|the|a|measured|this) walks?\b", re.I),
    "a version or run compared with an earlier one": re.compile(
        r"\b(this|previous|earlier|last) version\b|\bthe (run|walk|rehearsal) before\b", re.I),
    "a commit": re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"),
    "the machine of a measurement": re.compile(r"\b(EPYC|Xeon|AVX2|AVX-512|H100|H200)\b"),
}
# ... or a table row holds a measurement: a time (12 s, 61 ms, 5.9 min) or a FID-like figure (17.39).
MEASURED_CELL = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|min)\b|\b\d+\.\d\d\b")


def results_history(text: str) -> list[str]:
    """'line N (what): text' for every line of `text` that carries results history (see HISTORY, MEASURED_CELL).

    Code spans are names (a file, a command), not history: `pt_inception-2015-12-05-6726825d.pth` passes."""
    found = []
    for n, line in enumerate(text.splitlines(), start=1):
        prose = re.sub(r"`[^`]*`", "", line)
        what = [name for name, pattern in HISTORY.items() if pattern.search(prose)]
        if prose.lstrip().startswith("|") and MEASURED_CELL.search(prose):
            what.append("a measurement in a table")
        if what:
            found.append(f"line {n} ({', '.join(what)}): {line.strip()[:100]}")
    return found
