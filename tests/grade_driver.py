"""Grade the hostile batch (tests/hostile.py) and write what each submission got as JSON.

Run by tests/test_grader_unprivileged.py as an unprivileged user, and by tests/test_grader_nobody.py as root in
the "nobody" sandbox mode:
    python tests/grade_driver.py WORKDIR RESULT.json [PLANTED.json] [--release KIT]
PLANTED.json: the paths hostile.plant left about the machine, which zy_stash tries to read.
KIT: a student release to grade with (the tests pass a copy of the session's, where the grading user reads it);
without it, one is made in WORKDIR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import hostile  # noqa: E402

from grader import sandbox  # noqa: E402
from grader.batch import grade_batch_detailed  # noqa: E402
from grader.release import make_release  # noqa: E402
from hw3_utils.tasks import TASK_FILES  # noqa: E402


def skipped(mode: str) -> set[str]:
    """The hostile cases whose cap `mode` does not have (sandbox.WARNING names them)."""
    skip = set()
    if mode not in ("root", "nobody") or not sandbox.Cgroups.available():  # memory capped per run by a cgroup only
        skip |= hostile.ROOT_ONLY
    if mode == "nobody":
        skip |= hostile.NAMESPACE_ONLY
    return skip


def main(work: Path, result: Path, planted: list[str], release: Path | None = None) -> None:
    subs, out = work / "submissions", work / "grades"
    subs.mkdir(parents=True)
    release = release or make_release(work / "release", quiet=True, repo_url="none")
    bait = hostile.Bait(work / "home")  # the grading user's 0600 file and unix socket, in a folder of its own
    skip = skipped(sandbox.detect_mode())
    hostile.build(subs, out, {rel: (release / rel).read_text() for rel in TASK_FILES}, bait, skip=skip,
                  planted=planted)
    try:
        graded = grade_batch_detailed(subs, out, task_timeout=10.0, release_dir=release, startup=120, jobs=2)
    finally:
        bait.close()
    json.dump({"mode": sandbox.detect_mode(), "uid": __import__("os").getuid(), "skipped": sorted(skip),
               "bait_connections": bait.connections,
               "points": {g.student: g.points() for g in graded},
               "feedback": {g.student: g.markdown() for g in graded},
               "grades_csv": (out / "grades.csv").read_text()}, open(result, "w"))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("result", type=Path)
    p.add_argument("planted", type=Path, nargs="?")
    p.add_argument("--release", type=Path)
    a = p.parse_args()
    main(a.work, a.result, json.loads(a.planted.read_text()) if a.planted else [], a.release)
