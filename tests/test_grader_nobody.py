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
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import hostile
import pytest

from grader import REPO, nobody, sandbox

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
    repository's files unreadable; what each leaves in the world-writable folders and the processes it leaves
    running are gone after it."""
    top = Path(tempfile.mkdtemp(prefix="hw3-nobody-runs-"))
    os.chmod(top, 0o711)  # as the batch's folder: traversable, not listable
    work = top / "w"
    (work / "kit").mkdir(parents=True)
    sandbox.prepare_workdir(work, "nobody")
    code = ("import os, json, subprocess, sys\n"
            "readable = [p for p in sys.argv[1:] if os.access(p, os.R_OK)]\n"
            "open('/tmp/hw3_hostile_run_%d' % os.getuid(), 'w').write('x')\n"
            "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(), "
            "'readable': readable}))")
    private = [str(REPO / "README.md"), str(REPO / "hw3_utils" / "diffusion.py"), str(REPO / "pyproject.toml")]
    zygote = sandbox.Zygote(mode="nobody", skip=[top])
    got = []
    try:
        for _ in range(2):
            run = sandbox.Run([sys.executable, "-c", code, *private], work, {"PATH": "/usr/bin:/bin"}, 60, zygote)
            assert run.wait(60) == 0, run.stderr_tail() + zygote.log_tail()
            run.close()
            os.close(run.results)
            got.append(json.loads(bytes(run.stdout.data).decode()))
            assert not list(Path("/tmp").glob("hw3_hostile_run_*")) and not nobody.processes_of({got[-1]["uid"]})
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
