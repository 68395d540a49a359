"""Hostile submissions and what each must get: shared by the root batch (tests/test_grader.py) and the
batch graded as an unprivileged user (tests/test_grader_unprivileged.py, through tests/grade_driver.py).

`build(subs, out)` writes the zips; EXPECT says, per student, which tasks must get 0 (every other task
gets full marks) and which words its feedback must hold. Every name the hostile code leaves on the
machine starts with LEFTOVER, so a test can check that nothing survived the batch.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import threading
import zipfile
from pathlib import Path

from grader import REPO, host
from grader.render import untrusted
from grader.sandbox import PROCESS_LIMIT, UID_BASE
from hw3_utils.tasks import TASK_FILES, TASKS

ALL = set(TASKS)
FULL = sum(t.points for t in TASKS.values())
LEFTOVER = "hw3_hostile_"
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # the world-writable folders every sandbox has
STASH_KEY = 0x48573301  # the SysV shared memory key h_stash leaves its code under


def solution(rel: str) -> str:
    return (REPO / rel).read_text()


def write_zip(path: Path, members: dict[str, str | bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            z.writestr(info, target)
    return path


def patch_size(path: Path, member: str, size: int) -> None:
    """Rewrite a member's declared uncompressed size (local header and central directory)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, name_len_at, name_at, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        pos = data.find(sig)
        while pos >= 0:
            n = struct.unpack_from("<H", data, pos + name_len_at)[0]
            if bytes(data[pos + name_at:pos + name_at + n]) == name:
                struct.pack_into("<I", data, pos + size_at, size)
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def files(**over) -> dict[str, str]:
    out = {rel: solution(rel) for rel in TASK_FILES}
    out.update({f"hw3_utils/{k}.py": v for k, v in over.items()})
    return {k: v for k, v in out.items() if v is not None}


def at_import(code: str) -> dict[str, str]:
    """The solution, with `code` run when hw3_utils.data is imported."""
    return files(data=solution("hw3_utils/data.py") + "\n" + code)


# What resource-hungry code does; every write is wrapped so that the code goes on to its tasks.
_FILL = f"""
import os as _os
def _fill(folder, total=2_400 * 1024**2, chunk=b"x" * (8 * 1024**2)):
    n = 0
    try:
        with open(_os.path.join(folder, "{LEFTOVER}fill"), "wb") as f:
            while n < total:
                f.write(chunk)
                n += len(chunk)
    except OSError:
        pass
"""
DISKFILL = _FILL + """
for _d in ["/tmp", "/var/tmp", _os.environ.get("HOME", "/tmp"), _os.getcwd(), _os.path.dirname(__file__)]:
    _fill(_d)
"""
SHMFILL = _FILL + '_fill("/dev/shm")\n'
MANYFILES = f"""
import os as _os
for _d in ["/tmp", _os.environ.get("HOME", "/tmp")]:
    try:
        for _i in range(60_000):
            open(_os.path.join(_d, "{LEFTOVER}many_%d" % _i), "w").close()
    except OSError:
        pass
"""
FLOOD = 'import sys as _sys\nfor _i in range(150):\n    _sys.stdout.write("x" * (1024**2) + "\\n")\n' \
        '_sys.stderr.write("y" * (4 * 1024**2))\n'
# a daemon: double fork and setsid, then it keeps writing and never exits
DAEMON = f"""
import os as _os, time as _time
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        while True:
            for _d in {list(SHARED_TMP)!r}:
                try:
                    open(_os.path.join(_d, "{LEFTOVER}daemon"), "a").write("alive\\n")
                except OSError:
                    pass
            _time.sleep(0.2)
    _os._exit(0)
"""
LEAK_WRITE = f"""
for _d in {list(SHARED_TMP)!r}:
    try:
        open(_d + "/{LEFTOVER}secret", "w").write("the answers")
    except OSError:
        pass
"""
# graded right after h_leak_a (possibly at the same time): fails every task if it can read what h_leak_a left
LEAK_READ = f"""
import os as _os, time as _time
for _ in range(40):
    for _d in {list(SHARED_TMP)!r}:
        if _os.path.exists(_d + "/{LEFTOVER}secret"):
            raise RuntimeError("read another submission's file in " + _d)
    _time.sleep(0.2)
"""

# A fork bomb: as many processes as it can get; more than the cap fails all its tasks (so full marks prove the cap)
FORKBOMB = f"""
import os as _os, signal as _signal, time as _time
_kids = []
try:
    for _i in range(3000):
        _p = _os.fork()
        if _p == 0:
            _time.sleep(60)
            _os._exit(0)
        _kids.append(_p)
except OSError:
    pass
for _p in _kids:
    _os.kill(_p, _signal.SIGKILL)
    _os.waitpid(_p, 0)
if len(_kids) > {PROCESS_LIMIT}:
    raise RuntimeError("the fork bomb got %d processes" % len(_kids))
"""
# Memory across processes, and in memfds (which are not address space): 8 GiB in all, over the 6 GiB of a run.
# Each part in a child that the cap must kill; if all of them lived, memory is not capped per run.
MEMFORK = """
import os as _os, time as _time
_kids = []
for _i in range(4):
    _p = _os.fork()
    if _p == 0:
        _b = b"x" * (2 * 1024**3)
        _time.sleep(6)
        _os._exit(0)
    _kids.append(_p)
_alive = sum(_os.waitstatus_to_exitcode(_os.waitpid(_p, 0)[1]) == 0 for _p in _kids)
if _alive == 4:
    raise RuntimeError("4 processes held 2 GiB each")
"""
MEMFD = """
import os as _os
_p = _os.fork()
if _p == 0:
    _chunk = b"x" * (32 * 1024**2)
    _fds = []
    for _i in range(128):  # 128 memfds of 64 MiB (each under the file-size limit): 8 GiB
        _fd = _os.memfd_create("hw3_hostile_memfd")
        _fds.append(_fd)
        _os.write(_fd, _chunk)
        _os.write(_fd, _chunk)
    _os._exit(0)
if _os.waitstatus_to_exitcode(_os.waitpid(_p, 0)[1]) == 0:
    raise RuntimeError("8 GiB of memfds were not capped")
"""
# The kernel keyring: one leaves the answers in its user and session keyrings, the next one looks for them
_KEYCTL = """
import ctypes as _c, time as _time
_libc = _c.CDLL(None, use_errno=True)
_libc.syscall.restype = _c.c_long
_RINGS = (-4, -3)  # KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING
"""
KEY_WRITE = _KEYCTL + f"""
for _ring in _RINGS:
    _libc.syscall(248, b"user", b"{LEFTOVER}key", b"the answers", 11, _ring)  # add_key
"""
KEY_READ = _KEYCTL + f"""
for _ in range(40):
    for _ring in _RINGS:
        if _libc.syscall(250, 10, _ring, b"user", b"{LEFTOVER}key", 0) >= 0:  # keyctl(KEYCTL_SEARCH)
            raise RuntimeError("found another submission's key")
    _time.sleep(0.2)
"""
# Other processes in /proc: their root and cwd would show another submission's files
PROC_PEEK = """
import os as _os
_others = [p for p in _os.listdir("/proc") if p.isdigit() and int(p) != _os.getpid()]
_seen = []
for _pid in _others:
    for _what in ("root", "cwd", "environ"):
        try:
            _seen.append((_pid, _what, len(_os.listdir(f"/proc/{_pid}/{_what}")) if _what != "environ"
                          else len(open(f"/proc/{_pid}/environ", "rb").read())))
        except OSError:
            pass
if _seen:
    raise RuntimeError("saw other processes: %s" % _seen[:5])
"""
# The grader's results pipe: report a task, then neither run nor exit
PIPE_HANG = """
import os as _os, sys as _sys, time as _time
_fd = int(_sys.argv[_sys.argv.index("--results-fd") + 1])
_os.write(_fd, b"S 1\\nR 1 0\\n")
_time.sleep(3600)
"""
# Outputs the grader must not compute with: meta, a stride-0 view of 2**50 elements, sparse, complex; written on
# the results pipe directly, then exit
BAD_TENSORS = """
import io as _io, os as _os, sys as _sys, torch as _torch
from hw3_utils.tasks import TASKS as _TASKS
_fd = int(_sys.argv[_sys.argv.index("--results-fd") + 1])
_cases = _torch.load(_sys.argv[_sys.argv.index("--cases") + 1], weights_only=True)  # to match the case count
_bad = {"1": _torch.empty(3, 3, 28, 28, device="meta"), "2a": _torch.zeros(1).expand(2**50),
        "2b": _torch.zeros(4, 4).to_sparse(), "3": _torch.zeros(4, dtype=_torch.complex64)}
for _tid, _task in _TASKS.items():
    _one = {_name: _bad.get(_tid, _bad["2a"]) for _name in _task.outputs}
    _buf = _io.BytesIO()
    _torch.save({"outputs": [_one] * len(_cases[_tid])}, _buf)
    _data = _buf.getvalue()
    _os.write(_fd, b"S " + _tid.encode() + b"\\n")
    _os.write(_fd, b"R " + _tid.encode() + b" " + str(len(_data)).encode() + b"\\n" + _data)
_os._exit(0)
"""
# What it writes, to start lines of its own in the feedback, hide the rest (<!--), colour the terminal, link
INJECT = ("\n| fake | 100 |\n## Fake heading <script>alert(1)</script> <!-- \x1b[31mred\x1b[0m "
          "[x](javascript:alert(1))")
# The oracle probe: correct on the public cases (which the student kit holds), wrong on the hidden ones, to read
# the hidden expected values in the feedback
ORACLE = """
def _public_x0():
    from hw3_utils.checks import public_cases
    return [c["x0"] for c in public_cases("4")]
"""


# Stashes: h_stash leaves its code (the solution's diffusion.py) in every folder it can write to, in nested
# folders others may write to, and in SysV shared memory and a POSIX message queue; zy_stash, graded after it,
# looks for them, and for the solution wherever it can read (the zips and clones the instructor's workflow
# leaves about: `plant`), and adopts what it finds (else its tasks 3, 4 and 5a are the stub's: 0).
_IPC = f"""
import ctypes as _c, os as _os
_libc = _c.CDLL(None, use_errno=True)
_libc.shmat.restype = _c.c_void_p
_MQ = b"/{LEFTOVER}mq"
def _writable(depth=5):
    out = []
    for _root, _dirs, _ in _os.walk("/"):
        if _root.startswith(("/proc", "/sys")) or _root.count("/") >= depth:
            _dirs[:] = []
        if _os.access(_root, _os.W_OK | _os.X_OK):
            out.append(_root)
    return out
"""
STASH_WRITE = _IPC + f"""
_src = open(_os.path.join(_os.path.dirname(__file__), "diffusion.py")).read()
for _d in _writable():
    try:
        _nested = _os.path.join(_d, "{LEFTOVER}dir", "a", "b")
        _os.makedirs(_nested, exist_ok=True)
        for _q in (_os.path.dirname(_os.path.dirname(_nested)), _os.path.dirname(_nested), _nested):
            _os.chmod(_q, 0o777)
        for _p in (_d, _nested):
            with open(_os.path.join(_p, "{LEFTOVER}stash.py"), "w") as _f:
                _f.write(_src)
            _os.chmod(_os.path.join(_p, "{LEFTOVER}stash.py"), 0o644)
    except OSError:
        pass
_id = _libc.shmget({STASH_KEY}, 1 << 20, 0o1000 | 0o666)  # IPC_CREAT
if _id >= 0:
    _ptr = _libc.shmat(_id, None, 0)
    if _ptr not in (None, 2**64 - 1):
        _c.memmove(_ptr, _src.encode() + b"\\0", len(_src.encode()) + 1)
try:
    _libc.mq_open(_MQ, _os.O_CREAT | _os.O_WRONLY, 0o666, None)
except AttributeError:  # an older C library keeps mq_open in librt
    pass
"""


def stash_read(planted: list[str]) -> str:
    """zy_stash's diffusion.py tail: adopts the solution's DDPM from any stash or planted copy it can read."""
    return _IPC + f"""
import zipfile as _z
_MARK = "### BEGIN " + "SOLUTION 5a"  # not as one literal: this file holds it
def _readable():
    for _root, _dirs, _files in _os.walk("/"):
        if _root.startswith(("/proc", "/sys", "/dev")):
            _dirs[:] = []
            continue
        yield from (_os.path.join(_root, _n) for _n in _files if _n.endswith(".zip") or _n in ("diffusion.py",
                                                                                               "q05.md"))
def _texts():
    for _d in _writable():
        for _root, _, _files in _os.walk(_d):
            for _n in _files:
                if _n.startswith("{LEFTOVER}"):
                    yield open(_os.path.join(_root, _n), errors="replace").read()
    _id = _libc.shmget({STASH_KEY}, 0, 0)
    if _id >= 0:
        _ptr = _libc.shmat(_id, None, 0o10000)  # SHM_RDONLY
        if _ptr not in (None, 2**64 - 1):
            yield _c.string_at(_ptr).decode(errors="replace")
    try:
        if _libc.mq_open(_MQ, _os.O_RDONLY, 0, None) >= 0:
            raise RuntimeError("found another submission's message queue")
    except AttributeError:
        pass
    for _p in [*{planted!r}, *_readable()]:
        try:
            if _p.endswith(".zip"):
                yield _z.ZipFile(_p).read("hw3_utils/diffusion.py").decode()
            elif _p.endswith((".py", ".md")):
                yield open(_p, errors="replace").read(1 << 20)
            else:
                open(_p, "rb").read(1)
                raise RuntimeError("read " + _p)
        except (OSError, KeyError, ValueError, _z.BadZipFile):
            pass
for _t in _texts():
    if "{MODEL_MARK[:10]}" + "{MODEL_MARK[10:]}" in _t:
        raise RuntimeError("read the model answers")
    if _MARK in _t:
        exec(_t.replace("from .config", "from hw3_utils.config"))
        break
"""


MODEL_MARK = "hw3 planted model answer"  # what `plant` writes as the old batch's model answer


def plant(folder: Path) -> list[str]:
    """What an instructor's workflow leaves on a machine, world-readable: `make submit`'s zip and `make
    gradescope`'s bundle at the repository's top, and in `folder` another batch's submissions, its grades (with
    the model answers), another clone of the kit and a bundle's reference. Returns their paths (all removed by
    `unplant`); `folder` and its parents must be traversable by everyone."""
    folder = Path(folder)
    made = []
    for rel in ("other/submissions", "other/grades/written", "other/clone/hw3_utils", "other/bundle/reference"):
        (folder / rel).mkdir(parents=True, exist_ok=True)
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, 0o755)
    for zpath in (REPO / "submission_hw3planted.zip", folder / "other/submissions/s1.zip"):
        made.append(str(write_zip(zpath, files())))
    if not (REPO / "autograder.zip").exists():
        made.append(str(write_zip(REPO / "autograder.zip", {"grader/x.py": "", **files()})))
    for rel, text in (("other/grades/written/sheet.csv", "student,question\n"),
                      ("other/grades/written/q05.md", f"## Model answer\n\n{MODEL_MARK}\n"),
                      ("other/clone/hw3_utils/checks.py", ""),
                      ("other/clone/hw3_utils/diffusion.py", solution("hw3_utils/diffusion.py")),
                      ("other/bundle/reference/reference.pt", "the expected outputs")):
        (folder / rel).write_text(text)
        made.append(str(folder / rel))
    for p in made:
        os.chmod(p, 0o644)
    return made


def open_paths(paths) -> list[tuple[Path, int]]:
    """Let others traverse (not list) the folders above `paths` (the Python installation, the repository), as on
    a laptop; returns the modes to restore (`restore`). CI's Python may live under /root, which is 0700."""
    changed = []
    for p in paths:
        for d in [Path(os.path.realpath(p)), *Path(os.path.realpath(p)).parents]:
            mode = d.stat().st_mode
            if d.is_dir() and not mode & stat.S_IXOTH:
                changed.append((d, stat.S_IMODE(mode)))
                os.chmod(d, stat.S_IMODE(mode) | stat.S_IXOTH)
    return changed


def restore(changed: list[tuple[Path, int]]) -> None:
    for d, mode in reversed(changed):
        os.chmod(d, mode)


def unplant(folder: Path, made: list[str]) -> None:
    for p in made:
        Path(p).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


# Handed-in files the grader reads in its own process (notes, flags, written answers): each malformed one
# costs only itself (a note and a flag), and the submission's code is still graded in full.
NESTED = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError on it
KIT_NOTEBOOKS = sorted(f"notebooks/{p.name}" for p in (REPO / "notebooks").glob("*.ipynb"))


def notebook(cells: list, **meta) -> str:
    return json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5})


def one_line(size: int) -> str:
    """A valid notebook of about `size` bytes on one line (one string in its metadata)."""
    return '{"cells": [], "nbformat": 4, "metadata": {"x": "' + "x" * size + '"}}'


# under the kit's notebooks' names: a notebook of any other name is refused unread
MALFORMED = {
    "notebooks/01_data_prep.ipynb": json.dumps({"cells": {"0": {}}, "metadata": {}, "nbformat": 4}),
    "notebooks/02_unet.ipynb": notebook([{"cell_type": "markdown", "metadata": {}, "source": 42}]),
    "notebooks/03_forward_diffusion.ipynb": notebook([{"cell_type": "markdown", "source": "x",
                                                       "metadata": {"nbgrader": "grade me"}}]),
    "notebooks/04_training.ipynb": b'{"cells": [], "nbformat": 4, "x": "\xff\xfe"}',
    "notebooks/05_sampling_and_fid.ipynb": '{"cells": [], "nbformat": 4, "metadata": {"x": NaN}}',
    "notebooks/06_guidance.ipynb": '{"cells": [], "nbformat": 4, "metadata": {"x": ' + "9" * 4000 + "}}",
    "runs/cpu/fid.json": '{"profile": "cpu", "profile": "full", "fid_vs_mnist_train": 1.5}',
    "runs/full/fid.json": '{"profile": "full", "fid_vs_mnist_train": -Infinity}',
    "manifest.json": json.dumps([[[{"files": 1}]]]),
}


class Bait:
    """What a grading user has that no submission may reach: a 0600 file and a 0600 unix socket that answers
    with the solution, in `folder` (a home, say). Hostile code tries both (h_bait)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / f"{LEFTOVER}secret_key"
        self.file.write_text("the answers")
        os.chmod(self.file, 0o600)
        self.socket = self.folder / f"{LEFTOVER}agent.sock"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.socket))
        os.chmod(self.socket, 0o600)
        self.server.listen(8)
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.sendall(b"the answers")
            conn.close()

    def close(self):
        self.server.close()
        self.socket.unlink(missing_ok=True)
        self.file.unlink(missing_ok=True)


def bait_code(bait: Bait) -> str:
    return f"""
import socket as _s
for _path in [{str(bait.file)!r}, {str(REPO / "README.md")!r}, {str(REPO / "autograder.zip")!r}]:
    try:
        open(_path).read()
        raise RuntimeError("read " + _path)
    except OSError:
        pass
for _addr in [{str(bait.socket)!r}, "\\0{LEFTOVER}abstract"]:
    try:
        _c = _s.socket(_s.AF_UNIX, _s.SOCK_STREAM)
        _c.settimeout(2)
        _c.connect(_addr)
        raise RuntimeError("connected to " + _addr + ": " + _c.recv(100).decode())
    except OSError:
        pass
"""


# student -> (tasks that get 0, words its feedback holds)
EXPECT: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "h_loop": ({"3"}, ("time limit exceeded",)),
    "h_exit_import": (ALL, ("could not be imported", "exit code 3")),
    "h_raise_import": (ALL, ("RuntimeError: boom at import (hw3_utils/unet.py:",)),
    "h_syntax": (ALL, ("SyntaxError", "hw3_utils/data.py:")),
    "h_missing": ({"5b"}, ()),
    "h_paths": (set(), ("rejected '../evil.py'", "rejected '/tmp/hw3_abs_evil.py': absolute path", "backslash",
                        "ignored 'notes.txt'")),
    "h_symlink": ({"1"}, ("symbolic link",)),
    "h_bigdecl": ({"2a", "2b"}, ("declares 2,000,000,000 bytes",)),
    "h_bomb": ({"3", "4", "5a"}, ("rejected 'hw3_utils/diffusion.py'",)),
    "h_membomb": ({"5a"}, ()),
    "h_writer": ({"3", "4", "5a"}, ()),  # its diffusion.py is the stub: reading the solution failed
    "h_notazip": (ALL, ("rejected: not a zip file",)),
    "h_diskfill": (set(), ()),
    "h_shmfill": (set(), ()),
    # it used up the sandbox's files: its own task 5b cannot make its temporary folder, and says why
    "h_manyfiles": ({"5b"}, ("No space left on device",)),
    "h_flood": (set(), ("your code printed more than 1 MB; remove the print calls inside loops",)),
    "h_daemon": (set(), ()),
    "h_leak_a": (set(), ()),
    "h_leak_b": (set(), ()),
    "h_forkbomb": (set(), ()),
    "h_memfork": (set(), ()),  # root: the cgroup kills the children; userns: left out (memory is per process)
    "h_memfd": (set(), ()),
    "h_key_a": (set(), ()),
    "h_key_b": (set(), ()),
    "h_proc": (set(), ()),
    "h_bait": (set(), ()),
    "h_pipehang": (ALL, ("stopped",)),
    "h_tensors": (ALL, ("malformed outputs: case 1's",)),
    "h_inject": ({"1"}, ("fake",)),
    "h_oracle": ({"4"}, ("hidden cases: their values are not shown",)),
    "h_nested": (set(), ("notebooks/01_data_prep.ipynb: not a readable notebook (nested 100000 deep",)),
    # 150 notebooks the kit has not (refused unread), and the kit's own beyond what one submission may hold in all
    "h_manynb": (set(), ("not one of the kit's notebooks", "MiB one submission's files may hold")),
    "h_malformed": (set(), ("cells is a dict", "source is a int", "metadata.nbgrader is a str", "not UTF-8",
                            "NaN is not a JSON number", "an integer of 4000 digits", "the key 'profile' occurs twice",
                            "-Infinity is not a JSON number", "manifest.json is not readable (holds a JSON list")),
    "h_stash": (set(), ()),
    "zy_stash": ({"3", "4", "5a"}, ()),  # its diffusion.py is the stub: it found no stash and no solution
    "zz_solution": (set(), (f"{FULL} / {FULL}",)),  # graded after all the others (in sorted order)
}
# Cases whose cap only root mode's cgroup can enforce (a normal user's grading caps memory per process)
ROOT_ONLY = {"h_memfork", "h_memfd"}
# Cases "nobody" mode does not cover (sandbox.WARNING says so): a cap on the number of files (a tmpfs), and
# two submissions graded at once that see each other's files while both run
NAMESPACE_ONLY = {"h_manyfiles", "h_leak_b"}


def build(subs: Path, out: Path, stub: dict[str, str], bait: Bait, skip=(), planted=()) -> None:
    """Write every submission of EXPECT (but `skip`) into `subs`; `out` is where the grades go (h_writer aims at
    it); `bait` is what the grading user has that h_bait tries to reach; `planted`, what `plant` left, which
    zy_stash tries to read."""
    diff = solution("hw3_utils/diffusion.py")
    loop = diff.replace("        ### BEGIN SOLUTION 3\n", "        ### BEGIN SOLUTION 3\n        while True:\n"
                        "            pass\n")
    write_zip(subs / "zz_solution.zip", files())
    write_zip(subs / "h_loop.zip", files(diffusion=loop))
    write_zip(subs / "h_exit_import.zip", files(diffusion=diff + "\nimport os\nos._exit(3)\n"))
    write_zip(subs / "h_raise_import.zip", files(unet=solution("hw3_utils/unet.py")
                                                 + "\nraise RuntimeError('boom at import')\n"))
    write_zip(subs / "h_syntax.zip", files(data=solution("hw3_utils/data.py") + "\ndef broken(:\n    pass\n"))
    write_zip(subs / "h_missing.zip", files(pipeline=None))
    write_zip(subs / "h_paths.zip", {**files(), "../evil.py": "print('evil')\n", "/tmp/hw3_abs_evil.py": "x\n",
                                     "hw3_utils\\evil.py": "x\n", "notes.txt": "hello\n"})
    write_zip(subs / "h_symlink.zip", files(data=None), symlinks={"hw3_utils/data.py": str(REPO / "hw3_utils/data.py")})
    write_zip(subs / "h_bigdecl.zip", files())
    patch_size(subs / "h_bigdecl.zip", "hw3_utils/unet.py", 2_000_000_000)
    write_zip(subs / "h_bomb.zip", files(diffusion=diff + "#" * (3 * 1024 * 1024) + "\n"))
    patch_size(subs / "h_bomb.zip", "hw3_utils/diffusion.py", 1000)
    hog = diff.replace("        ### BEGIN SOLUTION 5a\n", "        ### BEGIN SOLUTION 5a\n"
                       "        _hog = torch.ones(50 * 1024**3, dtype=torch.uint8)\n")
    write_zip(subs / "h_membomb.zip", files(diffusion=hog))
    evil_row = "h_writer,10,10,20,15,15,20,10,100,graded\n"
    writer = solution("hw3_utils/data.py") + f"""
import os as _os
for _p in [{str(out / 'grades.csv')!r}, {str(out / 'feedback' / 'zz_solution.md')!r}, {str(out / 'score.txt')!r},
           {str(REPO / 'hw3_utils' / 'zz_evil.py')!r}, {str(subs / 'zz_evil.zip')!r}]:
    try:
        _os.makedirs(_os.path.dirname(_p), exist_ok=True)
        with open(_p, "w") as _f:
            _f.write({evil_row!r})
    except Exception:
        pass
"""
    reader = stub["hw3_utils/diffusion.py"] + f"""
try:  # the solution's DDPM, read from the instructor's kit
    exec(open({str(REPO / 'hw3_utils' / 'diffusion.py')!r}).read().replace("from .config", "from hw3_utils.config"))
except Exception:
    pass
try:  # or from another student's zip
    import zipfile as _z
    exec(_z.ZipFile({str(subs / 'zz_solution.zip')!r}).read("hw3_utils/diffusion.py").decode())
except Exception:
    pass
"""
    write_zip(subs / "h_writer.zip", files(data=writer, diffusion=reader))
    (subs / "h_notazip.zip").write_text("this is not a zip\n")
    for name, code in (("h_diskfill", DISKFILL), ("h_shmfill", SHMFILL), ("h_manyfiles", MANYFILES),
                       ("h_flood", FLOOD), ("h_daemon", DAEMON), ("h_leak_a", LEAK_WRITE), ("h_leak_b", LEAK_READ),
                       ("h_forkbomb", FORKBOMB), ("h_memfork", MEMFORK), ("h_memfd", MEMFD), ("h_key_a", KEY_WRITE),
                       ("h_key_b", KEY_READ), ("h_proc", PROC_PEEK), ("h_bait", bait_code(bait)),
                       ("h_pipehang", PIPE_HANG), ("h_tensors", BAD_TENSORS)):
        write_zip(subs / f"{name}.zip", at_import(code))
    data = solution("hw3_utils/data.py").replace(
        "    ### BEGIN SOLUTION 1\n", f"    ### BEGIN SOLUTION 1\n    raise RuntimeError({INJECT!r})\n")
    inject = {**files(data=data), "manifest.json": json.dumps({"kit_version": "v1" + INJECT}),
              "runs/cpu/fid.json": json.dumps({"profile": "cpu" + INJECT, "num_samples": 1})}
    write_zip(subs / "h_inject.zip", inject)
    oracle = diff.replace("        ### END SOLUTION\n        # (per_image is undefined",
                          "        if not any(x0.shape == p.shape and torch.equal(x0, p) for p in _public_x0()):\n"
                          "            per_image = per_image * 1.5  # wrong on the hidden cases only\n"
                          "        ### END SOLUTION\n        # (per_image is undefined")
    assert oracle != diff
    write_zip(subs / "h_oracle.zip", files(diffusion=oracle + ORACLE))
    write_zip(subs / "h_nested.zip", {**files(), "notebooks/01_data_prep.ipynb": NESTED,
                                      "notebooks/02_unet.ipynb": one_line(20_000_000)})
    write_zip(subs / "h_manynb.zip", {**files(), **{f"notebooks/extra_{k:03d}.ipynb": one_line(2**19) for k in
                                                    range(150)}, **{n: one_line(12 * 2**20) for n in KIT_NOTEBOOKS}})
    write_zip(subs / "h_malformed.zip", {**files(), **MALFORMED})
    write_zip(subs / "h_stash.zip", at_import(STASH_WRITE))
    write_zip(subs / "zy_stash.zip", files(diffusion=stub["hw3_utils/diffusion.py"] + stash_read(list(planted))))
    for name in skip:
        (subs / f"{name}.zip").unlink()


def world_writable() -> list[str]:
    """Every folder anyone may write to, on this machine's local file systems (the grader's own scan)."""
    local = [m["path"] for m in host.mounts() if m["fs"] not in host.PSEUDO_FS | host.NETWORK_FS]
    return [p for why, _, p in host.scan(local, []) if why == "W"]


def leftovers() -> list[str]:
    """What hostile code left on this machine: files in any world-writable folder (named by it, or owned by a uid
    of "nobody" mode's runs), live sandbox processes (forked by the fork server, or of a run's uid), SysV IPC
    objects, the runs' cgroups, sandbox mounts."""
    lo, hi = host.UID_WINDOW
    folders = world_writable()
    named = subprocess.run(["find", *folders, "-xdev", "-mindepth", "1", "-maxdepth", "1", "-name", f"{LEFTOVER}*"],
                           capture_output=True, text=True).stdout  # where the hostile code writes: the top
    owned = subprocess.run(["find", *folders, "-xdev", "-mindepth", "1", "-uid", f"+{lo - 1}", "-uid", f"-{hi}"],
                           capture_output=True, text=True).stdout  # anything of a "nobody" run's uid, anywhere
    found = sorted((set(named.split("\n")) | set(owned.split("\n"))) - {""})
    found += [str(p) for p in Path("/tmp").glob("hw3_abs_evil*")]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            status = (proc / "status").read_text()
            uid, ppid = (int(status.split(f"\n{k}:")[1].split()[0]) for k in ("Uid", "PPid"))
        except (OSError, IndexError, ValueError):
            continue
        ours = ppid in (os.getpid(), 1)  # a fork server this process started, or one orphaned (others' batches run)
        if b"grader/zygote.py" in cmd and ours or uid >= UID_BASE or lo <= uid < hi:
            shown = cmd.replace(b"\0", b" ")[:120].decode(errors="replace")
            found.append(f"process {proc.name} (uid {uid}): {shown}")
    for kind in ("shm", "msg", "sem"):
        for line in Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]:
            key, uid = int(line.split()[0]), int(line.split()[{"shm": 7, "msg": 7, "sem": 4}[kind]])  # owner
            if key == STASH_KEY or lo <= uid < hi:
                found.append(f"SysV {kind}: {line.split()[:2]}")
    for c in ("pids", "memory", ""):
        parent = Path("/sys/fs/cgroup") / c / "hw3-grader"
        if parent.is_dir():
            found += [f"cgroup {d}" for d in parent.iterdir() if d.is_dir()]
    found += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if "hw3-sandbox" in line]
    return found


def check(points: dict[str, dict[str, int]], feedback: dict[str, str], skip=()) -> list[str]:
    """What differs from EXPECT (but the students in `skip`): one line per problem (empty when all is as expected)."""
    problems = []
    for student, (zero, words) in EXPECT.items():
        if student in skip:
            continue
        if student not in points:
            problems.append(f"{student}: not graded")
            continue
        want = {t: 0 if t in zero else task.points for t, task in TASKS.items()}
        if points[student] != want:
            problems.append(f"{student}: {points[student]} != {want}")
        problems += [f"{student}: feedback lacks {w!r}" for w in words if untrusted(w) not in feedback[student]]
    return problems
