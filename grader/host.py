"""The machine as a run of the "nobody" sandbox mode meets it, without namespaces (grader/nobody.py holds it for
a batch): what a run could reach on its local file systems (`scan`), the ids a run may take (`id_spans`,
`pick_block`), and what a uid leaves behind (its processes, its files in the world-writable folders, its SysV
IPC objects), found and removed by uid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import secrets
import signal
import stat
import subprocess
import time
import zipfile
from pathlib import Path

UID_WINDOW = (1_000_000_000, 2_000_000_000)  # ids for runs, below root mode's (sandbox.UID_BASE)
UID_BLOCK = 65_536  # ids one batch takes at a time
MIN_BLOCK = 1024  # the fewest it takes (a container that maps few ids)
# File systems with nothing a run can write to or read from (kernel views), and those of other machines
PSEUDO_FS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "securityfs", "debugfs", "tracefs", "bpf", "pstore",
             "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "nsfs", "rpc_pipefs", "selinuxfs"}
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "9p",
              "afs", "lustre", "gpfs", "fuse.s3fs", "davfs", "fuse.rclone", "beegfs"}
NOTEBOOK_BYTES = 16 * 1024**2  # read of a notebook the scan finds, to tell an nbgrader source by its cells
IPC_RMID = 0
FIND_PATHS = 512  # paths one find(1) is given (its command line stays short)


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


def owner_in(ranges) -> list[str]:
    """find's test for an owner inside one of `ranges` ([first, last) pairs); false for none."""
    tests = []
    for k, (a, b) in enumerate(ranges):
        tests += (["-o"] if k else []) + ["(", "-uid", f"+{max(a - 1, 0)}", "-uid", f"-{b}", ")"]
    return ["(", *tests, ")"] if tests else ["-false"]


def id_ranges(uids) -> list[tuple[int, int]]:
    """`uids` as [first, last) ranges of consecutive ids."""
    out: list[list[int]] = []
    for u in sorted(uids):
        if out and out[-1][1] == u:
            out[-1][1] = u + 1
        else:
            out.append([u, u + 1])
    return [(a, b) for a, b in out]


def _find_expr(spans) -> list[str]:
    """What find prints per entry: a letter for why, the owner, the path (NUL-separated). Folders others may not
    traverse are not entered (their owner is printed when inside `spans`, the ids the batch may take)."""
    owned = owner_in(spans)
    expr = ["(", "-type", "d", "!", "-perm", "-0001", "-prune", "(", *owned, "-printf", r"U %U %p\0", "-o",
            "-true", ")", ")"]
    for why, test in (("W", ["-type", "d", "-perm", "-0003"]), ("F", ["-type", "f", "-perm", "-0002"]),
                      ("Z", ["-type", "f", "-name", "*.zip", "-perm", "-0004"]),
                      ("R", ["-type", "f", "-name", "reference.pt", "-perm", "-0004"]),
                      ("K", ["-type", "d", "-name", "hw3_utils"]),
                      ("O", ["-type", "f", "-path", "*/written/sheet.csv"]),
                      ("G", ["-type", "f", "-name", "gradebook.db"]),
                      ("N", ["-type", "f", "-name", "*.ipynb", "-path", "*/source/*/*", "-perm", "-0004"]),
                      ("U", owned)):
        expr += ["-o", "(", *test, "-printf", why + r" %U %p\0", ")"]
    return expr


def scan(paths: list[str], skip: list[Path], spans=()) -> list[tuple[str, int, str]]:
    """(why, owner uid, path) of what a run could reach under `paths` (one walk per local file system; folders
    others may not traverse are not entered, nor `skip`), by find(1): see _find_expr."""
    prune = [a for p in skip for a in ("-path", str(p), "-prune", "-o")]
    res = subprocess.run(["find", *paths, "-xdev", *prune, *_find_expr(spans)], capture_output=True)
    out = []
    for rec in res.stdout.split(b"\0"):
        if rec:
            why, uid, path = rec.decode("utf-8", "surrogateescape").split(" ", 2)
            out.append((why, int(uid), path))
    return out


def owners_in(folders: list[str], spans) -> set[int]:
    """The owners inside `spans` of every file under `folders`, whatever the modes of the folders between (a
    sweep enters them all)."""
    if not folders or not spans:
        return set()
    res = subprocess.run(["find", *folders, "-xdev", *owner_in(spans), "-printf", r"%U\0"], capture_output=True)
    return {int(x) for x in res.stdout.split(b"\0") if x}


def top_folders(folders: list[str]) -> list[str]:
    """The world-writable folders a sweep walks: each but those inside another of the same file system (find
    -xdev reaches them from there, and never enters a file system mounted inside)."""
    dev = {}
    for p in folders:
        with contextlib.suppress(OSError):
            dev[p] = os.lstat(p).st_dev
    return [p for p in sorted(dev) if not any(p.startswith(q.rstrip("/") + "/") and dev[q] == dev[p] for q in dev)]


def _open_regular(path: str):
    """An open regular file at `path` (never through a link, never a FIFO that would block), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        return None
    return f


def kit_like(path: str) -> bool:
    """Whether a zip holds the kit's paths (a submission, an autograder bundle); one that cannot be opened as
    a zip counts as one (its bytes can still be read)."""
    f = _open_regular(path)
    if f is None:
        return False
    try:
        with f, zipfile.ZipFile(f) as z:
            return any(n.startswith(("hw3_utils/", "grader/", "reference/", "notebooks/")) or n == "manifest.json"
                       for n in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return True


def nbgrader_source(path: str) -> bool:
    """Whether a notebook holds nbgrader solution cells (an instructor's source, with the model answers): its
    first NOTEBOOK_BYTES are read."""
    f = _open_regular(path)
    if f is None:
        return False
    with f:
        head = f.read(NOTEBOOK_BYTES)
    return b'"nbgrader"' in head and re.search(rb'"solution"\s*:\s*true', head) is not None


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


def id_spans(mapped: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[first, last) ranges a batch may take its ids from: inside UID_WINDOW, or, where the container maps fewer
    ids (the usual 65,536), the top of what it maps above the accounts' ids."""
    lo, hi = UID_WINDOW
    spans = [(max(a, lo), min(b, hi)) for a, b in mapped if min(b, hi) - max(a, lo) >= UID_BLOCK]
    if not spans:
        spans = [(max(a, 100_000 if b > 200_000 else b // 2), b - 2) for a, b in mapped]
    return [(a, b) for a, b in spans if b - a >= MIN_BLOCK]


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


def free_spans(spans, busy: set[int]) -> list[tuple[int, int]]:
    """The parts of `spans` that hold no id of `busy` and no subordinate range."""
    cuts = sorted([(i, i + 1) for i in busy] + subordinate_ranges())
    out = []
    for a, b in spans:
        for s, e in cuts:
            if s < b and a < e:
                if a < s:
                    out.append((a, s))
                a = max(a, e)
        if a < b:
            out.append((a, b))
    return out


def pick_block(busy: set[int], spans) -> tuple[int, int] | None:
    """[first, last) of a block of up to UID_BLOCK ids inside `spans` that nothing holds, at random; None where
    no MIN_BLOCK of them are free together."""
    free = [(a, b) for a, b in free_spans(spans, busy) if b - a >= MIN_BLOCK]
    if not free:
        return None
    a, b = free[secrets.randbelow(len(free))]
    size = min(UID_BLOCK, b - a)
    first = a + secrets.randbelow(b - a - size + 1)
    return first, first + size


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


def remove_owned(folders: list[str], uids: set[int], batch: set[int]) -> bool:
    """Delete every file and folder that `uids` own in `folders` (every world-writable folder of the scan, not
    only the top ones) and below them where a run can have written: the folders that the batch's ids (`batch`,
    which holds `uids`) made there. The same files as remove_files's walk of whole trees, for the cost of a
    listing, but for those in folders others make world-writable during the batch (its end walks the trees
    whole). False when some are left."""
    ok, theirs = True, []
    for folder in folders:
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except FileNotFoundError:
            continue
        except OSError:
            ok = False
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if st.st_uid in batch:
                        theirs.append(entry.path)
                elif st.st_uid in uids:
                    os.unlink(entry.path)  # a link itself, never what it points to
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
    return _find_delete(theirs, uids) and ok


def remove_files(folders: list[str], uids: set[int]) -> bool:
    """Delete every file and folder that `uids` own under `folders`; False when some are left (a folder of theirs
    holding another run's file)."""
    return not uids or _find_delete(folders, uids, "-mindepth", "1")


def _find_delete(paths: list[str], uids: set[int], *where: str) -> bool:
    """find(1) -delete of what `uids` own at and below `paths` (`where`: more of find's tests). It deletes from the
    folder it reached, never through a link, and never enters another file system. False when some are left."""
    ok = True
    for k in range(0, len(paths), FIND_PATHS):
        res = subprocess.run(["find", *paths[k:k + FIND_PATHS], "-xdev", *where, *owner_in(id_ranges(uids)),
                              "-delete"], capture_output=True)
        ok = ok and res.returncode == 0
    return ok
