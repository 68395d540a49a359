"""Grading a batch: per submission, extraction, the run, the comparison here, the record; then grades.csv,
the feedback files and the class summary.

Per submission (student id = the zip's stem as a safe name; two that give one id are told apart, render.student_ids):
1. extract an allowlist only (grader/extract.py);
2. overlay the task files on a copy of the STUDENT kit (stubs; never the solution) and run the checks'
   runner there, sandboxed (grader/runner.py, grader/sandbox.py); `jobs` submissions at once, each in its
   own work folder and sandbox, all forked from one fork server per batch;
3. compare the validated outputs here, with the expected values computed from the solution in this process
   (or a prebuilt reference, for Gradescope); a failure while comparing costs that task, never the batch.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from hw3_utils.atomic import atomic_write

from . import sandbox
from .extract import (
    FID_RE,
    Extracted,
    fid_mismatch,
    fid_note,
    kit_tasks,
    manifest_notes,
    notebook_cells,
    notebook_note,
    read_notebooks,
    safe_extract,
    task_files,
    unreadable,
)
from .render import Graded, Kind, TaskResult, failed, passed, read_csv, student_ids, write_csv
from .runner import STARTUP_SECONDS, preflight, run_submission
from .similarity import similar_pairs
from .written import release_without, submission_written, write_sheet

MiB = 1024 * 1024


def flags_of(per_task: dict[str, TaskResult], ex: Extracted, notebooks: dict) -> list[str]:
    """What makes a submission worth a human look: crashes, time limits, a sandbox that did not start,
    refused members, files that cannot be read, notebooks not executed, fid.json missing or not matching
    its profile. `notebooks`: extract.read_notebooks of the submission."""
    flags = [f"Task {t} {r.kind.value}" for t, r in per_task.items() if r.kind.needs_look]
    if ex.refused:
        flags.append(f"{ex.refused} zip member(s) refused")
    if ex.fatal:
        return flags
    bad = unreadable(ex.files, notebooks)
    if bad:
        flags.append(f"{len(bad)} unreadable file(s): {', '.join(bad)}")
    idle = [n for n, nb in notebooks.items() if (notebook_cells(nb) or (0, 0))[0] == 0]
    if idle or not notebooks:
        flags.append(f"notebooks not executed ({len(idle)} of {len(notebooks)})" if notebooks else "no notebooks")
    fids = [n for n in ex.files if FID_RE.match(n)]
    if not fids:
        flags.append("fid.json missing")
    flags += [m for n in fids if (m := fid_mismatch(ex.files[n]))]
    return flags


def _marked(t: str, task, got, ref: dict) -> TaskResult:
    """Task `t`'s result from what the submission's run returned: its outputs compared with the reference's, on
    every case and on the public ones alone (the feedback's public line); a TaskResult (a failed run) as it is."""
    from hw3_utils.checks import compare

    if isinstance(got, TaskResult):
        return got
    n = len(task.public)  # the reference's cases: the public ones first, then the hidden ones
    exp, var, cs = ref["expected"][t], ref["variants"].get(t, ()), ref["cases"][t]
    try:  # whatever the outputs hold, a failure here costs this task, never the batch
        ok, msg = compare(t, got, exp, var, cs, public=n)
        pub_ok, pub_msg = compare(t, got[:n], exp[:n], var, cs[:n], public=n)
    except Exception as err:
        ok, msg = False, f"its outputs could not be compared ({type(err).__name__})"
        pub_ok, pub_msg = ok, msg
    public = "PASS" if pub_ok else f"FAIL: {pub_msg}"
    return passed(task.points, public) if ok else failed(Kind.WRONG, msg, public)


def _file_notes(ex: Extracted, notebooks: dict) -> list[str]:
    """The feedback's notes on the notebooks, fid.json and manifest of an extracted submission."""
    notes = [notebook_note(name, nb) for name, nb in notebooks.items()]
    notes += [fid_note(name, ex.files[name]) for name in sorted(ex.files) if FID_RE.match(name)]
    if not ex.fatal:
        if not notebooks:
            notes.append("no notebooks in the submission")
        if not any(FID_RE.match(n) for n in ex.files):
            notes.append("no runs/<profile>/fid.json in the submission")
        notes += manifest_notes(ex.files)
    return notes


def grade_one(zpath: Path, work: Path, release_kit: Path, ref: dict, task_timeout: float, zygote: sandbox.Zygote,
              startup: float = STARTUP_SECONDS) -> Graded:
    """Grade one zip in the folder `work` (its own, removed afterwards)."""
    tasks = kit_tasks(release_kit)  # the release's own tasks: an optional extension left out is not graded
    work.mkdir(mode=0o700, parents=True, exist_ok=True)  # its own (mkdtemp): no run looks in, nor guesses its name
    os.chmod(work, 0o700)
    (work / "sub").mkdir()
    ex = safe_extract(zpath, work / "sub", release_kit)  # the release's task files and notebooks
    notes = list(ex.notes)
    per_task: dict[str, TaskResult] = {}
    status = "graded"
    submitted = [f for f in task_files(tasks) if f in ex.files]
    if ex.fatal:
        status = f"rejected: {ex.fatal}"
        per_task = {t: failed(Kind.NOT_SUBMITTED, f"the submission was rejected ({ex.fatal})") for t in tasks}
    elif not submitted:
        status = "no task files"
        per_task = {t: failed(Kind.NOT_SUBMITTED, f"{tasks[t].file} was not submitted") for t in tasks}
    else:
        kit = work / "kit"
        shutil.copytree(release_kit / "hw3_utils", kit / "hw3_utils",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for rel in submitted:
            shutil.copyfile(ex.files[rel], kit / rel)
        for rel in task_files(tasks):
            if rel not in ex.files:
                notes.append(f"{rel} is missing or was rejected: the kit's stub is used, its tasks get 0")
        cases = {t: ref["cases"][t] for t in tasks}
        results, printed = run_submission(work, cases, ref["expected"], task_timeout, zygote, startup)
        if printed > sandbox.PRINT_LIMIT:
            notes.append(f"your code printed more than {sandbox.PRINT_LIMIT // MiB} MB; remove the print calls "
                         "inside loops (the output past that was dropped; your tasks were still graded)")
        per_task = {t: _marked(t, task, results.get(t, failed(Kind.ERROR, "not run")), ref)
                    for t, task in tasks.items()}
    notebooks = read_notebooks(ex.files)  # each read once, bounded and checked (hw3_utils.student_files)
    notes += _file_notes(ex, notebooks)
    flags = flags_of(per_task, ex, notebooks)  # reads the extracted fid.json: before it is removed
    answers, written, moved = submission_written(notebooks, ex.files)  # reads fid.json too
    shutil.rmtree(work, ignore_errors=True)
    return Graded(zpath.stem, status, per_task, notes, sandbox.DESCRIPTION[zygote.mode], flags + moved, answers,
                  written)


ERROR_LOG = "grader-errors.log"  # in OUT: the traceback of every submission the grader itself failed on
_log_lock = threading.Lock()


def log_error(log: Path, what: str, err: Exception) -> None:
    with _log_lock, open(log, "a", encoding="utf-8", errors="replace") as f:
        f.write(f"--- {what} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        f.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))


def grader_failed(zpath: Path, err: Exception, log: Path, mode: str, tasks: dict) -> Graded:
    """The record of a submission the grader failed on (a bug of the grader's, or an input it does not
    survive yet): every task 0 with a message saying so, flagged for a human look, the traceback in `log`."""
    log_error(log, zpath.name, err)
    why = f"the grader failed on this submission ({type(err).__name__}); an instructor will look at it"
    return Graded(zpath.stem, f"not graded: {why}", {t: failed(Kind.SANDBOX, why) for t in tasks},
                  [f"the grader's error is logged in {ERROR_LOG}"], sandbox.DESCRIPTION[mode],
                  [f"grader error ({type(err).__name__}): see {ERROR_LOG}"])


def similarity(entries: list[Path], kit: Path, scratch: Path, out: Path, ids: dict[str, str]) -> list:
    """similarity.similar_pairs (the submissions named by their student ids); if it fails, the batch still ends
    with its grades (the error is logged)."""
    try:
        return similar_pairs(entries, kit, scratch, ids=ids)
    except Exception as err:
        log_error(out / ERROR_LOG, "the similarity check", err)
        return []


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


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _student_ids(entries: list[Path], out: Path, update: bool) -> tuple[dict[str, str], dict[str, str]]:
    """render.student_ids of the zips `entries`; a regrade (`update`) keeps the ids OUT's grades.csv holds."""
    earlier = read_csv(out / "grades.csv") if update and (out / "grades.csv").exists() else []
    return student_ids([z.stem for z in entries], {r["student"] for r in earlier})


def _in_parallel(one, entries: list[Path], jobs: int, bar: Progress | None) -> list[Graded]:
    """one(i, entry) for every entry, `jobs` at once, the progress bar stepped as each ends; in entry order."""
    pool = ThreadPoolExecutor(jobs)
    try:
        futures = [pool.submit(one, i, z) for i, z in enumerate(entries)]
        for f in as_completed(futures):
            if bar:
                bar.step(f.result().student)
    except BaseException:  # SIGTERM, SIGHUP or Ctrl-C: the submissions not started are dropped, the batch ends now
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return [f.result() for f in futures]


def _start(hide: list[Path]) -> tuple[Path, sandbox.Zygote]:
    """The batch's folder (its runs' work folders) and its fork server, where Python and torch start once per batch
    and every sandbox is forked from; "nobody" mode makes `hide` unreadable for the batch, beside the repository
    (the namespace modes' runs see only their allowlist anyway). Where the server cannot start, neither is left."""
    batch = Path(tempfile.mkdtemp(prefix="hw3-grade-"))
    os.chmod(batch, 0o711)
    try:
        return batch, sandbox.Zygote(hide=hide, skip=[batch])
    except BaseException:
        shutil.rmtree(batch, ignore_errors=True)
        raise


def grade_batch_detailed(submissions: Path, out: Path, task_timeout: float = 60.0, release_dir=None,
                         reference=None, extra_hidden=(), startup: float = STARTUP_SECONDS, jobs: int | None = None,
                         progress=None, update: bool = False, without=()) -> list[Graded]:
    """Grade every *.zip (and every other plain file, which is rejected) in `submissions` into `out`; the `Graded`
    record of each submission. `jobs` submissions are graded at once (default: the cores; one in "nobody" mode),
    each in its own sandbox; `progress` is a stream for the progress line. `update` (a regrade of some
    students): their rows replace theirs in OUT's grades.csv and grading sheet, every other row stays, and
    summary.md is left as the full batch wrote it. The tasks graded are the release's (`release_dir`, else one made
    here without the extensions `without`, which must be those the release left out: written.release_without)."""
    from .reference import build_reference, load_reference
    from .release import make_release

    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    without = release_without(without, out, release_dir)  # a WITHOUT the release was not made with is refused
    (out / "feedback").mkdir(parents=True, exist_ok=True)  # and OUT
    ref = load_reference(reference) if reference else build_reference()
    rows: list[Graded] = []
    batch, zygote = _start([submissions, out, *extra_hidden, *([Path(reference)] if reference else [])])
    # "nobody" mode: one at a time unless asked, since runs side by side share the machine's folders
    jobs = max(1, jobs or (1 if zygote.mode == "nobody" else default_jobs()))
    try:
        if zygote.machine and progress:
            progress.write("\n".join(zygote.machine.report()) + "\n")
        preflight(batch, zygote)
        kit = Path(release_dir) if release_dir else make_release(batch / "release", quiet=True, repo_url="none",
                                                                 without=without)
        tasks = kit_tasks(kit)
        entries = sorted(p for p in submissions.iterdir() if p.is_file() and not p.name.startswith("."))
        bar = Progress(len(entries), progress) if progress else None
        ids, clashes = _student_ids(entries, out, update)

        def one(i: int, z: Path) -> Graded:
            work = Path(tempfile.mkdtemp(prefix=f"w{i}-", dir=batch))
            try:  # nothing a submission does stops the batch; a grader bug is logged and flagged
                graded = grade_one(z, work, kit, ref, task_timeout, zygote, startup)
                graded.identify(ids[z.stem], clashes.get(z.stem))
                atomic_write(out / "feedback" / f"{graded.student}.md", graded.markdown())
            except Exception as err:
                graded = grader_failed(z, err, out / ERROR_LOG, zygote.mode, tasks)
                graded.identify(ids[z.stem], clashes.get(z.stem))
                shutil.rmtree(work, ignore_errors=True)
                atomic_write(out / "feedback" / f"{graded.student}.md", graded.markdown())
            return graded

        rows = _in_parallel(one, entries, jobs, bar)
        pairs = [] if update or len(entries) < 2 else similarity(entries, kit, batch / "similarity", out, ids)
    finally:
        left = zygote.close()
        shutil.rmtree(batch, ignore_errors=True)
    if left:  # the grades stand; what would not go is the instructor's to see
        log_error(out / ERROR_LOG, "the end of the batch", RuntimeError(f"the runs left {left} behind"))
        if progress:
            progress.write(f"WARNING: the runs left {left} behind (see {ERROR_LOG})\n")
    _write_tables(rows, out, tasks, pairs, update, without)
    return rows


def _write_tables(rows: list[Graded], out: Path, tasks: dict, pairs: list, update: bool, without) -> None:
    """OUT's grades.csv and grading sheet (on `update`, the other students' rows kept; the written questions of
    the extensions `without` left out), and, for a whole batch, summary.md with the similar pairs."""
    table_rows = [g.row() for g in rows]
    if update and (out / "grades.csv").exists():
        regraded = {g.student for g in rows}
        table_rows += [r for r in read_csv(out / "grades.csv") if r["student"] not in regraded]
    write_csv(out / "grades.csv", ["student", *tasks, "total", "status"],
              sorted(table_rows, key=lambda r: r["student"]))
    write_sheet(rows, out, keep_others=update, without=without)
    if not update:
        from .summary import write_summary

        write_summary(rows, out, tasks, pairs)
