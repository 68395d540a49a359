"""How a submission's code runs: a separate process that can harm only itself.

Modes, best first (the feedback header names the one used; `python -m grader grade` warns about the
reduced ones):
- "namespaces" (the grader runs as root): new network, mount, IPC and PID namespaces (`unshare`), an
  empty tmpfs over every hidden path (the instructor's kit, grader, submissions, grades, reference),
  then the code runs as user nobody with no capabilities: no network, nothing secret to read,
  nothing of the grader's to write, and every process dies with the namespace.
- "userns" (not root, unprivileged user namespaces allowed): the same namespaces inside a user
  namespace (`unshare -r`), then a nested user namespace as a non-root id: the mounts are locked, the
  code holds no capabilities and can create no user namespace of its own.
- "nobody" (root, namespaces refused, e.g. a Docker container): runs as user nobody; hidden
  paths are made unreadable (chmod) for the duration of the batch; after each submission every
  process of nobody is killed and what nobody wrote in the shared temporary folders is deleted.
- "none": a plain subprocess; only the rlimits and the process group protect the grader.

Resources. In the two namespace modes the code sees one size-capped tmpfs (WRITE_LIMIT bytes,
WRITE_FILES files) as /tmp, /dev/shm and /var/tmp; its HOME and TMPDIR are in it; the kit and every
other mount are read-only (a Python installation under /tmp stays visible, read-only). So all it
writes, its work folder included, fits in that cap, and it all goes with the namespace.
In every mode: rlimits (address space, file size, CPU time, no core files), a minimal environment,
its own process group. stdout and stderr are pipes that the grader drains: past PRINT_LIMIT bytes
the output is dropped, never fatal (`Run.printed`). The results come back on a third pipe (its
number replaces "{results_fd}" in the command): the code needs no writable folder of the grader's.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

NOBODY = 65534
MEMORY_LIMIT = 6 * 1024**3
FILE_LIMIT = 64 * 1024**2
WRITE_LIMIT = 256 * 1024**2  # the sandbox's tmpfs: /tmp, /dev/shm, /var/tmp and HOME together
WRITE_FILES = 20_000
PRINT_LIMIT = 1024**2  # stdout and stderr, each; the rest is dropped
TAIL = 16 * 1024  # of stderr, kept for the error message
# The environment of every sandboxed run and of the fork server (one thread: jobs run side by side)
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg", "LC_ALL": "C.UTF-8"}
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable: cleaned after each submission in "nobody" mode

_PRIV_DROP = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
              "--bounding-set=-all", "--no-new-privs", "--"]
_NS = ["--net", "--mount", "--pid", "--ipc", "--fork", "--kill-child", "--propagation", "private"]

# Runs as root inside the new namespaces. $1 work folder (kit/ holds the kit, scratch/ is an empty
# mount point), $2 tmpfs bytes, $3 tmpfs files, $4 owner of HOME, $5 user namespaces still allowed,
# $6 count of paths under /tmp to keep visible (a Python installation there), then the paths; the count
# of folders to cover with an empty tmpfs because nobody may not traverse them (/root, 0700, above a
# Python installation), then they, then the count and the paths to bring back inside them; the count
# of hidden paths, then the paths; then the command.
_SETUP = r'''
W=$1 SIZE=$2 FILES=$3 OWNER=$4 USERNS=$5; shift 5
S="$W/scratch"
mount -n -t tmpfs -o "size=$SIZE,nr_inodes=$FILES,mode=1777" hw3-sandbox "$S" || exit 90
# HOME's folders for matplotlib and torch exist before any student code can use up the files
mkdir -p "$S/kit" "$S/home/mpl" "$S/home/torch" "$S/shm" "$S/var-tmp" || exit 91
chmod 1777 "$S/shm" "$S/var-tmp" && chown -R "$OWNER" "$S/home" || exit 91
mount -n --bind "$W/kit" "$S/kit" && mount -n -o remount,bind,ro "$S/kit" || exit 92
k=$1; shift
while [ "$k" -gt 0 ]; do
  r="$S/${1#/tmp/}"
  mkdir -p "$r" && mount -n --bind "$1" "$r" && mount -n -o remount,bind,ro "$r" || exit 99
  shift; k=$((k-1))
done
c=$1; shift; covers=""
while [ "$c" -gt 0 ]; do covers="$covers $1"; shift; c=$((c-1)); done
b=$1; shift; i=0; backs=""
while [ "$i" -lt "$b" ]; do
  mkdir "$S/.back$i" && mount -n --bind "$1" "$S/.back$i" || exit 89
  backs="$backs $1"; shift; i=$((i+1))
done
for a in $covers; do mount -n -t tmpfs -o size=64k,mode=0755 cover "$a" || exit 89; done
i=0
for p in $backs; do
  mkdir -p "$p" && mount -n --move "$S/.back$i" "$p" && rmdir "$S/.back$i" || exit 89; i=$((i+1))
done
mount -n --move "$S" /tmp || exit 93
if [ -d /dev/shm ]; then mount -n --bind /tmp/shm /dev/shm || exit 94; fi
if [ -d /var/tmp ]; then mount -n --bind /tmp/var-tmp /var/tmp || exit 94; fi
n=$1; shift
while [ "$n" -gt 0 ]; do
  if [ -d "$1" ]; then mount -n -t tmpfs -o size=16k,mode=0755 hidden "$1" || exit 95
  elif [ -e "$1" ]; then mount -n --bind /dev/null "$1" || exit 95; fi
  shift; n=$((n-1))
done
# every other mount read-only (mountinfo writes a space as \040)
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/tmp|/tmp/*|/var/tmp) continue;; esac
  m=$(printf '%b' "$m")
  mount -n -o remount,bind,ro "$m" 2>/dev/null || { mount -n --bind "$m" "$m" && mount -n -o remount,bind,ro "$m"; } \
    2>/dev/null || { echo "sandbox: cannot make $m read-only" >&2; exit 96; }
done
[ "$USERNS" = keep ] || echo "$USERNS" > /proc/sys/user/max_user_namespaces || exit 98
cd /tmp/kit || exit 97
exec "$@"
'''
SETUP_ERRORS = {89: "cannot make the Python installation reachable", 90: "cannot mount its tmpfs",
                91: "cannot prepare its tmpfs", 92: "cannot mount the kit read-only",
                93: "cannot move its tmpfs to /tmp", 94: "cannot cover /dev/shm or /var/tmp",
                95: "cannot hide the grader's files", 96: "cannot make the file system read-only",
                97: "cannot enter the kit", 98: "cannot limit user namespaces",
                99: "cannot keep the Python installation under /tmp visible"}


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
    probe = Path(tempfile.mkdtemp(prefix="hw3-sandbox-probe-"))
    try:
        (probe / "kit").mkdir()
        (probe / "scratch").mkdir()
        os.chmod(probe, 0o755)
        if os.geteuid() == 0:
            if unshare and setpriv and _works(wrap(["true"], probe, [], "namespaces")):
                return "namespaces"
            return "nobody" if setpriv else "none"
        if unshare and _works(wrap(["true"], probe, [], "userns")):
            return "userns"
        return "none"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


DESCRIPTION = {
    "namespaces": "sandbox: no network, private read-only mounts hiding the grader's files, a capped private /tmp, "
                  "user nobody, rlimits",
    "userns": "sandbox: user namespace, no network, private read-only mounts hiding the grader's files, a capped "
              "private /tmp, rlimits",
    "nobody": "sandbox (reduced: namespaces unavailable): user nobody with the grader's files unreadable, rlimits; "
              "its writes are capped per file only",
    "none": "sandbox (reduced: namespaces unavailable and not root): a plain subprocess with rlimits only",
}

# What the reduced modes mean for trust, printed at the start of a batch.
WARNING = {
    "nobody": "WARNING: user namespaces are unavailable here, so the grader falls back to running the code as user "
              "nobody. A submission cannot read the solution or write the grades, but it shares this machine's "
              "network and /tmp while it runs, and its writes are capped per file only.",
    "none": "WARNING: this machine allows no user namespaces to a normal user (and the grader is not root), so "
            "submissions run as plain processes under your own account. A hostile submission could read the "
            "solution, the other submissions and the grades, and change them: do not trust these grades against "
            "hostile code. Grade as root, or where unprivileged user namespaces are enabled "
            "(sysctl kernel.unprivileged_userns_clone=1, or user.max_user_namespaces > 0).",
}


def _rlimits(cpu_seconds: int) -> dict[str, tuple[int, int]]:
    """The rlimits of every run, by `resource` name: (soft, hard)."""
    return {"RLIMIT_AS": (MEMORY_LIMIT, MEMORY_LIMIT), "RLIMIT_FSIZE": (FILE_LIMIT, FILE_LIMIT),
            "RLIMIT_CORE": (0, 0), "RLIMIT_CPU": (cpu_seconds, cpu_seconds + 5)}


def _limits(cpu_seconds: int):
    def apply():
        for name, pair in _rlimits(cpu_seconds).items():
            resource.setrlimit(getattr(resource, name), pair)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return apply


def _prlimit(cpu_seconds: int) -> list[str]:
    """The same rlimits as util-linux's prlimit options (RLIMIT_AS -> --as=soft:hard)."""
    return ["prlimit", *(f"--{name[7:].lower()}={soft}:{hard}" for name, (soft, hard) in _rlimits(cpu_seconds).items()),
            "--"]


def python_paths() -> list[str]:
    """The Python installation's folders (the environment's and the base interpreter's), resolved."""
    return sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)})


def _unreachable(path: str) -> str | None:
    """The topmost folder above `path` that others may not traverse (None: all of them may)."""
    for d in [*reversed(Path(path).parents), Path(path)]:
        if not os.stat(d).st_mode & 0o001:
            return str(d)
    return None


def setup_command(mode: str, work: Path, hide) -> list[str]:
    """The setup shell's command line for a namespace mode, without the command it ends with."""
    hide = [str(p) for p in hide if Path(p).exists()]
    # HOME's owner; user namespaces left to create: none of our own as root, one (the nested one) in userns
    owner, userns = (f"{NOBODY}:{NOBODY}", "keep") if mode == "namespaces" else ("0:0", "1")
    keep = [p for p in python_paths() if p.startswith("/tmp/")]
    covers, backs = [], []
    if mode == "namespaces":  # user nobody must reach the installation (CI's Python is under /root, 0700)
        for p in python_paths():
            a = _unreachable(p)
            if a and not p.startswith("/tmp/"):
                covers.append(a)
                backs.append(p)
    covers = [a for a in sorted(set(covers)) if not any(a != b and a.startswith(b + "/") for b in covers)]
    return ["/bin/sh", "-c", _SETUP, "sh", str(work), str(WRITE_LIMIT), str(WRITE_FILES), owner, userns,
            str(len(keep)), *keep, str(len(covers)), *covers, str(len(backs)), *backs, str(len(hide)), *hide]


def wrap(argv: list[str], work: Path, hide: list[Path], mode: str | None = None) -> list[str]:
    """The command line that runs `argv` in the sandbox of `mode`, from `work`/kit (the kit's copy)."""
    mode = mode or detect_mode()
    if mode == "namespaces":
        return ["unshare", *_NS, "--", *setup_command(mode, work, hide), *_PRIV_DROP, *argv]
    if mode == "userns":  # one more user namespace, ours, then none: a student's could mount an uncapped tmpfs
        return ["unshare", "-r", *_NS, "--", *setup_command(mode, work, hide),
                "unshare", "-U", "-m", "--map-user=1000", "--map-group=1000", "--", *argv]
    if mode == "nobody":
        return [*_PRIV_DROP, *argv]
    return list(argv)


def _private_tmp(mode: str | None) -> bool:
    """Whether the code sees the sandbox's own tmpfs as /tmp (the namespace modes)."""
    return (mode or detect_mode()) in ("namespaces", "userns")


def kit_path(work: Path, mode: str | None = None) -> Path:
    """Where the sandboxed code finds the kit: /tmp/kit in the namespace modes."""
    return Path("/tmp/kit") if _private_tmp(mode) else work / "kit"


def home_path(work: Path, mode: str | None = None) -> Path:
    return Path("/tmp/home") if _private_tmp(mode) else work / "home"


def tmp_path(work: Path, mode: str | None = None) -> Path:
    """The code's TMPDIR: the private /tmp, else its HOME in the work folder."""
    return Path("/tmp") if _private_tmp(mode) else home_path(work, mode)


def prepare_workdir(work: Path, mode: str | None = None) -> None:
    """Make `work`/kit readable, `work`/home writable and `work`/scratch a mount point for the sandbox."""
    mode = mode or detect_mode()
    (work / "scratch").mkdir(exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    for p in [work, *work.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    if mode == "nobody":
        os.lchown(work / "home", NOBODY, NOBODY)
        parent = work.parent
        os.chmod(parent, os.stat(parent).st_mode | 0o011)  # traversable, not listable


def clean_after(mode: str | None = None) -> None:
    """In "nobody" mode: kill every process of nobody and delete what nobody left in the shared temp folders."""
    if (mode or detect_mode()) != "nobody":
        return
    pid = os.fork()
    if pid == 0:  # as nobody, kill(-1) reaches exactly nobody's processes
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    for top in SHARED_TMP:
        subprocess.run(["find", top, "-xdev", "-mindepth", "1", "-user", str(NOBODY), "-delete"], capture_output=True)


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


class Zygote:
    """The fork server (grader/zygote.py): started once per batch, it forks one sandbox per run, so that
    starting Python and importing torch, torchvision and matplotlib is paid once, not per submission."""

    def __init__(self):
        self.home = Path(tempfile.mkdtemp(prefix="hw3-zygote-"))
        os.chmod(self.home, 0o755)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**BASE_ENV, "HOME": str(self.home), "MPLCONFIGDIR": str(self.home / "mpl")}
        self.log = open(self.home / "zygote.log", "wb")
        self.proc = subprocess.Popen([python(), "-I", str(Path(__file__).with_name("zygote.py")), str(theirs.fileno())],
                                     env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True, pass_fds=(theirs.fileno(),))
        theirs.close()
        self.sock, self.lock = ours, threading.Lock()
        self.sock.settimeout(600)
        try:
            ready = self.sock.recv(64)
        except OSError:
            ready = b""
        if b"ready" not in ready:
            self.close()
            raise RuntimeError(f"the grader's fork server did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.home / "zygote.log").read_bytes()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def spawn(self, request: dict, fds: list[int]) -> int:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
            reply = self.sock.recv(256)
        if not reply:
            raise RuntimeError(f"the grader's fork server stopped: {self.log_tail()}")
        return json.loads(reply)["pid"]

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def _request(argv: list[str], work: Path, env: dict, hide, cpu_seconds: int, mode: str) -> dict:
    """What the zygote's child does for `mode`: the same sandbox as `wrap`, built with system calls."""
    ns = ["mount", "net", "ipc", "pid"]
    req = {"namespaces": [], "setup": None, "drop": None, "uid": NOBODY, "cwd": str(kit_path(work, mode)),
           "kit": str(kit_path(work, mode)), "env": env, "argv": argv[1:], "limits": _rlimits(cpu_seconds)}
    if mode == "namespaces":
        req.update(namespaces=ns, drop="nobody", setup=[*setup_command(mode, work, hide), "true"])
    elif mode == "userns":
        req.update(namespaces=["user", *ns], drop="nested", uid=1000, setup=[*setup_command(mode, work, hide), "true"])
    elif mode == "nobody":
        req.update(drop="nobody")
    return req


class Run:
    """A running sandboxed command (`python ...`): its stdout and stderr drained, its results pipe open for
    the caller (`results`), its exit status in `returncode`. Forked by the zygote when one is given,
    else started as a new process."""

    def __init__(self, argv: list[str], work: Path, env: dict, hide, cpu_seconds: int, mode: str | None = None,
                 zygote: Zygote | None = None):
        self.mode = mode or detect_mode()
        r_res, w_res = os.pipe()
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        self.proc = self.status = None
        try:
            if zygote:
                r_st, w_st = os.pipe()
                try:
                    self.pid = zygote.spawn(_request(argv, work, env, hide, cpu_seconds, self.mode),
                                            [w_out, w_err, w_res, w_st])
                finally:
                    os.close(w_st)
                self.status = _Status(r_st)
            else:
                argv = [a.replace("{results_fd}", str(w_res)) for a in argv]  # pass_fds keeps the number
                cmd, preexec = wrap(argv, work, hide, self.mode), None
                if shutil.which("prlimit"):  # a preexec_fn is not safe while other threads run (parallel grading)
                    cmd = [*_prlimit(cpu_seconds), *cmd]
                else:
                    preexec = _limits(cpu_seconds)
                self.proc = subprocess.Popen(cmd, cwd=work / "kit", env=env, stdin=subprocess.DEVNULL,
                                             stdout=w_out, stderr=w_err, start_new_session=True, preexec_fn=preexec,
                                             pass_fds=(w_res,))
                self.pid = self.proc.pid
        finally:
            for fd in (w_res, w_out, w_err):
                os.close(fd)
        self.stdout = _Drain(r_out, PRINT_LIMIT)
        self.stderr = _Drain(r_err, 0, keep="tail")
        self.results = r_res

    def printed(self) -> int:
        return max(self.stdout.total, self.stderr.total)

    def stderr_tail(self) -> str:
        return bytes(self.stderr.data).decode("utf-8", "replace")

    @property
    def returncode(self):
        return self.proc.returncode if self.proc else (None if self.status.is_alive() else self.status.code)

    def poll(self):
        return self.proc.poll() if self.proc else self.returncode

    def wait(self, timeout: float):
        if self.proc:
            return self.proc.wait(timeout=timeout)
        self.status.join(timeout)
        if self.status.is_alive():
            raise subprocess.TimeoutExpired("sandbox", timeout)
        return self.status.code

    def kill(self) -> None:
        """Kill the command and everything it started (its PID namespace, or its process group)."""
        if self.proc:
            kill(self.proc)
            return
        # C reports, then exits: only while it has not reported is its pid surely still its own
        if self.status.is_alive():
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

    def close(self) -> None:
        self.kill()
        for d in (self.stdout, self.stderr):
            d.join(timeout=5)


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
