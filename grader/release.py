"""The student kit: solution regions replaced by stubs, hidden tests removed, instructor files left out.

One small stripper for .py files and notebooks, on nbgrader's markers (`### BEGIN SOLUTION <task>`,
`### END SOLUTION`, `### BEGIN HIDDEN TESTS`, `### END HIDDEN TESTS`). Not nbgrader itself:
nbgrader does not handle plain .py files (where most of this assignment's code lives), does not
run in Colab, and must not become a dependency of the students' kit. The markers stay
nbgrader-compatible (nbgrader matches them by substring, the task id after them is ignored).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from . import REPO

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)

# The notebooks' setup cells and notebooks/README.md's Colab links carry this placeholder until
# `make release REPO_URL=...` writes the repository students clone.
PLACEHOLDER_URL = "https://github.com/YOUR-ORG/hw3-ddpm-kit.git"
PLACEHOLDER_PATH = "YOUR-ORG/hw3-ddpm-kit"

# Instructor-only: never copied into the student kit.
EXCLUDE_DIRS = ("grader", ".ci", "bench", "release")
STUDENT_TESTS = ("tests/test_tasks.py",)
EXCLUDE_FILES = ("autograder.zip", "CHANGELOG.md")
# The student kit's README.md is this page, its relative links rebased to the kit's root; the
# instructor's README.md stays out. Of docs/ the kit ships only that page and what it and the code cite.
STUDENT_README = "docs/students.md"
STUDENT_DOCS = (STUDENT_README, "docs/img/", "docs/decisions/")
INSTRUCTOR_IMAGES = "docs/img/ta_"  # the TA's pages as docs/instructors.md shows them: they hold answers
# Optional extensions, which an instructor may leave out of a release (`make release WITHOUT=06`). An extension is
# a notebook number: its notebooks (notebooks/<number>_*.ipynb), its tasks (those whose notebook it is), their
# task modules, and the student files that only its tasks use. A release without it grades the other tasks as a
# kit that never had it would.
EXTENSIONS = ("06",)
# What the kit's Markdown pages say of an extension sits between two marker lines, HTML comments that no page shows:
# a release without the extension drops the block, and every release drops the marker lines (`strip_extensions`).
EXTENSION_MARKER = re.compile(r"<!-- (/?)extension (\w+) -->")
# A number still to be measured, in a notebook's expected output: the maintainers replace each before a release
# (`make release` refuses a notebook that holds one: `unmeasured_cells`).
EXPECTED_MARK = "EXPECTED("


class MarkerError(ValueError):
    """Unbalanced, nested or unknown markers; the message names file and line."""


class ReleaseError(ValueError):
    """The release cannot be made as asked (no repository URL, a malformed one)."""


def check_repo_url(url: str | None) -> str | None:
    """The repository URL students clone, checked; None for `none` (a kit used locally only)."""
    if url is None or url.strip() in ("", PLACEHOLDER_URL):
        raise ReleaseError("the release needs the git repository students will clone: "
                           "make release REPO_URL=https://github.com/<org>/<repo>.git "
                           "(or REPO_URL=none for a kit used locally only, without Colab)")
    url = url.strip()
    if url.lower() == "none":
        return None
    if not re.fullmatch(r"(https://|git@|file://|ssh://)\S+", url) or '"' in url:
        raise ReleaseError(f"REPO_URL={url!r} does not look like a git URL (https://..., git@..., ssh://..., file://...)")
    return url


FID_REFERENCES = "hw3_utils/fid_references.json"  # the kit's file; fid.reference_sources reads it
FID_FILES = ("mnist_train_all.npz", "mnist_test_all.npz")


def fid_references(url: str | None, stats_dir: Path | None) -> bytes:
    """The student kit's fid_references.json: where MNIST's FID statistics download from, with the sha256
    of the instructor's own copies (in `stats_dir`, default the FID cache), which students' downloads must
    match. No URL: none (students without the files are told to ask for them)."""
    if not url or url.strip().lower() == "none":
        return json.dumps({"url": None, "sha256": {}}, indent=2).encode() + b"\n"
    url = url.strip()
    if not re.fullmatch(r"(https://|http://|file://)\S+", url) or '"' in url:
        raise ReleaseError(f"FID_STATS_URL={url!r} does not look like a download URL (https://..., file://...)")
    from hw3_utils.runfolder import fid_cache_dir

    stats_dir = Path(stats_dir) if stats_dir else fid_cache_dir()
    missing = [n for n in FID_FILES if not (stats_dir / n).is_file()]
    if missing:
        raise ReleaseError(f"FID_STATS_URL names where students download {', '.join(FID_FILES)}, but {missing} "
                           f"is not in {stats_dir}: put the files you upload there (FID_STATS_DIR=... to look "
                           "elsewhere), so that the release can record their sha256")
    hashes = {n: hashlib.sha256((stats_dir / n).read_bytes()).hexdigest() for n in FID_FILES}
    hashes.update(_classifier_sha256(stats_dir))
    return json.dumps({"url": url, "sha256": hashes}, indent=2).encode() + b"\n"


def _classifier_sha256(stats_dir: Path) -> dict[str, str]:
    """{name: sha256} of the digit classifier students download beside the statistics: the copy in `stats_dir`
    where there is one, else the instructor's cached one (hw3_utils/digits.py)."""
    from hw3_utils import digits

    own = stats_dir / digits.weights_path(None).name
    if own.is_file():
        return {own.name: hashlib.sha256(own.read_bytes()).hexdigest()}
    try:
        return digits.release_sha256()
    except digits.DigitsWeightsError as err:
        raise ReleaseError(f"{err}; then upload it beside {', '.join(FID_FILES)}") from err


def github_path(url: str) -> str | None:
    """'org/repo' of a GitHub URL (for Colab's open-from-GitHub links), else None."""
    m = re.fullmatch(r"(?:https://github\.com/|git@github\.com:)([\w.-]+/[\w.-]+?)(?:\.git)?/?", url)
    return m.group(1) if m else None


_MD_LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # the target of a Markdown link or image: ](target)


def strip_extensions(text: str, without=(), where: str = "<page>") -> str:
    """A Markdown page for the kit: the blocks of the extensions `without` dropped (from a line
    `<!-- extension 06 -->` to its `<!-- /extension 06 -->`), the other blocks kept, every marker line removed.
    MarkerError naming the line for a block of no known extension, nested, unclosed or closed by another."""
    out, inside, start = [], None, 0
    for n, line in enumerate(text.splitlines(keepends=True), start=1):
        m = EXTENSION_MARKER.fullmatch(line.strip())
        if m is None:
            if inside not in without:
                out.append(line)
            continue
        closing, ext = m.group(1) == "/", m.group(2)
        if ext not in EXTENSIONS:
            raise MarkerError(f"{where}:{n}: '{line.strip()}' names no extension; the extensions are "
                              f"{', '.join(EXTENSIONS)}")
        if closing != (inside is not None) or (closing and ext != inside):
            raise MarkerError(f"{where}:{n}: '{line.strip()}' "
                              + (f"inside the block opened at line {start}" if inside else "closes no block"))
        inside, start = (None, 0) if closing else (ext, n)
    if inside is not None:
        raise MarkerError(f"{where}:{start}: the block of extension {inside} opened here is never closed")
    return "".join(out)


def release_readme(root: Path, without=()) -> bytes:
    """The student kit's README.md: STUDENT_README with its relative links rebased from docs/ to the root, and the
    blocks of the extensions `without` dropped (`strip_extensions`)."""
    src = Path(root) / STUDENT_README
    if not src.is_file():
        raise ReleaseError(f"{STUDENT_README} is missing: it becomes the student kit's README.md")
    base = posixpath.dirname(STUDENT_README)

    def rebase(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"([a-z][a-z0-9+.-]*:|#|/)", target):  # a URL, an anchor of the page, an absolute path
            return m.group(0)
        return m.group(1) + posixpath.normpath(posixpath.join(base, target)) + m.group(3)

    text = strip_extensions(src.read_text(encoding="utf-8"), without, STUDENT_README)
    return _MD_LINK.sub(rebase, text).encode("utf-8")


def _with_url(rel: str, data: bytes, url: str | None) -> bytes:
    """Write the repository URL into the notebooks' setup cells and the Colab links."""
    if url is None:
        return data
    text = data.decode("utf-8")
    if rel.endswith(".ipynb"):
        text = text.replace(json.dumps(PLACEHOLDER_URL)[1:-1], json.dumps(url)[1:-1])
    gh = github_path(url)
    if gh:
        text = text.replace(PLACEHOLDER_PATH, gh)
    return text.encode("utf-8")


def _tasks():
    from hw3_utils.checks import TASKS

    return TASKS


def check_without(without) -> tuple[str, ...]:
    """The extensions to leave out, from WITHOUT ("06", "06,07", a list, or nothing), each checked."""
    names = without.replace(",", " ").split() if isinstance(without, str) else list(without or ())
    unknown = [n for n in names if n not in EXTENSIONS]
    if unknown:
        raise ReleaseError(f"WITHOUT={','.join(names)}: {', '.join(unknown)} is not an optional extension; the "
                           f"extensions a release may leave out are: {', '.join(EXTENSIONS)}")
    return tuple(names)


def extension_tasks(without=EXTENSIONS, tasks=None) -> list[str]:
    """The ids of the tasks the extensions `without` hold: those whose notebook is one of theirs."""
    tasks = _tasks() if tasks is None else tasks
    return [tid for tid, t in tasks.items() if t.notebook.split("_", 1)[0] in without]


def left_out(rel: str, without, tasks=None) -> bool:
    """Whether a release without the extensions `without` leaves out the kit file `rel` (a relative POSIX path):
    their notebooks, their tasks' modules, and the student files that only their tasks use."""
    if not without:
        return False
    tasks = _tasks() if tasks is None else tasks
    gone = set(extension_tasks(without, tasks))
    kept_files = {t.file for tid, t in tasks.items() if tid not in gone}
    return (rel.startswith(tuple(f"notebooks/{ext}_" for ext in without))
            or rel in {f"hw3_utils/tasks/task_{tid}.py" for tid in gone}
            or rel in {tasks[tid].file for tid in gone} - kept_files)


def _chunks(text: str, width: int) -> list[str]:
    """Split text at spaces into pieces of at most ~width characters; joined they give text back."""
    pieces, cur = [], ""
    for word in text.split(" "):
        if cur and len(cur) + len(word) + 1 > width:
            pieces.append(cur + " ")
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    return pieces + [cur]


def stub_lines(task_id: str, indent: str) -> list[str]:
    """The stub that replaces a solution region: a TODO comment with the hint, then a raise."""
    task = _tasks()[task_id]
    msg = (f"Task {task.number} ({task.name}, {task.points} points): not implemented yet. {task.hint} "
           f"Then re-run the check cell in notebook {task.notebook[:2]} "
           f"(or `python -m hw3_utils.checks {task.number}`).")
    width = max(40, 100 - len(indent))
    comment = _chunks(f"TODO {task.label}: {task.hint}", width)
    lines = [f"{indent}# {c.rstrip()}\n" for c in comment[:1]] + [f"{indent}#   {c.rstrip()}\n" for c in comment[1:]]
    lines.append(f"{indent}raise NotImplementedError(\n")
    lines += [f"{indent}    {json.dumps(c)}\n" for c in _chunks(msg, width - 8)]
    lines.append(f"{indent})\n")
    return lines


def _marker(line: str) -> tuple[str, str] | None:
    s = line.strip()
    for m in MARKERS:
        if s.startswith(m):
            return m, s[len(m):].strip()
    return None


def strip_text(text: str, where: str = "<text>", tasks=None) -> tuple[str, list[str]]:
    """Strip one file's text. Returns (stripped text, task ids of the solution regions found)."""
    tasks = _tasks() if tasks is None else tasks
    out: list[str] = []
    found: list[str] = []
    state, start = None, 0  # None, "solution" or "hidden"
    for n, line in enumerate(text.splitlines(keepends=True), start=1):
        m = _marker(line)
        if m is None:
            if state is None:
                out.append(line)
            continue
        kind, arg = m
        if kind in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if state is not None:
                raise MarkerError(f"{where}:{n}: '{kind}' inside the region opened at line {start} (nested markers)")
            if kind == BEGIN_SOLUTION:
                if arg not in tasks:
                    raise MarkerError(f"{where}:{n}: '{BEGIN_SOLUTION} {arg}' names "
                                      f"{'no task' if not arg else 'an unknown task'}; the tasks are "
                                      f"{', '.join(tasks)}")
                found.append(arg)
                indent = re.match(r"[ \t]*", line).group(0)
                out.extend(stub_lines(arg, indent))
            state, start = ("solution" if kind == BEGIN_SOLUTION else "hidden"), n
        else:
            expect = "solution" if kind == END_SOLUTION else "hidden"
            if state != expect:
                raise MarkerError(f"{where}:{n}: '{kind}' without a matching BEGIN"
                                  + (f" (the region opened at line {start} is another kind)" if state else ""))
            state = None
    if state is not None:
        raise MarkerError(f"{where}:{start}: region opened here is never closed")
    return "".join(out), found


def strip_answer(src: str, where: str) -> str:
    """A written answer cell for students: its solution region (the model answer with the rubric inside it,
    hw3_utils/answers.py) replaced by YOUR ANSWER HERE line by line, exactly as nbgrader's ClearSolutions
    replaces it, so that both releases give the same cell and nbgrader's checksum of it."""
    from hw3_utils.answers import MARK_SCHEME, PLACEHOLDER, SOLUTION

    lines = src.split("\n")
    for begin, end in (SOLUTION, MARK_SCHEME):
        starts = [k for k, line in enumerate(lines) if begin in line]
        ends = [k for k, line in enumerate(lines) if end in line]
        if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
            raise MarkerError(f"{where}: an answer cell needs one '{begin}' ... '{end}' region")
        if begin == SOLUTION[0]:
            region = starts[0], ends[0]
        elif not region[0] < starts[0] < ends[0] < region[1]:
            raise MarkerError(f"{where}: the '{begin}' region must lie inside the '{SOLUTION[0]}' region "
                              "(nbgrader accepts a mark scheme there only)")
    indent = lines[region[0]][:len(lines[region[0]]) - len(lines[region[0]].lstrip())]
    return "\n".join(lines[:region[0]] + [indent + PLACEHOLDER] + lines[region[1] + 1:])


def strip_notebook(text: str, where: str = "<notebook>", tasks=None) -> tuple[str, list[str]]:
    """Strip the code cells (solution regions) and the written answer cells (model answers, rubrics) of a
    notebook (JSON text); outputs and execution counts are dropped."""
    from hw3_utils.answers import cell_source, is_answer_cell

    nb = json.loads(text)
    found: list[str] = []
    for k, cell in enumerate(nb.get("cells", [])):
        if is_answer_cell(cell):
            cell["source"] = strip_answer(cell_source(cell), f"{where} (cell {k + 1})").splitlines(keepends=True)
            cell.setdefault("metadata", {})["deletable"] = False  # what nbgrader's LockCells writes for it
            continue
        if cell.get("cell_type") != "code":
            continue
        src = cell_source(cell)
        new, ids = strip_text(src, f"{where} (cell {k + 1})", tasks)
        found += ids
        cell["source"] = new.splitlines(keepends=True)
        cell["outputs"] = []
        cell["execution_count"] = None
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n", found


def strip_file(path: Path, rel: str) -> tuple[bytes, list[str]]:
    text = path.read_text(encoding="utf-8")
    if rel.endswith(".ipynb"):
        new, ids = strip_notebook(text, rel)
    else:
        new, ids = strip_text(text, rel)
    return new.encode("utf-8"), ids


def has_solution(text: str, notebook: bool = False) -> bool:
    """True if any marker line is left (in a notebook: in any cell; a mark scheme counts too)."""
    from hw3_utils.answers import MARK_SCHEME

    if notebook:
        cells = json.loads(text).get("cells", [])
        text = "".join("".join(c.get("source", "")) for c in cells)
    return any(_marker(line) or line.strip() in MARK_SCHEME for line in text.splitlines())


def unmeasured_cells(root: Path = REPO, without=()) -> list[str]:
    """The cells of the notebooks a release would ship that still hold EXPECTED_MARK, as 'notebooks/<name> cell
    <id>' (the cell's number where it has no id)."""
    from hw3_utils.answers import cell_source

    found = []
    for rel in kit_files(root):
        if rel.endswith(".ipynb") and is_student_file(rel) and not left_out(rel, without):
            cells = json.loads((root / rel).read_text(encoding="utf-8")).get("cells", [])
            found += [f"{rel} cell {c.get('id') or k + 1}" for k, c in enumerate(cells)
                      if EXPECTED_MARK in cell_source(c)]
    return found


def kit_files(root: Path = REPO) -> list[str]:
    """The kit's files (tracked and untracked-not-ignored, per git), relative POSIX paths."""
    try:
        res = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True)
        names = sorted({n for n in res.stdout.decode().split("\0") if n})
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "runs", "data", "release", "__pycache__", ".pytest_cache", ".ruff_cache",
                ".hypothesis"}
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                       if p.is_file() and not (set(p.relative_to(root).parts) & skip)
                       and not p.relative_to(root).parts[0].endswith(".egg-info"))
    return [n for n in names if (root / n).is_file() and not (root / n).is_symlink()]


def is_student_file(rel: str) -> bool:
    top = rel.split("/", 1)[0]
    if top in EXCLUDE_DIRS or rel in EXCLUDE_FILES or rel == "README.md":
        return False
    if top == "docs":
        return rel.startswith(STUDENT_DOCS) and not rel.startswith(INSTRUCTOR_IMAGES)
    if rel.startswith("submission") and rel.endswith(".zip"):
        return False
    if top == "tests":
        return rel in STUDENT_TESTS
    return True


def _git_commit(root: Path) -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _staged_files(root: Path, out: Path, url: str | None, fid_sources: bytes, without: tuple, tasks: dict):
    """The kit's files as the release writes them, by relative path: (bytes, the source whose mode they take,
    the solution regions stubbed in each file). Refuses a file left with a marker, a task without a region."""
    staged: dict[str, bytes] = {}
    sources: dict[str, Path] = {}
    found: dict[str, list[str]] = {}
    for rel in kit_files(root):
        if not is_student_file(rel) or left_out(rel, without):
            continue
        src = root / rel
        if rel.endswith((".py", ".ipynb")):
            data, ids = strip_file(src, rel)
            if has_solution(data.decode(), rel.endswith(".ipynb")):
                raise MarkerError(f"{rel}: a marker is left after stripping; refusing to write {out}")
            if ids:
                found[rel] = ids
        elif rel.endswith(".md"):
            data = strip_extensions(src.read_text(encoding="utf-8"), without, rel).encode("utf-8")
        else:
            data = src.read_bytes()
        if rel.endswith((".ipynb", ".md")):
            data = _with_url(rel, data, url)
        if rel == FID_REFERENCES:
            data = fid_sources
        staged[rel], sources[rel] = data, src
    missing = [t for t in tasks if not any(t in ids for ids in found.values())]
    if missing:
        raise MarkerError(f"no solution region found for task(s) {missing}; refusing to write {out}")
    staged["README.md"] = _with_url("README.md", release_readme(root, without), url)
    sources["README.md"] = root / STUDENT_README
    return staged, sources, found


def _release_info(root: Path, url: str | None, fid_sources: bytes, tasks: dict, without: tuple, found: dict) -> dict:
    """RELEASE.json: the kit's name and version, its commit, URLs, tasks and points, and the stubbed regions."""
    pyproject = (root / "pyproject.toml").read_text()
    name = re.search(r'^name\s*=\s*"([^"]+)"', pyproject, re.M)
    version = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M)
    return {
        "kit": name.group(1) if name else "hw3_utils",
        "version": version.group(1) if version else None,
        "source_commit": _git_commit(root),
        "repo_url": url,
        "fid_stats_url": json.loads(fid_sources)["url"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tasks": {t.id: {"title": t.title, "points": t.points, "file": t.file, "function": t.function,
                         "notebook": t.notebook} for t in tasks.values()},
        "total_points": sum(t.points for t in tasks.values()),
        "without": list(without),
        "regions": found,
    }


def _say_released(out: Path, staged: dict, info: dict, questions_out: Path | None) -> None:
    found, without = info["regions"], info["without"]
    print(f"release: {len(staged)} files -> {out} ({sum(len(v) for v in found.values())} solution regions "
          f"stubbed in {len(found)} files)")
    if without:
        print(f"release: without notebook(s) {', '.join(without)} and their tasks: graded out of "
              f"{info['total_points']} points")
    if questions_out is not None:
        print(f"release: the written questions (points, rubrics, model answers) frozen in {questions_out}, "
              "which grading and merging read: keep it, never hand it out")
    if info["fid_stats_url"] is None:
        print("release: no FID_STATS_URL, so students without MNIST's FID statistics (a 2.5 h computation on a "
              "CPU) are told to ask you for mnist_train_all.npz and mnist_test_all.npz")


def make_release(out: Path | str = REPO / "release", root: Path = REPO, quiet: bool = False,
                 repo_url: str | None = None, fid_stats_url: str | None = None, fid_stats_dir=None,
                 questions_out: Path | None = None, without=(), measured: bool = False) -> Path:
    """Write the student kit to `out` (replaced). Refuses if a stripped file still holds a region.

    repo_url: the git repository students clone, written into every notebook's setup cell and into
    the Colab links of the Markdown pages; "none" keeps the placeholders (a kit used locally only).
    fid_stats_url: where students download mnist_train_all.npz and mnist_test_all.npz (with the sha256 of
    the copies in `fid_stats_dir`); without it a student lacking them gets one line saying to ask.
    The README is the student's: STUDENT_README (`release_readme`).
    questions_out: where the written questions are frozen for grading (grader/written.py's QUESTIONS_FILE for
    `make release`); never inside the kit.
    without: the optional extensions to leave out (EXTENSIONS, e.g. "06"): `left_out` says which files go.
    measured: refuse notebooks whose expected output still holds EXPECTED(...) placeholders (`make release`; the
    tests' kits leave it off).
    """
    out, root = Path(out), Path(root)
    url = check_repo_url(repo_url)
    fid_sources = fid_references(fid_stats_url, fid_stats_dir)
    without = check_without(without)
    if measured and (cells := unmeasured_cells(root, without)):
        raise ReleaseError(f"{'; '.join(cells)}: still {EXPECTED_MARK}...) placeholders where measured numbers belong; "
                           "measure and fill them in before a release")
    tasks = {tid: t for tid, t in _tasks().items() if tid not in extension_tasks(without)}
    staged, sources, found = _staged_files(root, out, url, fid_sources, without, tasks)
    info = _release_info(root, url, fid_sources, tasks, without, found)
    if out.exists():
        shutil.rmtree(out)
    for rel, data in staged.items():
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        shutil.copymode(sources[rel], dst)
    (out / "RELEASE.json").write_text(json.dumps(info, indent=2) + "\n")
    if questions_out is not None:
        from .written import freeze

        if Path(questions_out).resolve().is_relative_to(out.resolve()):
            raise ReleaseError(f"{questions_out} is inside the student kit {out}: the questions file holds the "
                               "rubrics and model answers, keep it outside")
        freeze(Path(questions_out), root, info["source_commit"], without)
    if not quiet:
        _say_released(out, staged, info, questions_out)
    return out


def solution_regions(root: Path = REPO) -> list[tuple[str, str, str]]:
    """(file, task, body) of every solution region of the kit's .py files and notebooks."""
    out = []
    files = sorted(root.glob("hw3_utils/*.py")) + sorted(root.glob("notebooks/*.ipynb"))
    for path in files:
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        else:
            texts = [path.read_text()]
        for text in texts:
            body, task = None, None
            for line in text.splitlines(keepends=True):
                s = line.strip()
                if s.startswith(BEGIN_SOLUTION):
                    body, task = [], s[len(BEGIN_SOLUTION):].strip()
                elif s.startswith(END_SOLUTION):
                    out.append((path.relative_to(root).as_posix(), task, "".join(body)))
                    body = None
                elif body is not None:
                    body.append(line)
    return out
