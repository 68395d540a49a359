"""How a submission's code runs: a separate process that can harm only itself.

Modes, best first (the feedback header names the one used):
- "namespaces" (the grader runs as root): new network, mount and PID namespaces (`unshare`), an
  empty tmpfs over every hidden path (the instructor's kit, grader, submissions, grades, reference),
  then the code runs as user nobody with no capabilities: no network, nothing secret to read,
  nothing of the grader's to write, and every process dies with the namespace.
- "userns" (not root, unprivileged user namespaces allowed): the same namespaces inside a user
  namespace (`unshare -r`), the kit and the Python installation remounted read-only, then a
  nested user namespace so the mounts are locked and the code holds no capabilities.
- "nobody" (root, namespaces refused, e.g. a Docker container): runs as user nobody; hidden
  paths are made unreadable (chmod) for the duration of the batch.
- "none": a plain subprocess; only the rlimits and the process group protect the grader.
All modes: rlimits (address space, file size, CPU time, no core files), a minimal environment,
its own process group (killed as a whole on timeout).
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

NOBODY = 65534
MEMORY_LIMIT = 6 * 1024**3
FILE_LIMIT = 64 * 1024**2

_PRIV_DROP = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
              "--bounding-set=-all", "--no-new-privs", "--"]
# $1: count of hidden paths, then the paths, then the command. A tmpfs covers hidden folders,
# /dev/null covers hidden files.
_HIDE = ('n=$1; shift; while [ "$n" -gt 0 ]; do '
         'if [ -d "$1" ]; then mount -t tmpfs -o size=16k,mode=0755 hidden "$1" || exit 97; '
         'else mount --bind /dev/null "$1" || exit 97; fi; shift; n=$((n-1)); done; ')
_READONLY = ('m=$1; shift; while [ "$m" -gt 0 ]; do '
             'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 98; shift; m=$((m-1)); done; ')
_NS = ["--net", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def detect_mode() -> str:
    forced = os.environ.get("HW3_GRADER_SANDBOX")  # for tests of the fallbacks
    if forced:
        return forced
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if os.geteuid() == 0:
        probe = tempfile.mkdtemp(prefix="hw3-sandbox-probe-")
        try:
            ok = unshare and setpriv and _works([unshare, *_NS, "--", "/bin/sh", "-c", _HIDE + "true",
                                                 "sh", "1", probe])
        finally:
            os.rmdir(probe)
        if ok:
            return "namespaces"
        return "nobody" if setpriv else "none"
    if unshare and _works([unshare, "-r", *_NS, "--", "/bin/sh", "-c", f"{_HIDE}exec unshare -U -m true", "sh", "0"]):
        return "userns"
    return "none"


DESCRIPTION = {
    "namespaces": "sandbox: no network, private mounts hiding the grader's files, user nobody, rlimits",
    "userns": "sandbox: user namespace, no network, private read-only mounts hiding the grader's files, rlimits",
    "nobody": "sandbox (reduced: namespaces unavailable): user nobody with the grader's files unreadable, rlimits",
    "none": "sandbox (reduced: namespaces unavailable and not root): a plain subprocess with rlimits only",
}


def _limits(cpu_seconds: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return apply


def wrap(argv: list[str], hide: list[Path], readonly: list[Path], mode: str | None = None) -> list[str]:
    """The command line that runs `argv` in the sandbox of `mode`."""
    mode = mode or detect_mode()
    hide = [str(p) for p in hide if Path(p).exists()]
    if mode == "namespaces":
        return ["unshare", *_NS, "--", "/bin/sh", "-c", _HIDE + 'exec "$@"', "sh", str(len(hide)), *hide,
                *_PRIV_DROP, *argv]
    if mode == "userns":
        ro = [str(p) for p in readonly if Path(p).exists()]
        # read-only binds first: a later non-recursive bind would drop the tmpfs mounts under it
        script = _READONLY + _HIDE + 'exec unshare -U -m -- "$@"'
        return ["unshare", "-r", *_NS, "--", "/bin/sh", "-c", script, "sh", str(len(ro)), *ro,
                str(len(hide)), *hide, *argv]
    if mode == "nobody":
        return [*_PRIV_DROP, *argv]
    return list(argv)


def prepare_workdir(work: Path, mode: str | None = None) -> None:
    """Let the sandboxed user write its work folder (nobody owns it in the root modes)."""
    mode = mode or detect_mode()
    if mode in ("namespaces", "nobody"):
        for p in [work, *work.rglob("*")]:
            os.lchown(p, NOBODY, NOBODY)
        os.chmod(work, 0o700)
        parent = work.parent
        os.chmod(parent, os.stat(parent).st_mode | 0o011)  # traversable, not listable


class Hidden:
    """In "nobody" mode, make hidden paths unreadable for the batch (restored on exit)."""

    def __init__(self, paths, mode: str | None = None):
        self.paths = [Path(p) for p in paths if Path(p).exists()]
        self.mode = mode or detect_mode()
        self.saved: list[tuple[Path, int]] = []

    def __enter__(self):
        if self.mode == "nobody":
            for p in self.paths:
                self.saved.append((p, os.stat(p).st_mode & 0o7777))
                os.chmod(p, 0o700 if p.is_dir() else 0o600)
        return self

    def __exit__(self, *exc):
        for p, m in self.saved:
            os.chmod(p, m)


def start(argv: list[str], cwd: Path, env: dict, hide, readonly, cpu_seconds: int, stdout, stderr,
          mode: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(wrap(argv, hide, readonly, mode), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr, start_new_session=True,
                            preexec_fn=_limits(cpu_seconds), close_fds=True)


def kill(proc: subprocess.Popen) -> None:
    """Kill the process group (and with it the PID namespace); reap the process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def python() -> str:
    return sys.executable
