"""The "nobody" sandbox mode's hold on the machine (root where namespaces are refused: Docker, Gradescope).

Without namespaces a run sees the machine's own file system, processes and network, so the grader makes the
machine safe around it for the length of a batch (`Machine`, owned by the fork server, grader/sandbox.py):

- one batch at a time: it holds LOCK (an exclusive flock) from its start to its end, and a second batch is
  refused with the first one's pid;
- a uid of its own per run (`new_uid`): root may take any uid without a user namespace. The batch takes a
  block of ids that nothing on the machine holds (no account in /etc/passwd or /etc/group, no subordinate
  range, no process, no file in a folder a run can reach or a sweep enters), inside the ids this container
  maps; a run's processes, files and IPC objects are then exactly those of its uid, and it belongs to no group;
- everything the repository holds is unreadable for others (its files as well as its folders, all but the
  Python environment), as are the batch's submissions, grades and reference, and, found by a scan of the local
  file systems, every other copy of the kit or of the instructor's material a run could read: zips that hold
  the kit's paths (other batches' submissions, `autograder.zip`), folders holding an `hw3_utils` package (other
  clones, releases, site-packages), `reference.pt` files, grading folders (`written/sheet.csv` beside the
  model answers) and nbgrader course folders (a `gradebook.db`, or `source/<assignment>/*.ipynb` with solution
  cells). The root, system folders, shared folders such as /tmp, home folders and any folder holding the
  repository or the Python environment are never hidden: a batch asked to hide one is refused (`refusal`);
- the same scan lists every world-writable folder (`writable`); after each run its processes are killed and
  every file its uid owns in those folders, or below them in folders the batch's runs made, and its SysV IPC
  objects, removed (`sweep`); the batch's end walks the world-writable trees whole (`world_writable`, the top
  ones) for every uid it used. Its POSIX message queues are capped at 0 bytes (an rlimit);
- JOURNAL records, before anything changes, each hidden path's mode and identity (device, inode, owner), the
  batch's blocks of ids and its world-writable folders. A batch killed before its end (SIGKILL, a crash) is
  undone by the next one, or by `python -m grader.nobody`: its ids' processes killed, their files and IPC
  objects removed, the modes restored through the files themselves (never through a link, never to a path a
  run replaced).

The machine's side (the scan, the ids, what a uid leaves behind and its removal) is grader/host.py.

What it cannot do (said by sandbox.WARNING and docs/sandbox.md): cut the network; hide what any user may read
and the kit did not put there; cap a run's memory per run without a cgroup, or its disk writes other than per
file; clean world-writable folders of network file systems (`network` lists the mounts skipped), or undo what
a run writes into a world-writable *file* (`writable_files` lists them); and two runs graded at once can reach
each other while both run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import stat
import sys
import threading
from pathlib import Path

from . import REPO
from .host import (
    MIN_BLOCK,
    NETWORK_FS,
    PSEUDO_FS,
    id_spans,
    kill_all,
    kit_like,
    mapped_ids,
    mounts,
    nbgrader_source,
    owners_in,
    pick_block,
    remove_files,
    remove_ipc,
    remove_owned,
    scan,
    taken_ids,
    top_folders,
)

JOURNAL = REPO / ".hw3-grader-hidden.json"  # what a batch changed on the machine, until it is undone
LOCK = REPO / ".hw3-grader.lock"  # flock'd by the batch that grades in this mode; holds its pid
# Never hidden: the root's own folders, and the first level of the system's trees (/var/tmp, /usr/local...)
SYSTEM = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
          "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/var"}
SYSTEM_TREES = {"/usr", "/var", "/etc", "/run", "/dev", "/proc", "/sys", "/boot", "/lib", "/lib64"}


class StartError(RuntimeError):
    """A batch that cannot start in this mode: the message says what was wrong and what to do. Nothing of its
    hold on the machine is left when it is raised."""


def python_env() -> list[Path]:
    """The Python installation's folders (they stay readable: the runs start Python from them)."""
    return sorted({Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix)})


def repo_entries(repo: Path = REPO) -> list[Path]:
    """Every entry of the repository but the folders holding the Python environment (and links, whose targets
    are entries themselves or not the repository's): made unreadable."""
    keep = python_env()
    return [p for p in sorted(repo.iterdir()) if not p.is_symlink() and p not in (JOURNAL, LOCK)
            and not any(p.resolve() == env or p.resolve() in env.parents for env in keep)]


def home_folders() -> set[Path]:
    return {Path(os.path.realpath(p.pw_dir)) for p in pwd.getpwall() if p.pw_dir}


def refusal(path: Path, keep: list[Path]) -> str | None:
    """Why `path` must not be made unreadable for a batch (None: it may): the root or a system folder, a folder
    every user shares (world-writable and sticky, as /tmp), a user's home folder, or a folder holding one of
    `keep` (the repository, the Python environment, the grader's own folders), which the runs must traverse."""
    p = Path(os.path.realpath(path))
    if str(p) in SYSTEM or str(p.parent) in SYSTEM_TREES:
        return "a system folder, or a file of the system's"
    try:
        st = os.stat(p)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o1002 == 0o1002:
        return "a folder every user shares"
    if p in home_folders():
        return "a user's home folder"
    held = [k for k in keep if p == k or p in Path(k).parents]
    return f"the folder holding {held[0]}" if held else None


# hiding and restoring -----------------------------------------------------------------------------------------
def _open_path(path: str) -> int | None:
    """An O_PATH descriptor of `path` itself (a link is not followed), or None where it is gone."""
    try:
        return os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None


def chmod_fd(fd: int, mode: int) -> None:
    """chmod the file an O_PATH descriptor holds (fchmod refuses one; its /proc link names that very file)."""
    os.chmod(f"/proc/self/fd/{fd}", mode)


def restore_modes(saved) -> list[str]:
    """Give each (path, mode, device, inode, owner) of `saved` its mode back, latest first, through the file
    itself: a path that is now a link or another file (a run replaced it in a folder it may write; a new file
    may reuse the inode, never the owner) is left alone, and named in the list returned."""
    kept = []
    for path, mode, dev, ino, uid in reversed(saved):
        fd = _open_path(path)
        if fd is None:
            continue
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino, st.st_uid) != (dev, ino, uid) or stat.S_ISLNK(st.st_mode):
                kept.append(f"{path} (replaced while hidden: its mode was left alone)")
            else:
                chmod_fd(fd, mode)
        except OSError:
            pass
        finally:
            os.close(fd)
    return kept


def _unwritable(path: Path, err: OSError) -> str:
    return (f"the 'nobody' sandbox mode could not write {path} ({err.strerror or err}): it records there what it "
            "changes on the machine, to undo it even after a crash; grade from a copy of the repository on a "
            "writable file system")


def write_journal(record: dict) -> None:
    """JOURNAL replaced whole by `record` (a crash while writing leaves the previous one)."""
    tmp = JOURNAL.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, JOURNAL)
    except OSError as err:
        raise StartError(_unwritable(JOURNAL, err)) from None


def read_journal() -> dict | None:
    """What a batch killed before its end left in JOURNAL ({"pid", "modes", "blocks", "world_writable"}), or
    None where there is none."""
    try:
        text = JOURNAL.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StartError(f"{JOURNAL} cannot be read ({err.strerror}): make it readable, then grade again") from None
    try:
        rec = json.loads(text)
        modes = [(str(p), int(m), int(d), int(i), int(u)) for p, m, d, i, u in rec["modes"]]
        return {"pid": int(rec["pid"]), "modes": modes,
                "blocks": [(int(a), int(b)) for a, b in rec["blocks"]],
                "world_writable": [str(p) for p in rec["world_writable"]]}
    except (ValueError, KeyError, TypeError) as err:
        raise StartError(f"{JOURNAL} cannot be read ({type(err).__name__}): it lists what a killed batch changed on "
                         "the machine; give each path its mode back by hand, then delete the file") from None


def drop_journal() -> None:
    with contextlib.suppress(OSError):
        JOURNAL.unlink(missing_ok=True)


def take_lock() -> int:
    """LOCK, flock'd for this batch (released when the descriptor closes, or the process dies), with its pid."""
    try:
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise StartError(_unwritable(LOCK, err)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise StartError(f"another batch (pid {holder}) is grading in the 'nobody' sandbox mode from {REPO}; two at "
                         "once would undo each other's hold on the machine: wait for it to end, or stop it "
                         f"(kill {holder}), then grade again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def take_block(busy: set[int], spans) -> tuple[int, int]:
    """host.pick_block, or a StartError saying what to do where no block is free."""
    block = pick_block(busy, spans)
    if block is None:
        raise StartError(f"no {MIN_BLOCK} consecutive free ids for the runs' uids in the ids this container maps "
                         f"({', '.join(f'{a}-{b - 1}' for a, b in mapped_ids())}; every range of them holds an "
                         "account's, a process's or a file's): map more ids into the container (Docker maps them "
                         "all unless userns-remap is on), or grade in root mode (docs/sandbox.md)")
    return block


def _recover() -> list[str]:
    """Undo what a batch killed before its end left (JOURNAL): its ids' processes killed, their files in its
    world-writable folders, their IPC objects and its runs' cgroups removed, its modes restored (restore_modes).
    The caller holds LOCK. Returns what was done, for the batch's report."""
    rec = read_journal()
    if rec is None:
        return []
    uids = {u for a, b in rec["blocks"] for u in range(a, b)}
    left = kill_all(uids) if uids else []
    if left:
        raise StartError(f"processes {', '.join(map(str, left[:8]))} of a killed batch's runs would not die: kill "
                         "them (kill -9 PID), then grade again")
    remove_ipc(uids)
    remove_files(rec["world_writable"], uids)
    from .sandbox import Cgroups  # its runs' cgroups, which only its end would have removed

    if Cgroups.available():
        Cgroups().sweep_stale()
    kept = restore_modes(rec["modes"])
    drop_journal()
    return [f"undid what a killed batch (pid {rec['pid']}) left: {len(rec['modes'])} modes restored, its runs' "
            "processes, files and IPC objects removed", *kept]


def recover() -> list[str]:
    """`_recover` without grading (python -m grader.nobody), holding LOCK as a batch does."""
    held = take_lock()
    try:
        return _recover()
    finally:
        os.close(held)


# the machine, for one batch ---------------------------------------------------------------------------------
class Machine:
    """What "nobody" mode changes on the machine for one batch: `start` (lock, recover, hide, scan, take ids),
    `new_uid`, `own_workdir` and `sweep` per run, `stop` (sweep every id once more, restore the modes, unlock)."""

    def __init__(self, hide=(), skip=()):
        self.hide = [Path(os.path.realpath(p)) for p in hide]
        self.skip = [Path(os.path.realpath(p)) for p in skip]  # the grader's own folders: never hidden or walked
        self.saved: list[tuple[str, int, int, int, int]] = []  # (path, mode, device, inode, owner) to restore
        self.unhidden: list[str] = []  # what could not be made unreadable (a read-only file system...)
        self.found: list[str] = []  # what the scan made unreadable outside the repository and the batch
        self.recovered: list[str] = []  # what a killed batch had left, undone at the start
        self.world_writable: list[str] = []  # the top ones (a whole walk of each reaches the rest)
        self.writable: list[str] = []  # every one (a sweep lists each)
        self.writable_files: list[str] = []
        self.network = [m["path"] for m in mounts() if m["fs"] in NETWORK_FS]
        self.uids: set[int] = set()  # every id this batch gave a run
        self.pending: set[int] = set()  # ids whose files a sweep could not remove yet
        self.lock = threading.Lock()
        self.held: int | None = None  # LOCK's descriptor while this batch holds it
        self.journaled = False  # JOURNAL is this batch's (a killed batch's was undone first)
        self.spans: list[tuple[int, int]] = []
        self.busy: set[int] = set()  # ids in `spans` that a file holds
        self.blocks: list[tuple[int, int]] = []
        self.block = (0, 0)
        self.next = 0

    def start(self) -> Machine:
        """Take the machine for the batch; StartError (with nothing changed) where it cannot."""
        keep = self._keep()
        for p in self.hide:
            if why := refusal(p, keep):
                raise StartError(f"refusing to make {p} unreadable to every other user for the batch: it is {why}. "
                                 "Move the submissions (and the grades, the reference) into a folder of their own, "
                                 "e.g. mkdir ~/hw3-submissions && mv *.zip ~/hw3-submissions, and grade that")
        self.held = take_lock()
        try:
            self.recovered = _recover()
            self.journaled = True
            for p in [*repo_entries(), *self.hide]:
                self._hide(p)
            self._hide(REPO, keep_traverse=True)
            self._scan()
            self.block = take_block(taken_ids() | self.busy, self.spans)
            self.blocks.append(self.block)
            self.next = self.block[0]
            self._journal()
        except BaseException:
            self.stop()
            raise
        return self

    def _keep(self) -> list[Path]:
        return [REPO, *python_env(), *self.skip]

    def _scan(self) -> None:
        """Walk the local file systems (scan): the world-writable folders and files, the instructor's material
        to hide, and the ids inside `spans` that files hold."""
        local = [m["path"] for m in mounts() if m["fs"] not in PSEUDO_FS | NETWORK_FS]
        self.spans = id_spans(mapped_ids())
        found = scan(local, self.skip, self.spans)
        self.writable = sorted({p for why, _, p in found if why == "W"})
        self.world_writable = top_folders(self.writable)
        self.writable_files = [p for why, _, p in found if why == "F"]
        for p in sorted(set(self._targets(found))):
            if self._hide(p):
                self.found.append(str(p))
        self.busy = {uid for _, uid, _ in found} | owners_in(self.world_writable, self.spans)

    def _targets(self, found) -> list[Path]:
        """What of the scan's findings to hide: kit-like zips, references; the clone, release or grades folder
        around a kit's package or a grading sheet; an nbgrader course folder (its gradebook, or a source
        notebook with solution cells)."""
        out = [Path(p) for why, _, p in found if why == "Z" and kit_like(p)]
        out += [Path(p) for why, _, p in found if why == "R"]
        for why, _, name in found:
            p = Path(name)
            if why == "K" and (p / "checks.py").exists():
                out.append(self._outermost([p.parent, p]))
            elif why == "O":
                out.append(self._outermost([p.parent.parent, p.parent]))
            elif why == "G":
                out.append(self._outermost([p.parent, p]))
            elif why == "N" and p.parent.parent.name == "source" and nbgrader_source(name):
                out.append(self._outermost([p.parents[2], p.parents[1], p]))
        return out

    def _outermost(self, candidates: list[Path]) -> Path:
        """The first of `candidates` (outermost first) that may be hidden: neither `refusal` names it nor is it
        world-writable (a folder others share); else the last."""
        keep = self._keep()
        for c in candidates[:-1]:
            with contextlib.suppress(OSError):
                if not os.stat(c).st_mode & 0o002 and refusal(c, keep) is None:
                    return c
        return candidates[-1]

    def _journal(self) -> None:
        write_journal({"pid": os.getpid(), "modes": self.saved, "blocks": self.blocks,
                       "world_writable": self.world_writable})

    def _hide(self, path: Path, keep_traverse: bool = False) -> bool:
        """Take others' permissions off `path` (but traversal, for the repository holding the environment):
        journaled first, then changed through the file itself (never through a link)."""
        fd = _open_path(str(path))
        if fd is None:
            return False
        try:
            st = os.fstat(fd)
            mode = stat.S_IMODE(st.st_mode)
            new = mode & ~(0o006 if keep_traverse else 0o007)
            if stat.S_ISLNK(st.st_mode) or new == mode:
                return False
            self.saved.append((str(path), mode, st.st_dev, st.st_ino, st.st_uid))
            self._journal()
            try:
                chmod_fd(fd, new)
            except OSError as err:
                self.unhidden.append(f"{path} ({err.strerror})")
                return False
            return True
        finally:
            os.close(fd)

    def new_uid(self) -> int:
        """An id no process or file on the machine holds: the run's uid and gid."""
        with self.lock:
            if self.next >= self.block[1]:
                self.block = take_block(taken_ids() | self.busy | self.uids, self.spans)
                self.blocks.append(self.block)
                self._journal()
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
            ids, batch = {uid} | self.pending, set(self.uids)
        remove_ipc(ids)
        done = remove_owned(self.writable, ids, batch)
        with self.lock:
            self.pending = set() if done else self.pending | {uid}
        return left

    def stop(self) -> list[str]:
        """The batch's end: every id it used swept again, the modes restored, LOCK released. Returns what is left:
        processes that would not die (their ids stay journaled, for the next batch) and paths replaced while
        hidden. Does nothing where this batch holds no lock (its start was refused)."""
        if self.held is None:
            return []
        try:
            left = kill_all(self.uids) if self.uids else []
            remove_ipc(self.uids)
            remove_files(self.world_writable, self.uids)
            kept = restore_modes(self.saved)
            self.saved = []
            if left and self.journaled:
                with contextlib.suppress(StartError):
                    self._journal()
            elif self.journaled:
                drop_journal()
        finally:
            os.close(self.held)
            self.held = None
        return [f"process {pid}" for pid in left] + kept

    def report(self) -> list[str]:
        """What the batch's terminal says about this machine (what is hidden, cleaned, and what is not)."""
        lines = [*self.recovered,
                 f"nobody mode: {len(self.saved)} paths made unreadable for the runs; ids {self.block[0]}.. for "
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


if __name__ == "__main__":  # python -m grader.nobody: undo what a killed batch left, without grading
    try:
        done = recover()
    except StartError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(done) or f"nothing to undo: {JOURNAL} does not exist")
