"""Grade a folder of submission zips: safe extraction, sandboxed runs, comparison here, grades.csv.

Per submission (student id = the zip's stem):
1. extract an allowlist only (the task files, notebooks/*.ipynb, runs/*/fid.json, manifest.json),
   refusing unsafe paths, links, duplicates and oversized members (declared and while streaming);
2. overlay the task files on a copy of the STUDENT kit (stubs; never the solution) and run
   `python -m hw3_utils.checks --run` there, sandboxed (grader/sandbox.py), one task after the
   other, each with a time limit; a hung or crashed task fails alone and the rest run again;
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
import sys
import tempfile
import time
import zipfile
import zlib
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
    """Why a fid.json does not match the profile it names (None when it does): its sample count."""
    from hw3_utils.config import PROFILES, get_config

    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        profile, n = rec.get("profile"), rec.get("num_samples")
        if profile not in PROFILES:
            return f"fid.json names no known profile ({str(profile)[:40]!r})"
        want = get_config(profile, verbose=False).num_samples
        if n != want:
            return f"fid.json: {n!r} samples, but the {profile} profile draws {want:,}"
    except Exception as err:
        return f"fid.json is not readable ({type(err).__name__})"
    return None


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
def _tail(path: Path, n: int = 8000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


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
    return f"crashed: exit code {rc}"


def _load_result(path: Path, tid: str, n_cases: int):
    """A task's result file: ("outputs", list) or ("error", str); anything else is an error."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
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


def run_submission(kit: Path, work: Path, cases: dict, task_timeout: float, hide: list[Path],
                   readonly: list[Path], startup: float = STARTUP_SECONDS) -> dict[str, tuple[str, object]]:
    """Run the checks' runner on `kit` for every task; {task: ("outputs", [...]) | ("error", msg)}."""
    tasks = [t for t in _tasks() if t in cases]
    torch.save(cases, work / "cases.pt")
    home = work / "home"
    home.mkdir(exist_ok=True)
    results: dict[str, tuple[str, object]] = {}
    remaining = list(tasks)
    launch = 0
    while remaining:
        launch += 1
        out = work / f"out{launch}"
        out.mkdir()
        log_out, log_err = work / f"stdout{launch}.txt", work / f"stderr{launch}.txt"
        sandbox.prepare_workdir(work)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TORCH_HOME": str(home / "torch"),
               "PYTHONPATH": str(kit), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
               "MPLCONFIGDIR": str(home / "mpl"), "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8",
               "OMP_WAIT_POLICY": "PASSIVE", "TMPDIR": str(home)}
        argv = [sandbox.python(), "-m", "hw3_utils.checks", "--run", "--cases", str(work / "cases.pt"),
                "--out", str(out), "--tasks", *remaining]
        cpu = int(startup + task_timeout * len(remaining) + 30)
        with open(log_out, "wb") as so, open(log_err, "wb") as se:
            proc = sandbox.start(argv, kit, env, hide, readonly, cpu, so, se)
        t0 = time.monotonic()
        seen: dict[str, float] = {}
        reason = None
        while True:
            rc = proc.poll()
            now = time.monotonic()
            for t in remaining:
                if t not in seen and (out / f"{t}.started").exists():
                    seen[t] = now
            inflight = next((t for t in remaining if t in seen and not (out / f"{t}.pt").exists()), None)
            if rc is not None:
                break
            if inflight and now - seen[inflight] > task_timeout:
                reason = f"time limit exceeded ({task_timeout:g} s)"
                break
            if not seen and now - t0 > startup:
                reason = f"time limit exceeded while importing hw3_utils ({startup:g} s)"
                break
            time.sleep(0.05)
        if reason:
            sandbox.kill(proc)
        else:
            sandbox.kill(proc)  # stray children of a finished run go with the namespace/group
        rc = proc.returncode if reason is None else None
        done = []
        for t in remaining:
            if (out / f"{t}.pt").exists():
                results[t] = _load_result(out / f"{t}.pt", t, len(cases[t]))
                done.append(t)
        if not seen and not done:  # nothing started: the kit did not import (or the startup timed out)
            msg = reason or f"hw3_utils could not be imported: {import_error(_tail(log_err), kit)}"
            if not reason and rc not in (0, 1, None):
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
    return results


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


def readonly_paths() -> list[Path]:
    home = Path(os.path.expanduser("~"))
    return [REPO, Path(os.path.realpath(sys.prefix)), Path(os.path.realpath(sys.base_prefix)), home]


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


def grade_one(zpath: Path, batch: Path, release_kit: Path, ref: dict, task_timeout: float, hide, readonly,
              startup: float = STARTUP_SECONDS) -> Graded:
    """Grade one zip."""
    from hw3_utils.checks import compare

    tasks = _tasks()
    student = zpath.stem
    work = batch / "work"
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
        results = run_submission(kit, work, cases, task_timeout, hide, readonly, startup)
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


def preflight(batch: Path, hide) -> None:
    """The sandboxed user must be able to start Python and import torch, else every grade would be 0."""
    work = batch / "preflight"
    (work / "home").mkdir(parents=True)
    sandbox.prepare_workdir(work)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work / "home"), "OMP_NUM_THREADS": "1"}
    with open(work / "log.txt", "wb") as log:
        proc = sandbox.start([sandbox.python(), "-c", "import torch, torchvision"], work, env, hide, readonly_paths(),
                             300, log, log)
        try:
            rc = proc.wait(timeout=300)
        except Exception:
            rc = None
        sandbox.kill(proc)
    if rc != 0:
        raise RuntimeError(f"the sandbox ({sandbox.detect_mode()}) cannot run {sandbox.python()} with torch "
                           f"(exit {rc}): {_tail(work / 'log.txt', 1500)}\nThe sandboxed user must be able to read "
                           "the Python installation; set HW3_GRADER_SANDBOX=none to grade without a sandbox.")
    shutil.rmtree(work, ignore_errors=True)


def grade_batch(submissions: Path, out: Path, task_timeout: float = 60.0, release_dir=None, reference=None,
                extra_hidden=(), startup: float = STARTUP_SECONDS) -> list[dict]:
    """Grade every *.zip (and every other plain file, which is rejected) in `submissions`; grades.csv rows."""
    return [g.row() for g in grade_batch_detailed(submissions, out, task_timeout, release_dir, reference,
                                                  extra_hidden, startup)]


def grade_batch_detailed(submissions: Path, out: Path, task_timeout: float = 60.0, release_dir=None,
                         reference=None, extra_hidden=(), startup: float = STARTUP_SECONDS) -> list[Graded]:
    """grade_batch, returning the `Graded` record of each submission."""
    from .reference import build_reference, load_reference
    from .release import make_release

    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    ref = load_reference(reference) if reference else build_reference()
    batch = Path(tempfile.mkdtemp(prefix="hw3-grade-"))
    os.chmod(batch, 0o711)
    hide = hidden_paths([submissions, out, *extra_hidden, *([Path(reference).parent] if reference else [])])
    rows = []
    try:
        preflight(batch, hide)
        kit = Path(release_dir) if release_dir else make_release(batch / "release", quiet=True, repo_url="none")
        entries = sorted(p for p in submissions.iterdir() if p.is_file() and not p.name.startswith("."))
        with sandbox.Hidden(hide):
            for z in entries:
                graded = grade_one(z, batch, kit, ref, task_timeout, hide, readonly_paths(), startup)
                rows.append(graded)
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", graded.student) or "submission"
                atomic_write(out / "feedback" / f"{safe}.md", graded.markdown())
    finally:
        shutil.rmtree(batch, ignore_errors=True)
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=["student", *_tasks(), "total", "status"])
    w.writeheader()
    w.writerows(g.row() for g in rows)
    atomic_write(out / "grades.csv", table.getvalue())
    from .summary import write_summary

    write_summary(rows, out, _tasks())
    return rows
