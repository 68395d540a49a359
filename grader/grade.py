"""Grade a folder of submission zips: safe extraction, sandboxed runs, comparison here, grades.csv.

Per submission (student id = the zip's stem):
1. extract an allowlist only (the task files, notebooks/*.ipynb, runs/*/fid.json, manifest.json),
   refusing unsafe paths, links, duplicates and oversized members (declared and while streaming);
2. overlay the task files on a copy of the STUDENT kit (stubs; never the solution) and run
   `python -m hw3_utils.checks --run` there, sandboxed (grader/sandbox.py; forked from the fork server,
   grader/zygote.py), one task after the other, each with a time limit; a hung or crashed task fails
   alone and the rest run again; `jobs` submissions at once, each in its own work folder;
3. read the outputs (tensors only, weights_only) and compare them here, with the expected values
   computed from the solution in this process (or a prebuilt reference, for Gradescope).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hw3_utils.atomic import atomic_write

from . import REPO, sandbox

MiB = 1024 * 1024
CAPS = {".py": 2 * MiB, ".ipynb": 20 * MiB, ".json": 64 * 1024}
MAX_MEMBERS = 200
MAX_ZIP_BYTES = 200 * MiB
NOTEBOOK_RE = re.compile(r"^notebooks/[A-Za-z0-9_.-]+\.ipynb$")
FID_RE = re.compile(r"^runs/[A-Za-z0-9_.-]+/fid\.json$")
STARTUP_SECONDS = 120.0  # importing torch and the kit, before the first task starts


def _tasks():
    from hw3_utils.checks import TASKS

    return TASKS


def task_files() -> list[str]:
    return sorted({t.file for t in _tasks().values()})


def allowed(name: str) -> bool:
    return name in task_files() or name == "manifest.json" or bool(NOTEBOOK_RE.match(name) or FID_RE.match(name))


# extraction ---------------------------------------------------------------------------------------
@dataclass
class Extracted:
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fatal: str | None = None


def _unsafe(name: str) -> str | None:
    if not name or "\\" in name or "\0" in name:
        return "backslash or NUL in the path"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in the path"
    return None


def safe_extract(zpath: Path, dest: Path) -> Extracted:
    """Extract the allowlisted members of a zip into `dest`; everything else is reported, not written."""
    res = Extracted()
    try:
        if zpath.stat().st_size > MAX_ZIP_BYTES:
            res.fatal = f"the file is larger than {MAX_ZIP_BYTES // MiB} MiB"
            return res
        if not zipfile.is_zipfile(zpath):
            res.fatal = "not a zip file"
            return res
        zf = zipfile.ZipFile(zpath)
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        res.fatal = f"bad zip file ({type(err).__name__})"
        return res
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            res.fatal = f"too many members ({len(infos)} > {MAX_MEMBERS})"
            return res
        names = [i.filename for i in infos]
        dups = {n for n in names if names.count(n) > 1}
        for n in sorted(dups):
            res.notes.append(f"rejected {n!r}: it occurs more than once in the zip")
        for info in infos:
            name = info.filename
            if name in dups:
                continue
            why = _unsafe(name)
            if why:
                res.notes.append(f"rejected {name!r}: {why}")
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                res.notes.append(f"rejected {name!r}: a symbolic link")
                continue
            if name.endswith("/") or info.is_dir():
                continue
            if not allowed(name):
                res.notes.append(f"ignored {name!r}: not part of a submission")
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # many zippers store permission bits only
                res.notes.append(f"rejected {name!r}: not a regular file")
                continue
            cap = CAPS[Path(name).suffix]
            if info.file_size > cap:
                res.notes.append(f"rejected {name!r}: declares {info.file_size:,} bytes, over the {cap:,}-byte cap")
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            total, crc, ok = 0, 0, True
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(64 * 1024):
                        total += len(chunk)
                        if total > cap:
                            ok = False
                            res.notes.append(f"rejected {name!r}: more than {cap:,} bytes when decompressed "
                                             f"(it declares {info.file_size:,})")
                            break
                        crc = zlib.crc32(chunk, crc)
                        out.write(chunk)
                # zipfile stops at the declared size: a member that lies about it fails the checksum
                if ok and (total != info.file_size or crc != info.CRC):
                    ok = False
                    res.notes.append(f"rejected {name!r}: its content does not match its declared size and "
                                     "checksum (a damaged or manipulated zip)")
            except Exception as err:  # CRC errors, unsupported compression, truncated data
                ok = False
                res.notes.append(f"rejected {name!r}: cannot be read ({type(err).__name__})")
            if ok:
                res.files[name] = target
            else:
                target.unlink(missing_ok=True)
    return res


# notes on notebooks, fid.json, manifest ---------------------------------------------------------
def notebook_note(name: str, path: Path) -> str:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]
        ran = sum(1 for c in cells if c.get("outputs") or c.get("execution_count"))
    except Exception as err:
        return f"{name}: not a readable notebook ({type(err).__name__})"
    state = "not executed" if ran == 0 else f"executed ({ran} of {len(cells)} code cells have run)"
    return f"{name}: {state}"


def fid_note(name: str, path: Path) -> str:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        vals = {k: rec.get(k) for k in ("fid_vs_mnist_train", "fid_vs_mnist_test", "num_samples", "profile")}
        shown = ", ".join(f"{k} = {v:.2f}" if isinstance(v, float) else f"{k} = {v}"
                          for k, v in vals.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool))
    except Exception as err:
        return f"{name}: not readable ({type(err).__name__})"
    return f"{name}: {shown or 'no FID values'}"


def fid_mismatch(path: Path) -> str | None:
    """Why a submitted fid.json does not fit the profile it names (None when it does): the kit's own
    check (hw3_utils.runfolder.fid_problem), so what notebook 05 writes is what passes here."""
    from hw3_utils.runfolder import fid_problem, read_fid_json

    try:
        return fid_problem(read_fid_json(path))
    except Exception as err:
        return f"fid.json is not readable ({type(err).__name__})"


def flags_of(per_task: dict[str, tuple[int, str]], ex: Extracted) -> list[str]:
    """What makes a submission worth a human look: crashes, time limits, refused members, notebooks not
    executed, fid.json missing or not matching its profile."""
    flags = []
    for t, (_, msg) in per_task.items():
        if "crashed" in msg or "time limit exceeded" in msg:
            flags.append(f"Task {t} {'timed out' if 'time limit' in msg else 'crashed'}")
    refused = [n for n in ex.notes if n.startswith("rejected ")]
    if refused:
        flags.append(f"{len(refused)} zip member(s) refused")
    if ex.fatal:
        return flags
    notebooks = [n for n in ex.files if NOTEBOOK_RE.match(n)]
    idle = [n for n in notebooks if notebook_note(n, ex.files[n]).endswith("not executed")]
    if idle or not notebooks:
        flags.append(f"notebooks not executed ({len(idle)} of {len(notebooks)})" if notebooks else "no notebooks")
    fids = [n for n in ex.files if FID_RE.match(n)]
    if not fids:
        flags.append("fid.json missing")
    flags += [m for n in fids if (m := fid_mismatch(ex.files[n]))]
    return flags


def manifest_notes(files: dict[str, Path]) -> list[str]:
    if "manifest.json" not in files:
        return ["no manifest.json (was the zip made with `make submit`?)"]
    try:
        man = json.loads(files["manifest.json"].read_text(encoding="utf-8"))
        sums = man.get("files", {})
    except Exception as err:
        return [f"manifest.json is not readable ({type(err).__name__})"]
    notes = []
    for name, path in files.items():
        if name == "manifest.json" or not isinstance(sums, dict) or name not in sums:
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != sums[name]:
            notes.append(f"{name}: differs from its checksum in manifest.json")
    kit = man.get("kit_version")
    if kit:
        notes.append(f"kit version (manifest): {str(kit)[:40]}")
    return notes


# running ----------------------------------------------------------------------------------------
RESULT_LIMIT = 64 * MiB  # one task's outputs on the results pipe


def import_error(stderr: str, kit: Path) -> str:
    """'ExcType: message (hw3_utils/file.py:line)' from a traceback, paths relative to the kit."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1].strip()[:300] if lines else ""
    loc = ""
    for m in re.finditer(r'File "([^"]+)", line (\d+)', stderr):
        p = m.group(1)
        if p.startswith(str(kit)):
            loc = f"{Path(p).relative_to(kit).as_posix()}:{m.group(2)}"
    if not re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", last):
        last = ""
    return (last or "no error message") + (f" ({loc})" if loc else "")


def _describe_exit(rc: int | None) -> str:
    if rc is None:
        return "crashed"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        hint = " (out of memory or a file too large?)" if name in ("SIGKILL", "SIGXFSZ", "SIGSEGV") else ""
        return f"crashed: killed by signal {name}{hint}"
    if rc in sandbox.SETUP_ERRORS:
        return f"the sandbox could not start: it {sandbox.SETUP_ERRORS[rc]} (exit {rc}; the grader's problem)"
    return f"crashed: exit code {rc}"


def _load_result(data: bytes, tid: str, n_cases: int):
    """A task's result: ("outputs", list) or ("error", str); anything else is an error."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        return "error", f"its outputs could not be read ({type(err).__name__})"
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        return "error", obj["error"][:1000]
    outs = obj.get("outputs") if isinstance(obj, dict) else None
    if not isinstance(outs, list) or len(outs) != n_cases or not all(
            isinstance(o, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in o.items())
            for o in outs):
        return "error", "malformed outputs"
    return "outputs", outs


class _Results(threading.Thread):
    """Reads the runner's results pipe (hw3_utils.checks.run_cases): when each task started, and its bytes."""

    def __init__(self, fd: int, tasks: list[str]):
        super().__init__(daemon=True)
        self.fd, self.tasks = fd, set(tasks)
        self.started: dict[str, float] = {}
        self.payloads: dict[str, bytes] = {}
        self.start()

    def run(self):
        with open(self.fd, "rb") as f:
            while line := f.readline(100):
                parts = line.decode("ascii", "replace").split()
                if len(parts) == 2 and parts[0] == "S" and parts[1] in self.tasks:
                    self.started.setdefault(parts[1], time.monotonic())
                    continue
                if len(parts) == 3 and parts[0] == "R" and parts[1] in self.tasks and parts[2].isdigit() \
                        and int(parts[2]) <= RESULT_LIMIT:
                    data = f.read(int(parts[2]))
                    if len(data) == int(parts[2]):
                        self.payloads.setdefault(parts[1], data)
                        continue
                break  # something else wrote on the pipe: ignore the rest, but drain it
            while f.read(1 << 16):
                pass


def run_submission(work: Path, cases: dict, task_timeout: float, hide: list[Path],
                   startup: float = STARTUP_SECONDS, zygote=None) -> tuple[dict[str, tuple[str, object]], int]:
    """Run the checks' runner on `work`/kit for every task: ({task: ("outputs", [...]) | ("error", msg)}, the
    most bytes the code printed on stdout or stderr in one run)."""
    tasks = [t for t in _tasks() if t in cases]
    torch.save(cases, work / "kit" / "cases.pt")
    sandbox.prepare_workdir(work)
    kit, home = sandbox.kit_path(work), sandbox.home_path(work)
    env = {**sandbox.BASE_ENV, "HOME": str(home), "TORCH_HOME": str(home / "torch"), "PYTHONPATH": str(kit),
           "MPLCONFIGDIR": str(home / "mpl"), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(sandbox.tmp_path(work))}
    results: dict[str, tuple[str, object]] = {}
    printed = 0
    remaining = list(tasks)
    while remaining:
        argv = [sandbox.python(), "-m", "hw3_utils.checks", "--run", "--cases", str(kit / "cases.pt"),
                "--results-fd", "{results_fd}", "--tasks", *remaining]
        cpu = int(startup + task_timeout * len(remaining) + 30)
        run = sandbox.Run(argv, work, env, hide, cpu, zygote=zygote)
        pipe = _Results(run.results, remaining)
        t0 = time.monotonic()
        reason = None
        while True:
            rc = run.poll()
            now = time.monotonic()
            seen = dict(pipe.started)
            inflight = next((t for t in remaining if t in seen and t not in pipe.payloads), None)
            if rc is not None:
                break
            if inflight and now - seen[inflight] > task_timeout:
                reason = f"time limit exceeded ({task_timeout:g} s)"
                break
            if not seen and now - t0 > startup:
                reason = f"time limit exceeded while importing hw3_utils ({startup:g} s)"
                break
            time.sleep(0.05)
        run.close()  # a finished run's stray children go with the namespace or the process group
        pipe.join(timeout=10)
        printed = max(printed, run.printed())
        rc = run.returncode if reason is None else None
        seen = dict(pipe.started)
        done = []
        for t in remaining:
            if t in pipe.payloads:
                results[t] = _load_result(pipe.payloads[t], t, len(cases[t]))
                done.append(t)
        if not seen and not done:  # nothing started: the kit did not import (or the startup timed out)
            if reason:
                msg = reason
            elif rc in sandbox.SETUP_ERRORS:
                msg = _describe_exit(rc)
            else:
                msg = f"hw3_utils could not be imported: {import_error(run.stderr_tail(), kit)}"
                if rc not in (0, 1, None):
                    msg += f" [{_describe_exit(rc)}]"
            for t in remaining:
                results[t] = ("error", msg)
            break
        inflight = next((t for t in remaining if t in seen and t not in done), None)
        if inflight is None:
            rest = [t for t in remaining if t not in done]
            for t in rest:
                results[t] = ("error", f"the runner stopped before this task ({_describe_exit(rc)})")
            break
        results[inflight] = ("error", reason or _describe_exit(rc))
        remaining = remaining[remaining.index(inflight) + 1:]
        remaining = [t for t in remaining if t not in done]
    sandbox.clean_after()
    return results, printed


# the batch --------------------------------------------------------------------------------------
def hidden_paths(extra=()) -> list[Path]:
    """What the sandbox hides: the instructor's repo (all top-level folders but the Python env)."""
    prefix = Path(os.path.realpath(sys.prefix))
    out = []
    for p in sorted(REPO.iterdir()):
        if p.is_dir() and not p.is_symlink():
            real = Path(os.path.realpath(p))
            if prefix == real or real in prefix.parents:
                continue
            out.append(p)
    return out + [Path(p) for p in extra]


@dataclass
class Graded:
    """One graded submission: rendered once as grades.csv's row, the Markdown feedback and Gradescope's
    results.json."""

    student: str
    status: str  # "graded", "rejected: ...", "no task files"
    tasks: dict[str, tuple[int, str]]  # task id -> (points, "PASS" or "FAIL: why")
    notes: list[str] = field(default_factory=list)
    sandbox: str = ""  # how the code ran (grader/sandbox.py's description of the mode)
    flags: list[str] = field(default_factory=list)  # why a human should look (grader/summary.py)

    @property
    def total(self) -> int:
        return sum(p for p, _ in self.tasks.values())

    def points(self) -> dict[str, int]:
        return {t: self.tasks.get(t, (0, ""))[0] for t in _tasks()}

    def row(self) -> dict:
        return {"student": self.student, **self.points(), "total": self.total, "status": self.status}

    def markdown(self) -> str:
        tasks = _tasks()
        md = [f"# Feedback for {self.student}", "",
              f"Total: **{self.total} / {sum(t.points for t in tasks.values())}** ({self.status})", "",
              f"_{self.sandbox}_", "", "| task | points | result |", "| --- | --- | --- |"]
        for t, task in tasks.items():
            p, msg = self.tasks.get(t, (0, "FAIL: not run"))
            md.append(f"| Task {task.number} ({task.name}) | {p} / {task.points} | {msg.replace('|', '/')} |")
        if self.notes:
            md += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(md) + "\n"

    def gradescope(self) -> dict:
        """Gradescope's results.json: one test per task, the notes in the overall output."""
        tests = [{"name": f"Task {t.number} ({t.name}): {t.title}", "score": self.tasks[tid][0],
                  "max_score": t.points, "output": self.tasks[tid][1]} for tid, t in _tasks().items()]
        notes = "\n".join(f"- {n}" for n in self.notes)
        return {"score": self.total, "output": f"{self.status}. {self.sandbox}\n{notes}".strip(), "tests": tests,
                "visibility": "visible", "stdout_visibility": "hidden"}


def grade_one(zpath: Path, work: Path, release_kit: Path, ref: dict, task_timeout: float, hide,
              startup: float = STARTUP_SECONDS, zygote=None) -> Graded:
    """Grade one zip in the folder `work` (its own, removed afterwards)."""
    from hw3_utils.checks import compare

    tasks = _tasks()
    student = zpath.stem
    if work.exists():
        shutil.rmtree(work)
    (work / "sub").mkdir(parents=True)
    ex = safe_extract(zpath, work / "sub")
    notes = list(ex.notes)
    per_task: dict[str, tuple[int, str]] = {}
    status = "graded"
    submitted = [f for f in task_files() if f in ex.files]
    if ex.fatal:
        status = f"rejected: {ex.fatal}"
        per_task = {t: (0, f"FAIL: the submission was rejected ({ex.fatal})") for t in tasks}
    elif not submitted:
        status = "no task files"
        per_task = {t: (0, f"FAIL: {tasks[t].file} was not submitted") for t in tasks}
    else:
        kit = work / "kit"
        shutil.copytree(release_kit / "hw3_utils", kit / "hw3_utils",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for rel in submitted:
            shutil.copyfile(ex.files[rel], kit / rel)
        for rel in task_files():
            if rel not in ex.files:
                notes.append(f"{rel} is missing or was rejected: the kit's stub is used, its tasks get 0")
        cases = {t: ref["cases"][t] for t in tasks}
        results, printed = run_submission(work, cases, task_timeout, hide, startup, zygote)
        if printed > sandbox.PRINT_LIMIT:
            notes.append(f"your code printed more than {sandbox.PRINT_LIMIT // MiB} MB; remove the print calls "
                         "inside loops (the output past that was dropped; your tasks were still graded)")
        for t, task in tasks.items():
            kind, val = results.get(t, ("error", "not run"))
            if kind == "error":
                per_task[t] = (0, f"FAIL: {val}")
                continue
            ok, msg = compare(t, val, ref["expected"][t], ref["variants"].get(t, ()), ref["cases"][t])
            per_task[t] = (task.points, "PASS") if ok else (0, f"FAIL: {msg}")
    for name in sorted(ex.files):
        if NOTEBOOK_RE.match(name):
            notes.append(notebook_note(name, ex.files[name]))
        elif FID_RE.match(name):
            notes.append(fid_note(name, ex.files[name]))
    if not ex.fatal:
        if not any(NOTEBOOK_RE.match(n) for n in ex.files):
            notes.append("no notebooks in the submission")
        if not any(FID_RE.match(n) for n in ex.files):
            notes.append("no runs/<profile>/fid.json in the submission")
        notes += manifest_notes(ex.files)
    flags = flags_of(per_task, ex)  # reads the extracted notebooks and fid.json: before they are removed
    shutil.rmtree(work, ignore_errors=True)
    return Graded(student, status, per_task, notes, sandbox.DESCRIPTION[sandbox.detect_mode()], flags)


# Imports no run has made yet (the fork server preloads torch): the standard library and site-packages
# must be readable by the sandboxed user, not only already in memory.
PREFLIGHT = "import torch, torchvision, zipapp, scipy"


def preflight(batch: Path, hide, zygote=None) -> None:
    """The sandboxed user must be able to start Python and import torch, else every grade would be 0."""
    work = batch / "preflight"
    (work / "kit").mkdir(parents=True)
    sandbox.prepare_workdir(work)
    home = sandbox.home_path(work)
    env = {**sandbox.BASE_ENV, "HOME": str(home)}
    run = sandbox.Run([sandbox.python(), "-c", PREFLIGHT], work, env, hide, 300, zygote=zygote)
    try:
        rc = run.wait(timeout=300)
    except subprocess.TimeoutExpired:
        rc = None
    run.close()
    os.close(run.results)
    if rc != 0:
        why = _describe_exit(rc) if rc in sandbox.SETUP_ERRORS else f"exit {rc}"
        raise RuntimeError(f"the sandbox ({sandbox.detect_mode()}) cannot run {sandbox.python()} with torch "
                           f"({why}): {run.stderr_tail()[-1500:]}\nThe sandboxed user must be able to read "
                           "the Python installation; set HW3_GRADER_SANDBOX=none to grade without a sandbox.")
    shutil.rmtree(work, ignore_errors=True)


class Progress:
    """One line on stderr over the batch: a bar on a terminal, a line every tenth otherwise."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def step(self, student: str) -> None:
        self.done += 1
        per = (time.monotonic() - self.t0) / self.done
        left = per * (self.total - self.done)
        fill = round(30 * self.done / max(self.total, 1))
        line = (f"[{'#' * fill}{'.' * (30 - fill)}] {self.done}/{self.total} graded, {per:.1f} s each, "
                f"{int(left) // 60}:{int(left) % 60:02d} left ({student[:30]})")
        if self.tty:
            self.stream.write("\r" + line.ljust(110) + ("\n" if self.done == self.total else ""))
        elif self.done == self.total or self.done % max(1, self.total // 10) == 0:
            self.stream.write(line + "\n")
        self.stream.flush()


def grade_batch(submissions: Path, out: Path, task_timeout: float = 60.0, release_dir=None, reference=None,
                extra_hidden=(), startup: float = STARTUP_SECONDS, jobs: int | None = None) -> list[dict]:
    """Grade every *.zip (and every other plain file, which is rejected) in `submissions`; grades.csv rows."""
    return [g.row() for g in grade_batch_detailed(submissions, out, task_timeout, release_dir, reference,
                                                  extra_hidden, startup, jobs)]


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def grade_batch_detailed(submissions: Path, out: Path, task_timeout: float = 60.0, release_dir=None,
                         reference=None, extra_hidden=(), startup: float = STARTUP_SECONDS, jobs: int | None = None,
                         progress=None) -> list[Graded]:
    """grade_batch, returning the `Graded` record of each submission. `jobs` submissions are graded at once
    (default: the cores), each in its own sandbox; `progress` is a stream for the progress line."""
    from .reference import build_reference, load_reference
    from .release import make_release

    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    ref = load_reference(reference) if reference else build_reference()
    batch = Path(tempfile.mkdtemp(prefix="hw3-grade-"))
    os.chmod(batch, 0o711)
    hide = hidden_paths([submissions, out, *extra_hidden, *([Path(reference).parent] if reference else [])])
    hide_ns = [*hide, batch]  # in the namespaces, the batch folder too: the other submissions' work folders
    mode = sandbox.detect_mode()
    # in "nobody" mode the clean-up after a submission kills every process of nobody: one at a time
    jobs = 1 if mode == "nobody" else max(1, jobs or default_jobs())
    rows: list[Graded] = []
    # the fork server: Python and torch started once per batch (HW3_GRADER_ZYGOTE=0: a new process per run)
    zygote = sandbox.Zygote() if os.environ.get("HW3_GRADER_ZYGOTE", "1") != "0" else None
    try:
        preflight(batch, hide_ns, zygote)
        kit = Path(release_dir) if release_dir else make_release(batch / "release", quiet=True, repo_url="none")
        entries = sorted(p for p in submissions.iterdir() if p.is_file() and not p.name.startswith("."))
        bar = Progress(len(entries), progress) if progress else None

        def one(i: int, z: Path) -> Graded:
            graded = grade_one(z, batch / f"w{i}", kit, ref, task_timeout, hide_ns, startup, zygote)
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", graded.student) or "submission"
            atomic_write(out / "feedback" / f"{safe}.md", graded.markdown())
            return graded

        with sandbox.Hidden(hide), ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(one, i, z) for i, z in enumerate(entries)]
            for f in as_completed(futures):
                if bar:
                    bar.step(f.result().student)
            rows = [f.result() for f in futures]
    finally:
        if zygote:
            zygote.close()
        shutil.rmtree(batch, ignore_errors=True)
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=["student", *_tasks(), "total", "status"])
    w.writeheader()
    w.writerows(g.row() for g in rows)
    atomic_write(out / "grades.csv", table.getvalue())
    from .summary import write_summary

    write_summary(rows, out, _tasks())
    return rows
