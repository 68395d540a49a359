"""Grading in the "nobody" sandbox mode (root where namespaces are refused: Docker, Gradescope), forced here with
HW3_GRADER_SANDBOX=nobody on a root machine.

The hostile batch (tests/hostile.py) graded as root in this mode, with what an instructor's workflow leaves about
the machine planted first (`hostile.plant`: make submit's zip and make gradescope's bundle at the repository's
top, another batch's submissions and grades, another clone, a bundle's reference): every hostile submission
harms only itself, none finds a solution anywhere (zy_stash adopts any it can read), nothing it wrote or started
outlives the batch, and the machine's file modes are as they were."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hostile
import pytest

from grader import REPO, host, nobody, sandbox

pytestmark = pytest.mark.slow

NOBODY_ENV = {"HW3_GRADER_SANDBOX": "nobody", "LC_ALL": "C.UTF-8", "MPLBACKEND": "Agg", "OMP_WAIT_POLICY": "PASSIVE"}


def _root_or_fail() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):  # CI is root: it must prove this mode, never skip it
            pytest.fail("CI does not run as root: the nobody sandbox mode is untested")
        pytest.skip("the nobody sandbox mode needs root")


def _modes(paths) -> dict[str, int]:
    return {str(p): stat.S_IMODE(os.lstat(p).st_mode) for p in paths if os.path.lexists(p)}


@pytest.fixture(scope="module")
def python_readable():
    """The Python installation traversable by the runs' uids, as it is in a container (CI's lives under /root)."""
    _root_or_fail()
    changed = hostile.open_paths([sys.executable, os.path.realpath(sys.executable), sys.prefix, sys.base_prefix])
    yield
    hostile.restore(changed)


@pytest.fixture(scope="module")
def nobody_batch(python_readable, student_release):
    work = Path(tempfile.mkdtemp(prefix="hw3-nobody-"))
    folder = Path("/var/tmp") / f"hw3-planted-{os.getpid()}"  # beside /tmp: where anyone may reach it
    planted = hostile.plant(folder)
    watched = [*REPO.iterdir(), REPO, *planted, *folder.rglob("*")]
    before = _modes(watched)
    try:
        (work / "planted.json").write_text(json.dumps(planted))
        shutil.copytree(student_release, work / "batch" / "release")  # where the batch grades it
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "MPLCONFIGDIR": str(work / "mpl"),
               **NOBODY_ENV}
        res = subprocess.run([sys.executable, str(REPO / "tests" / "grade_driver.py"), str(work / "batch"),
                              str(work / "result.json"), str(work / "planted.json"), "--release",
                              str(work / "batch" / "release")], env=env, capture_output=True,
                             text=True, timeout=1500)
        assert res.returncode == 0, res.stderr[-4000:]
        result = json.loads((work / "result.json").read_text())
        result.update(stderr=res.stderr, before=before, after=_modes(watched), leftovers=hostile.leftovers())
        yield result
    finally:
        hostile.unplant(folder, planted)
        shutil.rmtree(work, ignore_errors=True)


def test_grades_in_the_nobody_mode(nobody_batch):
    assert nobody_batch["mode"] == "nobody" and nobody_batch["uid"] == 0
    assert "a uid of its own" in nobody_batch["feedback"]["zz_solution"].splitlines()[4]


def test_hostile_batch_harms_only_itself_in_the_nobody_mode(nobody_batch):
    skipped = set(nobody_batch["skipped"])
    assert hostile.check(nobody_batch["points"], nobody_batch["feedback"], skip=skipped) == []
    assert skipped <= hostile.ROOT_ONLY | hostile.NAMESPACE_ONLY and nobody_batch["bait_connections"] == 0
    writer_row = next(r for r in nobody_batch["grades_csv"].splitlines() if r.startswith("h_writer,"))
    assert not writer_row.endswith(",100,graded")


def test_no_solution_found_and_nothing_left_behind(nobody_batch):
    """zy_stash graded the stub's tasks 3, 4 and 5a: no stash of h_stash's, no planted zip, clone, grades or
    reference was readable; no file, process or IPC object of a run's uid is left; every mode is restored."""
    assert nobody_batch["points"]["zy_stash"]["3"] == 0 and nobody_batch["points"]["h_stash"]["3"] > 0
    assert nobody_batch["leftovers"] == []
    assert nobody_batch["after"] == nobody_batch["before"]
    assert not nobody.JOURNAL.exists()


def test_each_run_has_a_uid_of_its_own_and_leaves_nothing(python_readable):
    """Two runs forked by a "nobody" fork server: two uids no account or process holds, no groups, the
    repository's files and another student's work folder unreadable; what each leaves in the world-writable
    folders and the processes it leaves running are gone after it."""
    top = Path(tempfile.mkdtemp(prefix="hw3-nobody-runs-"))
    os.chmod(top, 0o711)  # as the batch's folder: traversable, not listable
    work = top / "w"
    (work / "kit").mkdir(parents=True)
    sandbox.prepare_workdir(work, "nobody")
    neighbour = top / "w2"  # another student's, prepared for its run: a name a run could guess
    (neighbour / "sub").mkdir(parents=True)
    (neighbour / "sub" / "answers.py").write_text("the neighbour's code")
    sandbox.prepare_workdir(neighbour, "nobody")
    assert stat.S_IMODE(os.stat(neighbour).st_mode) == 0o700
    code = ("import os, json, subprocess, sys\n"
            "readable = [p for p in sys.argv[1:] if os.access(p, os.R_OK)]\n"
            "open('/tmp/hw3_hostile_run_%d' % os.getuid(), 'w').write('x')\n"
            "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(), "
            "'readable': readable}))")
    private = [str(REPO / "README.md"), str(REPO / "hw3_utils" / "diffusion.py"), str(REPO / "pyproject.toml"),
               str(neighbour / "sub" / "answers.py")]
    zygote = sandbox.Zygote(mode="nobody", skip=[top])
    got = []
    try:
        for _ in range(2):
            run = sandbox.Run([sys.executable, "-c", code, *private], work, {"PATH": "/usr/bin:/bin"}, 60, zygote)
            assert run.wait(60) == 0, run.stderr_tail() + zygote.log_tail()
            run.close()
            os.close(run.results)
            got.append(json.loads(bytes(run.stdout.data).decode()))
            assert not list(Path("/tmp").glob("hw3_hostile_run_*")) and not host.processes_of({got[-1]["uid"]})
        block = zygote.machine.block
    finally:
        left = zygote.close()
        shutil.rmtree(top, ignore_errors=True)
    assert left == []
    uids = [g["uid"] for g in got]
    assert len(set(uids)) == 2 and all(block[0] <= u < block[1] for u in uids)
    assert not {p.pw_uid for p in pwd.getpwall()} & set(uids)
    assert all(g["gid"] == g["uid"] and g["groups"] == [] and g["readable"] == [] for g in got), got
    assert stat.S_IMODE(os.stat(private[0]).st_mode) & 0o004  # readable by all again


def test_the_banner_names_what_the_nobody_mode_does_not_keep(python_readable, tmp_path):
    """`make grade` in this mode says which guarantees are reduced, and what the machine's scan found."""
    subs = tmp_path / "subs"
    subs.mkdir()
    hostile.write_zip(subs / "stub.zip", {"hw3_utils/data.py": "raise RuntimeError('stub')\n"})
    env = {**os.environ, **NOBODY_ENV}
    res = subprocess.run([sys.executable, "-m", "grader", "grade", str(subs), "--out", str(tmp_path / "out"),
                          "--task-timeout", "10"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for words in ("WARNING: user namespaces are unavailable", "can use the network", "docs/sandbox.md",
                  "one at a time", "world-writable folders /", "paths made unreadable for the runs"):
        assert words in res.stderr, words
    assert "a uid of its own" in (tmp_path / "out" / "feedback" / "stub.md").read_text().splitlines()[4]


# the batch's hold on the machine: one at a time, undone after a crash, never through a link -------------------
def _repo_modes() -> dict[str, int]:
    return _modes([p for p in [*REPO.iterdir(), REPO] if p != nobody.LOCK])  # the lock file stays, 0600


def _lock_free() -> bool:
    try:
        os.close(nobody.take_lock())
        return True
    except nobody.StartError:
        return False


def _owned(uid: int) -> list[str]:
    """What `uid` owns in the world-writable folders hostile.DAEMON writes to."""
    res = subprocess.run(["find", *hostile.SHARED_TMP, "-xdev", "-uid", str(uid)], capture_output=True, text=True)
    return res.stdout.split()


@pytest.fixture
def planted_courses():
    """nbgrader course folders a run could read, in a folder everyone may traverse: one with a source notebook
    holding solution cells, one with a gradebook, and one whose notebook has none (the student version)."""
    _root_or_fail()
    top = Path("/var/tmp") / f"hw3-courses-{os.getpid()}"
    cell = {"cell_type": "code", "source": "x = 1", "outputs": [], "execution_count": None,
            "metadata": {"nbgrader": {"grade": True, "solution": True, "grade_id": "a", "points": 1}}}
    for name, solution in (("course", True), ("plain", False)):
        nb = top / name / "source" / "hw3" / "hw3.ipynb"
        nb.parent.mkdir(parents=True)
        cell["metadata"]["nbgrader"]["solution"] = solution
        nb.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (top / "graded").mkdir()
    (top / "graded" / "gradebook.db").write_bytes(b"SQLite format 3\0")
    for p in [top, *top.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def test_one_batch_at_a_time_and_nbgrader_courses_hidden(planted_courses):
    """A second batch is refused while one holds the machine (with the first one's pid and what to do), and
    changes nothing of the first one's hold; the scan hides nbgrader course folders with model answers."""
    before = _repo_modes()
    first = nobody.Machine().start()
    try:
        hidden = _repo_modes()
        assert hidden != before and nobody.JOURNAL.exists()
        assert {str(planted_courses / "course"), str(planted_courses / "graded")} <= set(first.found)
        assert stat.S_IMODE(os.stat(planted_courses / "course").st_mode) & 0o007 == 0
        assert stat.S_IMODE(os.stat(planted_courses / "plain").st_mode) == 0o755
        second = nobody.Machine()
        with pytest.raises(nobody.StartError, match=rf"another batch \(pid {os.getpid()}\).*wait for it to end"):
            second.start()
        assert second.stop() == []
        assert _repo_modes() == hidden and nobody.JOURNAL.exists()
    finally:
        assert first.stop() == []
    assert _repo_modes() == before and not nobody.JOURNAL.exists() and _lock_free()
    assert stat.S_IMODE(os.stat(planted_courses / "course").st_mode) == 0o755


BATCH = """
import json, os, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import hostile
from grader import sandbox
top, how = Path(sys.argv[2]), sys.argv[3]
(top / "w" / "kit").mkdir(parents=True)
sandbox.prepare_workdir(top / "w", "nobody")
zygote = sandbox.Zygote(mode="nobody", skip=[top])
try:
    run = sandbox.Run([sys.executable, "-c", hostile.DAEMON], top / "w", {"PATH": "/usr/bin:/bin"}, 60, zygote)
    print(json.dumps({"rc": run.wait(60), "uid": run.uid}), flush=True)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)
finally:
    zygote.close()
"""


def _batch_with_a_daemon(how: str, top: Path) -> tuple[subprocess.Popen, int]:
    """A batch (in a process of its own) whose one run leaves a daemon writing into the world-writable folders;
    `how`: "kill" (it SIGKILLs itself once the run is over) or "wait". The batch's process and the run's uid."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(top), **NOBODY_ENV}
    proc = subprocess.Popen([sys.executable, "-c", BATCH, str(REPO / "tests"), str(top), how], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, proc.communicate(timeout=60)[1][-3000:]
    got = json.loads(line)
    assert got["rc"] == 0
    for _ in range(100):  # the daemon's first write
        if _owned(got["uid"]):
            break
        time.sleep(0.1)
    assert host.processes_of({got["uid"]}) and _owned(got["uid"])
    return proc, got["uid"]


@pytest.mark.parametrize("how", ["kill", "hangup"])
def test_a_killed_batch_leaves_nothing_once_recovered(python_readable, how):
    """SIGHUP (a dropped SSH session) ends a batch through its end: the daemon its run left is killed, its files
    removed, the modes restored. After SIGKILL the journal stays, with the batch's ids: the recovery (the next
    batch's start, or python -m grader.nobody) kills the daemon, removes its files, restores the modes."""
    before = _repo_modes()
    top = Path(tempfile.mkdtemp(prefix="hw3-nobody-crash-"))
    os.chmod(top, 0o711)
    proc, uid = _batch_with_a_daemon("kill" if how == "kill" else "wait", top)
    try:
        if how == "hangup":
            proc.send_signal(signal.SIGHUP)
            assert proc.wait(120) == 128 + signal.SIGHUP, proc.stderr.read()[-3000:]
            assert not nobody.JOURNAL.exists()
        else:
            assert proc.wait(120) == -signal.SIGKILL
            assert nobody.JOURNAL.exists() and _repo_modes() != before and host.processes_of({uid})
            done = nobody.recover()
            assert done and done[0].startswith("undid what a killed batch")
            assert not [c for c in hostile.leftovers() if f"/{proc.pid}-" in c]  # its runs' cgroups too
        assert host.processes_of({uid}) == [] and _owned(uid) == []
        assert _repo_modes() == before and not nobody.JOURNAL.exists() and _lock_free()
    finally:
        proc.kill()
        proc.wait()
        nobody.recover()
        shutil.rmtree(top, ignore_errors=True)


def test_restoring_never_follows_a_link(tmp_path):
    """A run replaced a hidden zip, in a folder it may write, with a link to a root-only file (another, with a
    file of its own); the batch was killed. The recovery leaves the link's target and the new file as they are,
    names both, and restores the mode of what was not replaced."""
    _root_or_fail()
    folder = Path("/var/tmp") / f"hw3-replaced-{os.getpid()}"
    folder.mkdir()
    try:
        os.chmod(folder, 0o777)  # world-writable, not sticky: anyone may replace what it holds
        secret = tmp_path / "shadow"
        secret.write_text("root's alone")
        os.chmod(secret, 0o600)
        paths = [folder / "linked.zip", folder / "swapped.zip", folder / "kept.zip"]
        saved = []
        for p in paths:
            p.write_bytes(b"PK")
            os.chmod(p, 0o644)
            st = os.stat(p)
            saved.append((str(p), 0o644, st.st_dev, st.st_ino, st.st_uid))
            os.chmod(p, 0o640)  # hidden, as Machine._hide does after journaling
        nobody.write_journal({"pid": 1, "modes": saved, "blocks": [], "world_writable": []})
        paths[0].unlink()
        paths[0].symlink_to(secret)
        paths[1].unlink()  # its inode may be the new file's: the owner tells them apart
        paths[1].write_bytes(b"the run's own")
        os.chown(paths[1], 1_500_000_000, 1_500_000_000)
        os.chmod(paths[1], 0o600)
        done = nobody.recover()
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600 and paths[0].is_symlink()
        assert stat.S_IMODE(os.stat(paths[1]).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(paths[2]).st_mode) == 0o644
        assert [line.split(" ")[0] for line in done[1:]] == [str(paths[1]), str(paths[0])]
        assert not nobody.JOURNAL.exists()
    finally:
        nobody.drop_journal()
        shutil.rmtree(folder, ignore_errors=True)


def test_folders_everyone_needs_are_never_hidden(tmp_path):
    """SUBMISSIONS=/tmp, ~ or /, a reference's system folder, the repository or a folder above it, the Python
    environment's: the batch is refused before anything changes, with what to do."""
    _root_or_fail()
    shared = Path("/var/tmp") / f"hw3-shared-{os.getpid()}"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    before = _repo_modes()
    try:
        for folder in ("/", "/tmp", "/var/tmp", "/usr/local", Path.home(), REPO, REPO.parent, shared,
                       nobody.python_env()[0].parent):
            with pytest.raises(nobody.StartError, match=r"refusing to make .* folder of their own"):
                nobody.Machine(hide=[tmp_path, folder]).start()
            assert _repo_modes() == before and not nobody.JOURNAL.exists() and _lock_free()
    finally:
        shared.rmdir()
    reference = tmp_path / "reference.pt"
    assert nobody.refusal(reference, [REPO]) is None and nobody.refusal(tmp_path, [REPO]) is None


def test_ids_of_files_in_the_fallback_range_are_never_given(tmp_path):
    """Where a container maps only 65,536 ids: the ids a batch may take; an owner inside them (a file a run can
    reach, a folder it cannot enter, a file beneath one, which a sweep would reach) is never given to a run, and
    no room for a block is a StartError saying what to do."""
    _root_or_fail()
    assert host.id_spans([(0, 65_536)]) == [(32_768, 65_534)]
    spans = [(40_000, 50_000)]
    folder = Path("/var/tmp") / f"hw3-owners-{os.getpid()}"
    (folder / "private").mkdir(parents=True)
    try:
        os.chmod(folder, 0o777)
        (folder / "reachable").write_text("x")
        (folder / "private" / "beneath").write_text("x")
        os.chown(folder / "reachable", 41_000, 41_000)
        os.chown(folder / "private", 42_000, 42_000)
        os.chmod(folder / "private", 0o700)
        os.chown(folder / "private" / "beneath", 43_000, 43_000)
        seen = {uid for _, uid, _ in host.scan([str(folder)], [], spans)}
        assert {41_000, 42_000} <= seen and host.owners_in([str(folder)], spans) == {41_000, 42_000, 43_000}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for _ in range(50):
        first, last = nobody.take_block({41_000}, [(40_000, 43_000)])
        assert not first <= 41_000 < last and last - first >= host.MIN_BLOCK
    for busy, spans in (({41_000}, [(40_500, 41_500)]), (set(), [])):
        assert host.pick_block(busy, spans) is None
        with pytest.raises(nobody.StartError, match="map more ids into the container"):
            nobody.take_block(busy, spans)


def test_a_nested_mount_is_swept_too():
    """A world-writable file system mounted inside a world-writable folder is swept on its own (find -xdev does
    not enter it from the outer one); a folder of the same file system is not listed twice."""
    _root_or_fail()
    outer = Path("/var/tmp") / f"hw3-nested-{os.getpid()}"
    inner, plain = outer / "mnt", outer / "plain"
    for d in (inner, plain):
        d.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "hw3-nested", str(inner)], check=True)
    try:
        os.chmod(outer, 0o777)
        os.chmod(plain, 0o777)
        folders = host.top_folders([str(outer), str(inner), str(plain)])
        assert folders == [str(outer), str(inner)]
        for d in (inner, plain):
            (d / "left").write_text("x")
            os.chown(d / "left", 1_500_000_000, 1_500_000_000)
        assert host.remove_files(folders, {1_500_000_000})
        assert not (inner / "left").exists() and not (plain / "left").exists()
    finally:
        subprocess.run(["umount", str(inner)], check=True)
        shutil.rmtree(outer, ignore_errors=True)


def test_a_sweep_removes_the_runs_files_wherever_it_could_write_and_nothing_else():
    """The sweep after a run (host.remove_owned): the run's files in each world-writable folder of the scan (one
    of them inside a folder runs cannot write to), below them in folders the batch's runs made (another run's
    too), and its links, not what they point to; every other owner's file stays. A folder of the run's holding
    a stranger's file is left, and reported (the batch's end tries again)."""
    _root_or_fail()
    run, other, stranger = 1_500_000_000, 1_500_000_001, 1_600_000_000
    top = Path("/var/tmp") / f"hw3-sweep-{os.getpid()}"
    deep = top / "closed" / "open"
    deep.mkdir(parents=True)
    for path, mode in ((top, 0o1777), (top / "closed", 0o755), (deep, 0o777)):
        os.chmod(path, mode)

    def owned(path: Path, uid: int, folder: bool = False) -> Path:
        path.mkdir() if folder else path.write_text("x")
        os.lchown(path, uid, uid)
        return path

    try:
        target = owned(top / "closed" / "target", 0)
        gone = [owned(top / "f", run), owned(deep / "g", run)]
        theirs = owned(top / "theirs", other, folder=True)
        nested = owned(theirs / "d", run, folder=True)
        gone += [owned(nested / "h", run), nested, top / "link"]
        os.symlink(target, top / "link")
        os.lchown(top / "link", run, run)
        kept = [owned(top / "stranger", stranger), owned(theirs / "o", other), theirs, target]
        assert host.remove_owned([str(top), str(deep)], {run}, {run, other})
        assert [p for p in gone if os.path.lexists(p)] == [] and all(p.exists() for p in kept)
        mine = owned(top / "mine", run, folder=True)
        owned(mine / "x", stranger)
        assert not host.remove_owned([str(top), str(deep)], {run}, {run})
        assert (mine / "x").exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_batch_that_cannot_start_says_why_and_hides_nothing(tmp_path, monkeypatch):
    """A repository on a read-only file system (the journal cannot be written), and a fork server that cannot
    start after the machine was taken: a one-line StartError each, and every mode as it was."""
    _root_or_fail()
    before = _repo_modes()
    readonly = tmp_path / "ro"
    readonly.mkdir()
    subprocess.run(["mount", "--bind", str(readonly), str(readonly)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(readonly)], check=True)
        with monkeypatch.context() as patch:
            patch.setattr(nobody, "JOURNAL", readonly / ".hw3-grader-hidden.json")
            with pytest.raises(nobody.StartError, match=r"could not write .*Read-only file system.*writable file"):
                nobody.Machine().start()
        assert _repo_modes() == before and _lock_free()
    finally:
        subprocess.run(["umount", str(readonly)], check=True)
    monkeypatch.setattr(sandbox, "python", lambda: str(tmp_path / "no-python"))
    with pytest.raises(nobody.StartError, match=r"fork server could not start .*no-python") as err:
        sandbox.Zygote(mode="nobody")
    assert "\n" not in str(err.value)
    assert _repo_modes() == before and not nobody.JOURNAL.exists() and _lock_free()
