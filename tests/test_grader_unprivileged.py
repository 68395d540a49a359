"""Grading as a normal user, the way most instructors grade on a laptop ("userns" sandbox mode).

In CI, which is root, a new unprivileged user grades the whole hostile batch (tests/hostile.py); run as a
normal user, the test grades it as that user. The results must be those of the root batch: every hostile
submission harms only itself, the good one after them gets 100, and nothing survives the batch."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import hostile
import pytest

from grader import REPO

pytestmark = pytest.mark.slow

USER = "hw3grader"


def _user() -> tuple[list[str], int | None]:
    """The command prefix that runs as the unprivileged user, and its uid (None: the current user)."""
    if os.geteuid() != 0:
        return [], None
    def tool(name: str) -> str:  # root's tools live in the sbin folders, which a PATH may lack
        found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
        assert found, f"{name} (util-linux / passwd) is needed to grade as an unprivileged user"
        return found

    try:
        uid = pwd.getpwnam(USER).pw_uid
    except KeyError:
        subprocess.run([tool("useradd"), "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True)
        uid = pwd.getpwnam(USER).pw_uid
    return [tool("runuser"), "-u", USER, "--"], uid


@pytest.fixture(scope="module")
def unprivileged_batch(student_release):
    prefix, uid = _user()
    work = Path(tempfile.mkdtemp(prefix="hw3-unprivileged-"))
    changed = []
    try:
        shutil.copytree(student_release, work / "release")  # where the grading user reads it
        if uid is not None:
            os.chown(work, uid, -1)
            changed = hostile.open_paths([REPO, sys.executable, os.path.realpath(sys.executable), sys.prefix,
                                          sys.base_prefix])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LC_ALL": "C.UTF-8",
               "MPLBACKEND": "Agg", "OMP_WAIT_POLICY": "PASSIVE", "MPLCONFIGDIR": str(work / "mpl")}
        res = subprocess.run([*prefix, sys.executable, str(REPO / "tests" / "grade_driver.py"), str(work / "batch"),
                              str(work / "result.json"), "--release", str(work / "release")], env=env,
                             capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, res.stderr[-4000:]
        result = json.loads((work / "result.json").read_text())
        result["stderr"] = res.stderr
        yield result
    finally:
        hostile.restore(changed)
        shutil.rmtree(work, ignore_errors=True)


def test_grades_as_a_normal_user_in_a_user_namespace(unprivileged_batch):
    assert unprivileged_batch["uid"] != 0
    assert unprivileged_batch["mode"] == "userns", (
        "unprivileged user namespaces are unavailable on this machine: a normal user's grading runs unsandboxed")
    assert "user namespace" in unprivileged_batch["feedback"]["zz_solution"].splitlines()[4]


def test_hostile_batch_harms_only_itself_as_a_normal_user(unprivileged_batch):
    assert hostile.check(unprivileged_batch["points"], unprivileged_batch["feedback"],
                         skip=set(unprivileged_batch["skipped"])) == []
    assert set(unprivileged_batch["skipped"]) <= hostile.ROOT_ONLY and unprivileged_batch["bait_connections"] == 0
    writer_row = next(r for r in unprivileged_batch["grades_csv"].splitlines() if r.startswith("h_writer,"))
    assert not writer_row.endswith(",100,graded")
    assert hostile.leftovers() == []


def test_reduced_sandbox_says_so(tmp_path):
    """Without namespaces (forced here), the terminal and the feedback header say what that means for trust."""
    subs = tmp_path / "subs"
    subs.mkdir()
    hostile.write_zip(subs / "stub.zip", {"hw3_utils/data.py": "raise RuntimeError('stub')\n"})
    env = {**os.environ, "HW3_GRADER_SANDBOX": "none", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "grader", "grade", str(subs), "--out", str(tmp_path / "out"),
                          "--task-timeout", "10"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARNING: this machine allows no user namespaces" in res.stderr
    assert "do not trust these grades against hostile code" in res.stderr
    header = (tmp_path / "out" / "feedback" / "stub.md").read_text().splitlines()[4]
    assert "sandbox (reduced" in header
    assert "1/1 graded" in res.stderr  # the progress line
