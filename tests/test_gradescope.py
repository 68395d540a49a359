"""The Gradescope bundle, run locally in an /autograder-like layout: 100 for the solution, 0 for the stubs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import REPO
from grader.gradescope import build_bundle
from grader.release import solution_regions
from hw3_utils.checks import TASK_FILES, TASKS

pytestmark = pytest.mark.slow
FULL = sum(t.points for t in TASKS.values())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gs")
    zpath = build_bundle(root / "autograder.zip")
    source = root / "autograder" / "source"
    with zipfile.ZipFile(zpath) as z:
        z.extractall(source)
    for name in ("run_autograder", "setup.sh"):
        (source / name).chmod(0o755)
    return source


def run_autograder(source: Path, tmp_path: Path, submission: dict[str, Path], python: str = sys.executable,
                   metadata: dict | None = None) -> dict:
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    if metadata is not None:  # what Gradescope writes beside submission/
        (root / "submission_metadata.json").write_text(json.dumps(metadata))
    for name, path in submission.items():
        (root / "submission" / name).write_bytes(path.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW3_") and k != "PYTHONPATH"}
    env.update(AUTOGRADER_ROOT=str(root), PYTHON=python)
    res = subprocess.run(["bash", str(source / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def total(results: dict) -> int:
    """What Gradescope shows after the due date: the sum of the tests' scores."""
    return sum(t["score"] for t in results["tests"])


def test_bundle_has_no_solution_source(bundle):
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"setup.sh", "run_autograder", "reference/reference.pt", "grader/batch.py", "grader/runner.py",
            "grader/zygote.py"} <= names
    assert "grader/patches.py" not in names and not any(n.startswith("hw3_utils/") for n in names)
    texts = [p.read_text(errors="ignore") for p in bundle.rglob("*") if p.is_file() and p.suffix != ".pt"]
    for rel, task, body in solution_regions():
        assert not any(body in t for t in texts), f"the bundle holds the solution of task {task} ({rel})"
    setup = (bundle / "setup.sh").read_text()
    assert "download.pytorch.org/whl/cpu" in setup and "pytorch-fid" in setup


def test_solution_zip_scores_100(bundle, tmp_path):
    zpath = tmp_path / "sub.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for rel in TASK_FILES:
            z.write(REPO / rel, rel)
    meta = {"users": [{"name": "Ada Lovelace", "email": "ada@example.edu", "sid": "s1815"}],
            "created_at": "2026-12-10T21:30:00+00:00",
            "assignment": {"due_date": "2026-12-10T18:00:00+00:00", "late_due_date": "2026-12-12T18:00:00+00:00"}}
    res = run_autograder(bundle, tmp_path, {"submission.zip": zpath}, metadata=meta)
    assert "score" not in res  # Gradescope sums the tests: the points sit in the after-due-date tests only
    public, graded = res["tests"][0::2], res["tests"][1::2]
    assert [t["max_score"] for t in graded] == [t.points for t in TASKS.values()]
    assert all(t["visibility"] == "after_due_date" and t["score"] == t["max_score"] and t["output"] == "PASS"
               for t in graded)
    assert all(t["visibility"] == "visible" and t["max_score"] == 0 and t["output"] == "PASS" for t in public)
    assert sum(t["score"] for t in res["tests"]) == FULL
    assert "Submitted by Ada Lovelace (s1815) at 2026-12-10T21:30+00:00, **3.5 h after the due date**" in res["output"]


def test_stub_loose_files_score_0(bundle, tmp_path):
    release = bundle / "release"
    res = run_autograder(bundle, tmp_path, {Path(rel).name: release / rel for rel in TASK_FILES})
    assert sum(t["score"] for t in res["tests"]) == 0
    assert all(t["score"] == 0 and "not implemented" in t["output"] for t in res["tests"])
    assert "sandbox" in res["output"]


def test_setup_sh_installs_what_run_autograder_needs(bundle, tmp_path):
    """setup.sh in a fresh virtual environment, through the package index this machine reaches (TORCH_INDEX=
    is pip's own); run_autograder with that environment grades the solution 100 and the stubs 0."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHON=python, TORCH_INDEX="")
    res = subprocess.run(["bash", str(bundle / "setup.sh")], env=env, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    zpath = tmp_path / "sub.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for rel in TASK_FILES:
            z.write(REPO / rel, rel)
    assert total(run_autograder(bundle, tmp_path / "solution", {"submission.zip": zpath}, python)) == FULL
    release = bundle / "release"
    stubs = {Path(rel).name: release / rel for rel in TASK_FILES}
    assert total(run_autograder(bundle, tmp_path / "stubs", stubs, python)) == 0


def test_a_bundle_without_the_extension_grades_tasks_1_to_5b_alone(tmp_path):
    from grader.release import extension_tasks

    gone = set(extension_tasks())
    source = tmp_path / "source"
    with zipfile.ZipFile(build_bundle(tmp_path / "autograder.zip", without="06")) as z:
        z.extractall(source)
    (source / "run_autograder").chmod(0o755)
    assert gone and not any((source / "release" / f"hw3_utils/tasks/task_{t}.py").exists() for t in gone)
    zpath = tmp_path / "sub.zip"
    with zipfile.ZipFile(zpath, "w") as z:  # an honest submission from the full kit: the extension's file too
        for rel in TASK_FILES:
            z.write(REPO / rel, rel)
    res = run_autograder(source, tmp_path, {"submission.zip": zpath})
    graded = res["tests"][1::2]
    assert [t["max_score"] for t in graded] == [t.points for tid, t in TASKS.items() if tid not in gone]
    assert total(res) == 100 and all(t["output"] == "PASS" for t in graded)
