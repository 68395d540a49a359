"""How a submission's code runs: forked by the grader's fork server (grader/zygote.py, the one launch path)
into a sandbox whose file system is built from an allowlist.

Modes (`detect_mode`; every feedback header names the one used, `python -m grader grade` warns about the
reduced ones):
- "root" (the grader runs as root: CI, a course server): per run a user namespace of its own, mapping a
  fresh range of 65,536 uids (the code runs as one of them, with no capabilities), new mount, PID, network,
  IPC and UTS namespaces, and a cgroup that caps its processes and its memory (shared memory and memfds
  included). Its keyrings, /proc, processes and files are its own and die with it.
- "userns" (a normal user where unprivileged user namespaces are allowed: an instructor's laptop): the
  same namespaces and file system; the code runs as an id of a nested user namespace (so every run's
  keyrings and process count are its own), but all runs share the instructor's uid outside, and without
  a cgroup its memory is capped per process (RLIMIT_AS), not per run.
- "nobody" (root where namespaces are refused, e.g. a Docker container or Gradescope's image; docs/sandbox.md
  says how to give a container what root mode needs): a uid and gid of its own per run that nothing else on
  the machine holds, the repository and every copy of the kit or the instructor's material a scan finds made
  unreadable for the batch, its processes, files in world-writable folders and IPC objects removed after each
  run (grader/nobody.py); the same rlimits with RLIMIT_NPROC per run, and the cgroup where one can be made.
  Reduced: it shares the machine's network, sees its processes, and may read what any user may.
- "none": a plain process with rlimits. Only with `--allow-unsandboxed`: a hostile submission can read and
  change what the grader's user can.

The file system of the two namespace modes: a tmpfs of WRITE_LIMIT bytes and WRITE_FILES files as the root,
holding /tmp, /var/tmp, /dev/shm and HOME (/tmp/home); read-only: ALLOW (the system's libraries and
programs), the Python installation, and the kit with the submitted files (/kit); a few device nodes; a new
/proc. Nothing else: no home folders, /root, /run, repository or other submissions, no host socket (none is
in the tree, and the network namespace has only its own loopback). stdout and stderr are pipes the grader
drains: past PRINT_LIMIT bytes the output is dropped, never fatal. Results come back on a third pipe.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import nobody
from .nobody import StartError
from .zygote import SETUP_FAILED

MEMORY_LIMIT = 6 * 1024**3  # bytes: per process (RLIMIT_AS) everywhere, per run (cgroup) in root mode
PROCESS_LIMIT = 256  # processes and threads of one run
FILE_LIMIT = 64 * 1024**2
WRITE_LIMIT = 256 * 1024**2  # the sandbox's tmpfs: /tmp, /dev/shm, /var/tmp and HOME together
WRITE_FILES = 20_000
PRINT_LIMIT = 1024**2  # stdout and stderr, each; the rest is dropped
TAIL = 16 * 1024  # of stderr, kept for the error message
UID_RANGE = 65536  # uids mapped into one run's user namespace (root mode)
UID_BASE = 2_000_000_000  # far above real users: run k gets UID_BASE + (k mod UID_SLOTS) * UID_RANGE
UID_SLOTS = 30_000
INNER_UID = 1000  # the code's uid inside its user namespace
# The environment of every sandboxed run and of the fork server (one thread: jobs run side by side)
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg", "LC_ALL": "C.UTF-8"}
# Read-only in the sandbox, besides the Python installation and the kit: what the interpreter and the
# libraries it loads need, and nothing with secrets (no /home, /root, /run, /var, /etc/shadow or ssh keys).
ALLOW = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/ld.so.conf",
         "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime", "/etc/fonts")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
SANDBOX_KIT, SANDBOX_HOME, SANDBOX_TMP = "/kit", "/tmp/home", "/tmp"
MODES = ("root", "userns", "nobody", "none")


def python() -> str:
    return sys.executable


def python_paths() -> list[str]:
    """The Python installation's folders (the environment's and the base interpreter's), resolved."""
    return sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)})


def binds(work: Path) -> list[dict]:
    """The allowlist of a namespace sandbox: {"src", "dst", "dir", "dev"} per read-only tree (or "link")."""
    out, seen = [], set()
    for src in (*ALLOW, *python_paths()):
        if not os.path.lexists(src) or src in seen:
            continue
        seen.add(src)
        if os.path.islink(src) and src in ALLOW:  # merged /usr: /bin -> usr/bin stays a link
            out.append({"link": os.readlink(src), "dst": src})
        else:
            out.append({"src": src, "dst": src, "dir": os.path.isdir(src), "dev": False})
    out += [{"src": d, "dst": d, "dir": False, "dev": True} for d in DEVICES if os.path.exists(d)]
    out.append({"src": str(work / "kit"), "dst": SANDBOX_KIT, "dir": True, "dev": False})
    return out


# modes -----------------------------------------------------------------------------------------
def _probe(mode: str) -> bool:
    """Whether a sandbox of `mode` can be built here: the zygote's own setup, without torch (a second)."""
    probe = Path(tempfile.mkdtemp(prefix="hw3-sandbox-probe-"))
    try:
        (probe / "kit").mkdir()
        prepare_workdir(probe, mode)
        req = request(["-c", "pass"], probe, dict(BASE_ENV), 30, mode, run_id=0)
        r = subprocess.run([python(), "-I", str(Path(__file__).with_name("zygote.py")), "--probe", json.dumps(req)],
                           capture_output=True, timeout=60, env=BASE_ENV)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@functools.cache
def detect_mode() -> str:
    forced = os.environ.get("HW3_GRADER_SANDBOX")  # for tests of the fallbacks
    if forced:
        assert forced in MODES, f"HW3_GRADER_SANDBOX={forced!r} is none of {MODES}"
        return forced
    if os.geteuid() == 0:
        return "root" if _probe("root") else "nobody"
    return "userns" if _probe("userns") else "none"


DESCRIPTION = {
    "root": "sandbox: own file system built from an allowlist, no network, own uid range, processes and memory "
            "capped per run",
    "userns": "sandbox: own file system built from an allowlist, no network, user namespace, memory capped per "
              "process",
    "nobody": "sandbox (reduced: namespaces unavailable): a uid of its own, the instructor's files unreadable, "
              "rlimits, its processes and files removed after the run; network shared, writes capped per file only",
    "none": "sandbox (reduced: not root and no user namespaces): a plain process with rlimits only",
}

# What the reduced modes mean for trust, printed at the start of a batch.
WARNING = {
    "userns": "Note: grading as a normal user. Each submission runs in its own namespaces and file system, but "
              "all of them as your uid outside, with memory capped per process rather than per submission.",
    "nobody": "WARNING: user namespaces are unavailable here (a container?), so each submission runs as a uid of "
              "its own, with the repository, the submissions, the grades and every copy of the kit found on the "
              "machine unreadable to it, and its processes and files removed after it. What that does not cover: "
              "it can use the network (send its code out, fetch someone else's); it can read whatever any user "
              "of this machine may read and see other processes' command lines; its disk writes are capped per "
              "file, not in total; and two submissions graded at once can reach each other while both run (so "
              "they are graded one at a time unless you ask for more with JOBS=N). To grade in the full sandbox, "
              "give the container user namespaces: see docs/sandbox.md.",
    "none": "WARNING: this machine allows no user namespaces to a normal user (and the grader is not root), so "
            "submissions run as plain processes under your own account. A hostile submission could read the "
            "solution, the other submissions and the grades, and change them: do not trust these grades against "
            "hostile code. Grade as root, or where unprivileged user namespaces are enabled "
            "(sysctl kernel.unprivileged_userns_clone=1, or user.max_user_namespaces > 0).",
}


def banner(mode: str) -> str:
    """What `python -m grader grade` says first: the mode, what it means for trust, and a cap this machine lacks."""
    lines = [DESCRIPTION[mode], *([WARNING[mode]] if mode in WARNING else [])]
    if mode in ("root", "nobody") and not Cgroups.available():
        lines.append("Note: no cgroup can be made here (a container without a writable /sys/fs/cgroup), so memory "
                     f"is capped per process ({MEMORY_LIMIT // 1024**3} GiB of address space), not per submission.")
    return "\n".join(lines)


def namespaced(mode: str | None = None) -> bool:
    return (mode or detect_mode()) in ("root", "userns")


def kit_path(work: Path, mode: str | None = None) -> Path:
    """Where the sandboxed code finds the kit."""
    return Path(SANDBOX_KIT) if namespaced(mode) else work / "kit"


def home_path(work: Path, mode: str | None = None) -> Path:
    return Path(SANDBOX_HOME) if namespaced(mode) else work / "home"


def tmp_path(work: Path, mode: str | None = None) -> Path:
    """The code's TMPDIR: the sandbox's /tmp, else its HOME in the work folder."""
    return Path(SANDBOX_TMP) if namespaced(mode) else home_path(work, mode)


def prepare_workdir(work: Path, mode: str | None = None) -> None:
    """`work`/kit readable by the sandbox's user; `work`/home for the reduced modes. In "nobody" mode `work` itself
    stays the grader's alone (0700) until nobody.Machine.own_workdir opens it to the run's group: no other run
    may look in, whatever its name."""
    mode = mode or detect_mode()
    (work / "home").mkdir(exist_ok=True)
    for p in work.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(work, 0o700 if mode == "nobody" else 0o755)
    if mode == "nobody":
        os.chmod(work.parent, os.stat(work.parent).st_mode | 0o011)  # traversable, not listable


def _rlimits(cpu_seconds: int, mode: str) -> dict[str, tuple[int, int]]:
    """The rlimits of every run, by `resource` name: (soft, hard). RLIMIT_NPROC counts per uid and user
    namespace, so in the namespace modes and in "nobody" mode (a uid per run) it caps the run's own processes."""
    limits = {"RLIMIT_AS": (MEMORY_LIMIT, MEMORY_LIMIT), "RLIMIT_FSIZE": (FILE_LIMIT, FILE_LIMIT),
              "RLIMIT_CORE": (0, 0), "RLIMIT_CPU": (cpu_seconds, cpu_seconds + 5)}
    if namespaced(mode) or mode == "nobody":  # nobody: a uid of the run's own, so the count is the run's
        limits["RLIMIT_NPROC"] = (PROCESS_LIMIT, PROCESS_LIMIT)
    if mode == "nobody":  # POSIX message queues outlive the run, and no mqueue mount may list them
        limits["RLIMIT_MSGQUEUE"] = (0, 0)
    return limits


# cgroups (root mode): processes and memory of a whole run -------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Cgroups:
    """One cgroup per run under hw3-grader/, capping its processes (pids) and memory (memory, which counts
    tmpfs, shared memory and memfds too). cgroup v2 where it has both controllers, else v1's two hierarchies."""

    def __init__(self):
        v2 = Path("/sys/fs/cgroup")
        controllers = (v2 / "cgroup.controllers").read_text().split() if (v2 / "cgroup.controllers").exists() else []
        if {"memory", "pids"} <= set(controllers):
            self.version, self.parents = 2, {"all": v2 / "hw3-grader"}
        else:
            self.version, self.parents = 1, {c: Path(f"/sys/fs/cgroup/{c}/hw3-grader") for c in ("pids", "memory")}
        for parent in self.parents.values():
            parent.mkdir(exist_ok=True)
            if self.version == 2:
                (v2 / "cgroup.subtree_control").write_text("+memory +pids")
                (parent / "cgroup.subtree_control").write_text("+memory +pids")

    @staticmethod
    @functools.cache
    def available() -> bool:
        if os.geteuid() != 0:
            return False
        try:
            Cgroups()
            return True
        except OSError:
            return False

    def create(self, name: str) -> list[str]:
        """A cgroup for one run with its caps; returns the cgroup.procs files its first process joins."""
        procs = []
        for c, parent in self.parents.items():
            d = parent / name
            d.mkdir()
            limits = ({"pids.max": PROCESS_LIMIT, "memory.max": MEMORY_LIMIT, "memory.swap.max": 0}
                      if self.version == 2 else
                      {"pids.max": PROCESS_LIMIT} if c == "pids" else {"memory.limit_in_bytes": MEMORY_LIMIT})
            for key, value in limits.items():
                if (d / key).exists():
                    (d / key).write_text(str(value))
            procs.append(str(d / "cgroup.procs"))
        return procs

    def remove(self, name: str, seconds: float = 5.0) -> bool:
        """Kill whatever is left in the run's cgroup, then remove it; False when it is still busy after `seconds`
        (a process the zygote has not reaped yet keeps it; `sweep` tries again)."""
        deadline, pause = time.monotonic() + seconds, 0.002  # the run's last process is reaped within ms
        for parent in self.parents.values():
            d = parent / name
            if not d.exists():
                continue
            if (d / "cgroup.kill").exists():
                (d / "cgroup.kill").write_text("1")
            while True:
                for pid in [int(p) for p in (d / "cgroup.procs").read_text().split()]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    d.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(pause)
                    pause = min(2 * pause, 0.05)
        return True

    def sweep(self, prefix: str, seconds: float = 20.0) -> list[str]:
        """Remove every cgroup of this grader (names starting with `prefix`); returns those still left."""
        names = {d.name for parent in self.parents.values() for d in parent.glob(f"{prefix}*") if d.is_dir()}
        return [n for n in sorted(names) if not self.remove(n, seconds)]

    def sweep_stale(self) -> list[str]:
        """Remove the cgroups of grader processes that are gone (a batch killed by SIGKILL cannot sweep its own:
        a run's cgroup is named `<grader pid>-<run>`); returns those still left."""
        pids = {d.name.split("-")[0] for parent in self.parents.values() for d in parent.iterdir()
                if d.is_dir() and re.fullmatch(r"\d+-\d+", d.name)}
        return [left for pid in sorted(pids) if not _alive(int(pid)) for left in self.sweep(f"{pid}-", 5.0)]


_RUNS = itertools.count()


def request(argv: list[str], work: Path, env: dict, cpu_seconds: int, mode: str, run_id: int,
            cgroups: list[str] = (), uid: int | None = None) -> dict:
    """What the zygote's child builds for one run of `argv` (`-m module ...` or `-c code`) in `mode`; `uid`:
    the run's own ("nobody" mode, from nobody.Machine)."""
    uid = {"root": INNER_UID, "userns": INNER_UID, "nobody": uid}.get(mode, os.getuid())
    return {"mode": mode, "binds": binds(work) if namespaced(mode) else [], "tmpfs_bytes": WRITE_LIMIT,
            "tmpfs_files": WRITE_FILES, "uid": uid,
            "uid_base": UID_BASE + (run_id % UID_SLOTS) * UID_RANGE, "uid_count": UID_RANGE,
            "cgroups": list(cgroups), "cwd": str(kit_path(work, mode)), "kit": str(kit_path(work, mode)),
            "home": str(home_path(work, mode)), "env": env, "argv": argv, "limits": _rlimits(cpu_seconds, mode)}


# the fork server and one run ---------------------------------------------------------------------------
class _Drain(threading.Thread):
    """Reads a pipe to its end: keeps the first `limit` bytes (or, with keep="tail", the last TAIL bytes)
    and counts the rest."""

    def __init__(self, fd: int, limit: int, keep: str = "head"):
        super().__init__(daemon=True)
        self.fd, self.limit, self.keep = fd, limit, keep
        self.data = bytearray()
        self.total = 0
        self.start()

    def run(self):
        with open(self.fd, "rb", buffering=0) as f:
            while chunk := f.read(1 << 16):
                self.total += len(chunk)
                if self.keep == "tail":
                    self.data += chunk
                    del self.data[:-TAIL]
                elif len(self.data) < self.limit:
                    self.data += chunk[:self.limit - len(self.data)]


class _Status(threading.Thread):
    """The exit status the zygote's child C reports for its command (EOF without one: C itself died)."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.code = fd, None
        self.start()

    def run(self):
        with open(self.fd, "rb") as f:
            line = f.readline(32).strip()
        self.code = int(line) if line.lstrip(b"-").isdigit() else -signal.SIGKILL


class ExitOnSignals:
    """SIGTERM and SIGHUP (a dropped SSH session) raised as SystemExit in the main thread while a batch holds the
    machine, so that its `finally` undoes that hold; one that comes while it is undone (`hold`) waits for the
    end of it (`restore`). Nothing where the batch runs outside the main thread (signals reach only that one)."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.previous, self.pending, self.holding = {}, None, False
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._raise) for sig in self.SIGNALS}

    def _raise(self, signum, frame):
        if self.holding:
            self.pending = signum
            return
        self.holding = True  # the batch's end runs next: a second signal waits for it
        raise SystemExit(128 + signum)

    def hold(self) -> None:
        self.holding = True

    def restore(self) -> None:
        """The handlers as they were; then the signal that came meanwhile, if any, as SystemExit."""
        for sig, previous in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self.previous = {}
        if self.pending is not None:
            raise SystemExit(128 + self.pending)


class Zygote:
    """The fork server (grader/zygote.py): started once per batch, it forks one sandbox per run, so that
    starting Python and importing torch, torchvision and matplotlib is paid once, not per submission."""

    def __init__(self, mode: str | None = None, hide=(), skip=()):
        """`hide`, `skip`: in "nobody" mode, the folders to make unreadable for the batch (beside the repository)
        and the grader's own folders, which the scan leaves alone (nobody.Machine). Whatever fails here (a
        StartError says what to do) leaves nothing of the batch's hold on the machine."""
        self.mode = mode or detect_mode()
        self.signals = ExitOnSignals()
        self.machine = self.cgroups = self.proc = self.sock = self.log = self.home = None
        self.lock = threading.Lock()
        try:
            self.home = Path(tempfile.mkdtemp(prefix="hw3-zygote-"))
            os.chmod(self.home, 0o755)
            if self.mode == "nobody":
                self.machine = nobody.Machine(hide, [*skip, self.home]).start()
            self.cgroups = Cgroups() if self.mode in ("root", "nobody") and Cgroups.available() else None
            if self.cgroups:
                self.cgroups.sweep_stale()
            self._serve()
        except BaseException:
            self.close()
            raise

    def _serve(self) -> None:
        """Start the fork server and wait for its "ready"."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        env = {**BASE_ENV, "HOME": str(self.home), "MPLCONFIGDIR": str(self.home / "mpl")}
        self.log = open(self.home / "zygote.log", "wb")  # noqa: SIM115 - closed in close()
        try:
            self.proc = subprocess.Popen([python(), "-I", str(Path(__file__).with_name("zygote.py")),
                                          str(theirs.fileno())], env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=self.log, start_new_session=True, pass_fds=(theirs.fileno(),))
        except OSError as err:
            raise StartError(f"the grader's fork server could not start ({python()}: {err.strerror or err}): run "
                             "the grader with a Python installation that exists and that root may run") from None
        finally:
            theirs.close()
        self.sock.settimeout(600)
        try:
            ready = self.sock.recv(64)
        except OSError:
            ready = b""
        if b"ready" not in ready:
            raise RuntimeError(f"the grader's fork server did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.home / "zygote.log").read_bytes()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def spawn(self, req: dict, fds: list[int]) -> int:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(req).encode()], fds)
            reply = self.sock.recv(256)
        if not reply:
            raise RuntimeError(f"the grader's fork server stopped: {self.log_tail()}")
        return json.loads(reply)["pid"]

    def close(self) -> list[str]:
        """Stop the fork server and undo the batch's hold on the machine; returns what the runs left behind that
        would not go (a process that would not die), which nothing should. SIGTERM or SIGHUP meanwhile waits."""
        self.signals.hold()
        left = []
        try:
            if self.sock:
                self.sock.close()
            if self.proc:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.log:
                self.log.close()
            if self.home:
                shutil.rmtree(self.home, ignore_errors=True)
            left = self.machine.stop() if self.machine else []  # every run's uid swept once more, modes restored
            self.machine = None
            if self.cgroups:  # its children are reaped now: their runs' cgroups can go
                left += [f"cgroup {c}" for c in self.cgroups.sweep(f"{os.getpid()}-")]
        finally:
            self.signals.restore()
        return left


class Run:
    """A sandboxed command (`python -m module ...` or `python -c code`), forked by the zygote: its stdout and
    stderr drained, its results pipe open for the caller (`results`), its exit status in `returncode`."""

    def __init__(self, argv: list[str], work: Path, env: dict, cpu_seconds: int, zygote: Zygote):
        assert argv[0] == python() and argv[1] in ("-m", "-c"), argv
        self.mode, self.zygote = zygote.mode, zygote
        self.run_id = next(_RUNS) + os.getpid() * 131
        self.cgroup = f"{os.getpid()}-{self.run_id}" if zygote.cgroups else None
        self.uid = zygote.machine.new_uid() if zygote.machine else None  # "nobody": the run's own
        if self.uid is not None:
            zygote.machine.own_workdir(work, self.uid)
        procs = zygote.cgroups.create(self.cgroup) if zygote.cgroups else []
        r_res, w_res = os.pipe()
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        r_st, w_st = os.pipe()
        try:
            req = request(argv[1:], work, env, cpu_seconds, self.mode, self.run_id, procs, self.uid)
            self.pid = zygote.spawn(req, [w_out, w_err, w_res, w_st])
        finally:
            for fd in (w_res, w_out, w_err, w_st):
                os.close(fd)
        self.status = _Status(r_st)
        self.stdout = _Drain(r_out, PRINT_LIMIT)
        self.stderr = _Drain(r_err, 0, keep="tail")
        self.results = r_res

    def printed(self) -> int:
        return max(self.stdout.total, self.stderr.total)

    def stderr_tail(self) -> str:
        return bytes(self.stderr.data).decode("utf-8", "replace")

    @property
    def returncode(self):
        return None if self.status.is_alive() else self.status.code

    def poll(self):
        return self.returncode

    def wait(self, timeout: float):
        self.status.join(timeout)
        if self.status.is_alive():
            raise subprocess.TimeoutExpired("sandbox", timeout)
        return self.status.code

    def kill(self) -> None:
        """Kill the command and everything it started (its PID namespace and cgroup, its uid's processes and
        files, or its process group)."""
        if self.status.is_alive():  # C reports, then exits: only until then is its pid surely its own
            try:
                os.kill(self.pid, signal.SIGTERM)  # C kills G, PID 1 of the namespace
            except ProcessLookupError:
                pass
            self.status.join(10)
        if self.mode == "none":  # no PID namespace: what G left in C's process group
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.cgroup:
            self.zygote.cgroups.remove(self.cgroup)
            self.cgroup = None
        if self.uid is not None and self.zygote.machine:  # "nobody": its processes, files and IPC objects
            self.zygote.machine.sweep(self.uid)
            self.uid = None

    def close(self) -> None:
        self.kill()
        for d in (self.stdout, self.stderr):
            d.join(timeout=5)


def setup_failed(rc: int | None) -> bool:
    return rc == SETUP_FAILED
