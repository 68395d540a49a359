"""Running one submission: the checks' runner (`python -m hw3_utils.checks --run`) on the student kit with the
submitted files, in the sandbox (grader/sandbox.py), one task after the other.

A task that hangs or crashes fails alone and the runner starts again after it. The grader's own clock bounds
each task and the whole run, whatever the code writes on any pipe. What comes back on the results pipe is
validated before anything touches it (hw3_utils/results_pipe.py, the protocol both sides share); a failure is a
typed `TaskResult` (grader/render.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import torch

from hw3_utils import results_pipe

from . import sandbox
from .extract import kit_tasks
from .render import Kind, TaskResult, failed

STARTUP_SECONDS = 120.0  # importing torch and the kit, before the first task starts


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


def _describe_exit(rc: int | None) -> tuple[Kind, str]:
    """How the runner ended, typed: a crash (signal, exit code), or the sandbox that could not start."""
    if rc is None:
        return Kind.CRASH, "crashed"
    if sandbox.setup_failed(rc):
        return Kind.SANDBOX, f"the sandbox could not start (exit {rc}; the grader's problem, not yours)"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        hint = " (out of memory or a file too large?)" if name in ("SIGKILL", "SIGXFSZ", "SIGSEGV") else ""
        return Kind.CRASH, f"crashed: killed by signal {name}{hint}"
    return Kind.CRASH, f"crashed: exit code {rc}"


def _load_result(data: bytes, expected: list[dict]) -> list | TaskResult:
    """A task's result, validated before use (`results_pipe.decode`): its outputs [{name: plain tensor}] or a
    typed failure."""
    try:
        got = results_pipe.decode(data, expected)
    except results_pipe.Malformed as err:
        return failed(Kind.WRONG, str(err))
    if isinstance(got, results_pipe.TaskError):
        return failed(Kind.NOT_IMPLEMENTED if got.not_implemented else Kind.ERROR, got.message)
    return got


class _Results(threading.Thread):
    """Reads the checks runner's results pipe (`results_pipe.read_records`): when each task started, its bytes."""

    def __init__(self, fd: int, tasks: list[str]):
        super().__init__(daemon=True)
        self.fd, self.tasks = fd, list(tasks)
        self.started: dict[str, float] = {}
        self.payloads: dict[str, bytes] = {}
        self.last = time.monotonic()  # when the last record arrived: a run that stops reporting is stopped
        self.start()

    def run(self):
        with open(self.fd, "rb") as f:
            for kind, tid, data in results_pipe.read_records(f, self.tasks):
                self.last = time.monotonic()
                if kind == "S":
                    self.started.setdefault(tid, self.last)
                else:
                    self.payloads.setdefault(tid, data)


def _watch(run: sandbox.Run, pipe: _Results, remaining: list[str], task_timeout: float, startup: float) -> str | None:
    """Wait for the run to end; None when it exits by itself, else why the grader's own clock stopped it (a task
    over its time, the import, a run that stopped reporting, the whole run), whatever it writes on any pipe."""
    t0 = time.monotonic()
    deadline = t0 + startup + task_timeout * len(remaining) + 10
    while run.poll() is None:
        now = time.monotonic()
        seen = dict(pipe.started)
        inflight = next((t for t in remaining if t in seen and t not in pipe.payloads), None)
        if inflight and now - seen[inflight] > task_timeout:
            return f"time limit exceeded ({task_timeout:g} s)"
        if not seen and now - t0 > startup:
            return f"time limit exceeded while importing hw3_utils ({startup:g} s)"
        if seen and not inflight and now - pipe.last > task_timeout:  # reported, then neither ran nor exited
            return f"time limit exceeded: the code stopped without finishing ({task_timeout:g} s)"
        if now > deadline:
            return f"time limit exceeded for the whole submission ({deadline - t0:.0f} s)"
        time.sleep(0.05)
    return None


def run_submission(work: Path, cases: dict, expected: dict, task_timeout: float, zygote: sandbox.Zygote,
                   startup: float = STARTUP_SECONDS) -> tuple[dict[str, list | TaskResult], int]:
    """Run the checks' runner on `work`/kit for every task: ({task: its outputs | a failure}, the most bytes the
    code printed on stdout or stderr in one run). Outputs are validated against `expected` ({task: [{name:
    tensor}]}) before anything else touches them."""
    tasks = [t for t in kit_tasks() if t in cases]
    torch.save(cases, work / "kit" / "cases.pt")
    sandbox.prepare_workdir(work)
    kit, home = sandbox.kit_path(work), sandbox.home_path(work)
    env = {**sandbox.BASE_ENV, "HOME": str(home), "TORCH_HOME": str(home / "torch"), "PYTHONPATH": str(kit),
           "MPLCONFIGDIR": str(home / "mpl"), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(sandbox.tmp_path(work))}
    results: dict[str, list | TaskResult] = {}
    printed = 0
    remaining = list(tasks)
    while remaining:
        argv = [sandbox.python(), "-m", "hw3_utils.checks", "--run", "--cases", str(kit / "cases.pt"),
                "--results-fd", "{results_fd}", *remaining]
        cpu = int(startup + task_timeout * len(remaining) + 30)
        run = sandbox.Run(argv, work, env, cpu, zygote)
        pipe = _Results(run.results, remaining)
        reason = _watch(run, pipe, remaining, task_timeout, startup)
        run.close()  # a finished run's stray children go with the namespace or the process group
        pipe.join(timeout=10)
        printed = max(printed, run.printed())
        rc = run.returncode if reason is None else None
        seen = dict(pipe.started)
        done = []
        for t in remaining:
            if t in pipe.payloads:
                results[t] = _load_result(pipe.payloads[t], expected[t])
                done.append(t)
        if not seen and not done:  # nothing started: the kit did not import (or the startup timed out)
            if reason:
                fail = failed(Kind.TIMEOUT, reason)
            elif sandbox.setup_failed(rc):
                fail = failed(*_describe_exit(rc))
            else:
                msg = f"hw3_utils could not be imported: {import_error(run.stderr_tail(), kit)}"
                crashed = rc not in (0, 1, None)
                fail = failed(Kind.CRASH if crashed else Kind.ERROR,
                              msg + (f" [{_describe_exit(rc)[1]}]" if crashed else ""))
            for t in remaining:
                results[t] = fail
            break
        inflight = next((t for t in remaining if t in seen and t not in done), None)
        if inflight is None:
            kind, how = _describe_exit(rc)
            for t in [t for t in remaining if t not in done]:
                results[t] = failed(kind, f"the runner stopped before this task ({how})")
            break
        results[inflight] = failed(Kind.TIMEOUT, reason) if reason else failed(*_describe_exit(rc))
        remaining = remaining[remaining.index(inflight) + 1:]
        remaining = [t for t in remaining if t not in done]
    return results, printed


# Imports no run has made yet (the fork server preloads torch): the standard library and site-packages
# must be readable by the sandboxed user, not only already in memory.
PREFLIGHT = "import torch, torchvision, zipapp, scipy"


def preflight(batch: Path, zygote: sandbox.Zygote) -> None:
    """The sandboxed code must be able to start Python and import torch, else every grade would be 0."""
    work = batch / "preflight"
    (work / "kit").mkdir(parents=True)
    sandbox.prepare_workdir(work)
    env = {**sandbox.BASE_ENV, "HOME": str(sandbox.home_path(work))}
    run = sandbox.Run([sandbox.python(), "-c", PREFLIGHT], work, env, 300, zygote)
    try:
        rc = run.wait(timeout=300)
    except subprocess.TimeoutExpired:
        rc = None
    run.close()
    os.close(run.results)
    if rc != 0:
        why = _describe_exit(rc)[1] if sandbox.setup_failed(rc) else f"exit {rc}"
        raise RuntimeError(f"the sandbox ({zygote.mode}) cannot run {sandbox.python()} with torch ({why}): "
                           f"{run.stderr_tail()[-1500:]} {zygote.log_tail()[-1500:]}\nThe sandboxed user must be "
                           "able to read the Python installation; set HW3_GRADER_SANDBOX=none to grade without a "
                           "sandbox (not safe against hostile code).")
    shutil.rmtree(work, ignore_errors=True)
