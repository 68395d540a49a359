"""The "nobody" sandbox mode's hold on the machine (root where namespaces are refused: Docker, Gradescope).

Without namespaces a run sees the machine's own file system, processes and network, so the grader makes the
machine safe around it for the length of a batch (`Machine`, owned by the fork server, grader/sandbox.py):

- a uid of its own per run (`new_uid`): root may take any uid without a user namespace. The batch takes a
  block of ids that nothing on the machine holds (no account in /etc/passwd or /etc/group, no subordinate
  range, no process, no file in a folder a run can reach), inside the ids this container maps; a run's
  processes, files and IPC objects are then exactly those of its uid, and it belongs to no group;
- everything the repository holds is unreadable for others (its files as well as its folders, all but the
  Python environment), as are the batch's submissions, grades and reference, and, found by a scan of the local
  file systems, every other copy of the kit or of the instructor's material a run could read: zips that hold
  the kit's paths (other batches' submissions, `autograder.zip`), folders holding an `hw3_utils` package (other
  clones, releases, site-packages), `reference.pt` files, and grading folders (`written/sheet.csv` beside the
  model answers). Their modes are journaled in JOURNAL and restored after the batch (or by the next one);
- the same scan lists every world-writable folder (`world_writable`); after each run its processes are killed
  and every file its uid owns under those folders, and its SysV IPC objects, removed (`sweep`); the batch's
  end sweeps every uid it used once more. Its POSIX message queues are capped at 0 bytes (an rlimit).

What it cannot do (said by sandbox.WARNING and docs/sandbox.md): cut the network; hide what any user may read
and the kit did not put there; cap a run's memory per run without a cgroup, or its disk writes other than per
file; clean world-writable folders of network file systems (`network` lists the mounts skipped), or undo what
a run writes into a world-writable *file* (`writable_files` lists them); and two runs graded at once can reach
each other while both run.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

from . import REPO

UID_WINDOW = (1_000_000_000, 2_000_000_000)  # ids for runs, below root mode's (sandbox.UID_BASE)
UID_BLOCK = 65_536  # ids one batch takes at a time
# File systems with nothing a run can write to or read from (kernel views), and those of other machines
PSEUDO_FS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "securityfs", "debugfs", "tracefs", "bpf", "pstore",
             "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "nsfs", "rpc_pipefs", "selinuxfs"}
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "9p",
              "afs", "lustre", "gpfs", "fuse.s3fs", "davfs", "fuse.rclone", "beegfs"}
JOURNAL = REPO / ".hw3-grader-hidden.json"  # the modes to restore, while a batch has them changed
IPC_RMID = 0


def python_env() -> list[Path]:
    """The Python installation's folders (they stay readable: the runs start Python from them)."""
    return sorted({Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix)})


def repo_entries(repo: Path = REPO) -> list[Path]:
    """Every entry of the repository but the folders holding the Python environment (and links, whose targets
    are entries themselves or not the repository's): made unreadable."""
    keep = python_env()
    return [p for p in sorted(repo.iterdir()) if not p.is_symlink() and p != JOURNAL
            and not any(p.resolve() == env or p.resolve() in env.parents for env in keep)]


# the scan ---------------------------------------------------------------------------------------------------
def mounts() -> list[dict]:
    """The mounts of this machine: {"path", "fs"} from /proc/self/mountinfo (one per device and root)."""
    out, seen = [], set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        path = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f[4])  # \040 for a space
        key = (f[2], f[3])
        if key in seen or not r:
            continue
        seen.add(key)
        out.append({"path": path, "fs": r[0]})
    return out


# what find prints per entry: a letter for why, the owner, the path (NUL-separated)
_FIND = ["(", "-type", "d", "!", "-perm", "-0001", "-prune", ")",
         "-o", "(", "-type", "d", "-perm", "-0003", "-printf", r"W %U %p\0", ")",
         "-o", "(", "-type", "f", "-perm", "-0002", "-printf", r"F %U %p\0", ")",
         "-o", "(", "-type", "f", "-name", "*.zip", "-perm", "-0004", "-printf", r"Z %U %p\0", ")",
         "-o", "(", "-type", "f", "-name", "reference.pt", "-perm", "-0004", "-printf", r"R %U %p\0", ")",
         "-o", "(", "-type", "d", "-name", "hw3_utils", "-printf", r"K %U %p\0", ")",
         "-o", "(", "-type", "f", "-path", "*/written/sheet.csv", "-printf", r"O %U %p\0", ")",
         "-o", "(", "-uid", "+{lo}", "-uid", "-{hi}", "-printf", r"U %U %p\0", ")"]


def scan(paths: list[str], skip: list[Path]) -> list[tuple[str, int, str]]:
    """(why, owner uid, path) of what a run could reach under `paths` (one walk per local file system; folders
    others may not traverse are not entered, nor `skip`), by find(1): see _FIND."""
    lo, hi = UID_WINDOW
    expr = [a.format(lo=lo - 1, hi=hi) for a in _FIND]
    prune = [a for p in skip for a in ("-path", str(p), "-prune", "-o")]
    res = subprocess.run(["find", *paths, "-xdev", *prune, *expr], capture_output=True)
    out = []
    for rec in res.stdout.split(b"\0"):
        if rec:
            why, uid, path = rec.decode("utf-8", "surrogateescape").split(" ", 2)
            out.append((why, int(uid), path))
    return out


def kit_like(path: str) -> bool:
    """Whether a zip holds the kit's paths (a submission, an autograder bundle); one that cannot be opened as
    a zip counts as one (its bytes can still be read)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.startswith(("hw3_utils/", "grader/", "reference/", "notebooks/")) or n == "manifest.json"
                       for n in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return True


# ids --------------------------------------------------------------------------------------------------------
def mapped_ids() -> list[tuple[int, int]]:
    """[first, last) ranges of the ids this container maps, for both uids and gids."""
    def ranges(name):
        out = []
        for line in Path(f"/proc/self/{name}").read_text().splitlines():
            inside, _, count = (int(x) for x in line.split())
            out.append((inside, inside + count))
        return out

    return [(max(a, c), min(b, d)) for a, b in ranges("uid_map") for c, d in ranges("gid_map") if max(a, c) < min(b, d)]


def taken_ids() -> set[int]:
    """Ids something on this machine holds: accounts, groups, subordinate ranges' ends, live processes."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    for name in ("/etc/group", "/etc/subuid", "/etc/subgid"):
        try:
            for line in Path(name).read_text().splitlines():
                parts = line.split(":")
                taken |= {int(x) for x in parts[1:3] if x.isdigit()}
        except OSError:
            pass
    for proc in Path("/proc").iterdir():
        try:
            status = (proc / "status").read_text()
            taken |= {int(x) for line in status.splitlines() if line.startswith(("Uid:", "Gid:")) for x in
                      line.split()[1:]}
        except (OSError, ValueError):
            pass
    return taken


def subordinate_ranges() -> list[tuple[int, int]]:
    out = []
    for name in ("/etc/subuid", "/etc/subgid"):
        try:
            for line in Path(name).read_text().splitlines():
                parts = line.split(":")
                if len(parts) >= 3 and parts[1].isdigit() and parts[2].isdigit():
                    out.append((int(parts[1]), int(parts[1]) + int(parts[2])))
        except OSError:
            pass
    return out


def pick_block(busy: set[int]) -> tuple[int, int]:
    """[first, last) of a block of up to UID_BLOCK ids that nothing holds, at random inside the window (or, where
    the container maps fewer ids, inside what it maps above the accounts' ids)."""
    lo, hi = UID_WINDOW
    spans = [(max(a, lo), min(b, hi)) for a, b in mapped_ids() if min(b, hi) - max(a, lo) >= UID_BLOCK]
    if not spans:  # a container mapping only the usual 65,536 ids: the top of what it maps
        spans = [(max(a, 100_000 if b > 200_000 else b // 2), b - 2) for a, b in mapped_ids()]
        spans = [(a, b) for a, b in spans if b - a >= 1024]
    subs = subordinate_ranges()
    for _ in range(1000):
        a, b = spans[secrets.randbelow(len(spans))]
        size = min(UID_BLOCK, b - a)
        first = a + secrets.randbelow(b - a - size + 1)
        if not any(first <= i < first + size for i in busy) and not any(s < first + size and first < e
                                                                         for s, e in subs):
            return first, first + size
    raise RuntimeError("no free block of ids for the runs: every try met an id in use")


# the runs' leftovers ----------------------------------------------------------------------------------------
libc = ctypes.CDLL(None, use_errno=True)
SYSVIPC = {"shm": (lambda i: libc.shmctl(i, IPC_RMID, None)), "msg": (lambda i: libc.msgctl(i, IPC_RMID, None)),
           "sem": (lambda i: libc.semctl(i, 0, IPC_RMID))}


def processes_of(uids: set[int]) -> list[int]:
    """Live (not zombie) processes whose real, effective or saved uid is one of `uids`."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
        except (OSError, ValueError):
            continue
        if not status.get("State", "").strip().startswith("Z") and {int(x) for x in status["Uid"].split()[:3]} & uids:
            out.append(int(proc.name))
    return out


def _kill(pid: int, uids: set[int]) -> None:
    """SIGKILL `pid` if it is a process of `uids`: through a pidfd, so a pid reused meanwhile is never hit (where
    a container refuses pidfds, by pid right after the check)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        fd = None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        uid = {int(x) for line in status.splitlines() if line.startswith("Uid:") for x in line.split()[1:4]}
        if uid & uids and fd is not None:  # the process that status describes
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        elif uid & uids:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


def kill_all(uids: set[int], seconds: float = 10.0) -> list[int]:
    """SIGKILL every process of `uids` until none is left (a fork racing the kill is caught on the next round).
    Returns those still alive after `seconds`."""
    deadline = time.monotonic() + seconds
    while (pids := processes_of(uids)) and time.monotonic() < deadline:
        for pid in pids:
            _kill(pid, uids)
        time.sleep(0.02)
    return processes_of(uids)


def remove_ipc(uids: set[int]) -> None:
    """Remove the SysV shared memory, message queues and semaphores that `uids` own or created."""
    for kind, rmid in SYSVIPC.items():
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        head = lines[0].split() if lines else []
        for line in lines[1:]:
            row = dict(zip(head, line.split()))
            if {int(row.get(k, -1)) for k in ("uid", "cuid")} & uids:
                rmid(int(row[head[1]]))  # shmid, msqid or semid


def remove_files(folders: list[str], uids: set[int]) -> bool:
    """Delete every file and folder that `uids` own under `folders` (find -delete works from the folder it
    reached, never through a link); False when some are left (a folder of theirs holding another run's file)."""
    if not folders or not uids:
        return True
    match = [a for k, u in enumerate(sorted(uids)) for a in ((["-o"] if k else []) + ["-uid", str(u)])]
    res = subprocess.run(["find", *folders, "-xdev", "-mindepth", "1", "(", *match, ")", "-delete"],
                         capture_output=True)
    return res.returncode == 0


# the machine, for one batch ---------------------------------------------------------------------------------
class Machine:
    """What "nobody" mode changes on the machine for one batch: `start` (hide, scan, take ids), `new_uid`,
    `own_workdir` and `sweep` per run, `stop` (sweep every id once more, restore the modes)."""

    def __init__(self, hide=(), skip=()):
        self.hide = [Path(p) for p in hide]
        self.skip = [Path(p) for p in skip]  # the grader's own folders: never hidden or walked
        self.saved: list[tuple[str, int]] = []  # (path, mode) to restore
        self.unhidden: list[str] = []  # what could not be made unreadable (a read-only file system...)
        self.found: list[str] = []  # what the scan made unreadable outside the repository and the batch
        self.world_writable: list[str] = []
        self.writable_files: list[str] = []
        self.network = [m["path"] for m in mounts() if m["fs"] in NETWORK_FS]
        self.uids: set[int] = set()  # every id this batch gave a run
        self.pending: set[int] = set()  # ids whose files a sweep could not remove yet
        self.lock = threading.Lock()
        self.block = (0, 0)
        self.next = 0

    def start(self) -> Machine:
        restore_journal()
        for p in [*repo_entries(), *self.hide]:
            self._hide(p)
        self._hide(REPO, keep_traverse=True)
        local = [m["path"] for m in mounts() if m["fs"] not in PSEUDO_FS | NETWORK_FS]
        found = scan(local, self.skip)
        ww = sorted({p for why, _, p in found if why == "W"})
        self.world_writable = [p for p in ww if not any(p.startswith(q.rstrip("/") + "/") for q in ww)]
        self.writable_files = [p for why, _, p in found if why == "F"]
        targets = [Path(p) for why, _, p in found if why == "Z" and kit_like(p)]
        targets += [Path(p) for why, _, p in found if why == "R"]
        targets += [self._folder(Path(p)) for why, _, p in found if why == "K" and (Path(p) / "checks.py").exists()]
        targets += [self._folder(Path(p).parent) for why, _, p in found if why == "O"]
        for p in sorted(set(targets)):
            if self._hide(p):
                self.found.append(str(p))
        lo, hi = UID_WINDOW
        self.block = pick_block(taken_ids() | {uid for _, uid, p in found if lo <= uid < hi})
        self.next = self.block[0]
        return self

    def _folder(self, inner: Path) -> Path:
        """The folder to hide for a kit's package or a grading folder found at `inner`: the one above it (the
        clone, the release, the grades), unless that one holds the Python environment or the batch, or is
        world-writable; then `inner` itself."""
        outer = inner.parent
        keep = [*python_env(), *self.skip]
        if any(k == outer or outer in k.parents for k in keep) or str(outer) in self.world_writable \
                or os.stat(outer).st_mode & 0o002:
            return inner
        return outer

    def _hide(self, path: Path, keep_traverse: bool = False) -> bool:
        """Take others' permissions off `path` (but traversal, for the repository holding the environment)."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if stat.S_ISLNK(st.st_mode):
            return False
        mode = stat.S_IMODE(st.st_mode)
        new = mode & ~(0o006 if keep_traverse else 0o007)
        if new == mode:
            return False
        self.saved.append((str(path), mode))
        write_journal(self.saved)
        try:
            os.chmod(path, new)
        except OSError as err:
            self.unhidden.append(f"{path} ({err.strerror})")
            return False
        return True

    def new_uid(self) -> int:
        """An id no process or file on the machine holds: the run's uid and gid."""
        with self.lock:
            if self.next >= self.block[1]:
                self.block = pick_block(taken_ids() | self.uids)
                self.next = self.block[0]
            uid, self.next = self.next, self.next + 1
            self.uids.add(uid)
            return uid

    @staticmethod
    def own_workdir(work: Path, uid: int) -> None:
        """`work` traversable by the run's group only (its kit is no other run's to read); a new, empty HOME."""
        os.chown(work, 0, uid)
        os.chmod(work, 0o750)
        home = work / "home"
        shutil.rmtree(home, ignore_errors=True)  # the previous run's: its processes are gone
        home.mkdir()
        os.chown(home, uid, uid)
        os.chmod(home, 0o700)

    def sweep(self, uid: int) -> list[int]:
        """After a run: its processes killed, its files under the world-writable folders and its IPC objects
        removed (with those of earlier runs a sweep could not finish). Returns the processes still alive."""
        left = kill_all({uid})
        with self.lock:
            ids = {uid} | self.pending
        remove_ipc(ids)
        done = remove_files(self.world_writable, ids)
        with self.lock:
            self.pending = set() if done else self.pending | {uid}
        return left

    def stop(self) -> list[str]:
        """The batch's end: every id it used swept again, the modes restored. Returns what is left (processes)."""
        left = kill_all(self.uids) if self.uids else []
        remove_ipc(self.uids)
        remove_files(self.world_writable, self.uids)
        for path, mode in reversed(self.saved):
            try:
                os.chmod(path, mode)
            except OSError:
                pass
        JOURNAL.unlink(missing_ok=True)
        self.saved = []
        return [f"process {pid}" for pid in left]

    def report(self) -> list[str]:
        """What the batch's terminal says about this machine (what is hidden, cleaned, and what is not)."""
        lines = [f"nobody mode: {len(self.saved)} paths made unreadable for the runs; ids {self.block[0]}.. for "
                 f"their uids; after each run its processes and files are removed from the world-writable "
                 f"folders {', '.join(self.world_writable) or '(none)'}"]
        if self.found:
            lines.append(f"  outside the repository and the batch: {', '.join(self.found[:8])}"
                         + (f" and {len(self.found) - 8} more" if len(self.found) > 8 else ""))
        for what, items in (("could not be made unreadable", self.unhidden),
                            ("world-writable files a run can write into (not restored)", self.writable_files),
                            ("network file systems whose world-writable folders are not cleaned", self.network)):
            if items:
                lines.append(f"  WARNING: {what}: {', '.join(items[:8])}" + (" ..." if len(items) > 8 else ""))
        return lines


def write_journal(saved: list[tuple[str, int]]) -> None:
    tmp = JOURNAL.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved))
    os.chmod(tmp, 0o600)
    os.replace(tmp, JOURNAL)


def restore_journal() -> None:
    """Modes a batch changed and did not restore (it was killed): restored now."""
    try:
        saved = json.loads(JOURNAL.read_text())
    except (OSError, ValueError):
        return
    for path, mode in reversed(saved):
        try:
            os.chmod(path, mode)
        except OSError:
            pass
    JOURNAL.unlink(missing_ok=True)
