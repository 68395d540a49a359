"""The student's default path, walked as a student walks it, at test sizes on the cpu code path:

1. `make release` (in a copy of the instructor's kit);
2. the solution's task files laid over the release (a student who solved every task);
3. notebooks 01 to 06, each in a fresh kernel, saved with their outputs (HW3_PROFILE=cpu-smoke: the cpu
   profile's code path, 1 channel, respaced clipped sampler, lr schedule, with tiny sizes; notebook 06, the
   optional extension, on its conditional twin cpu-cond-smoke);
4. `make submit` in the release;
5. `make grade` in the instructor's kit.

Expected: no cell raises, the grade is every task's points (06's included), and the walk is not listed under
"needs a human look" (its fid.json, written by notebook 05, passes the grader's check).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from browser_helpers import copy_repo

from grader import REPO
from grader.extract import fid_mismatch
from hw3_utils.checks import TASK_FILES, TASKS
from hw3_utils.config import conditional_profile, get_config

pytestmark = pytest.mark.slow

NOTEBOOKS = ["01_data_prep", "02_unet", "03_forward_diffusion", "04_training", "05_sampling_and_fid", "06_guidance"]
PROFILE = "cpu-smoke"
STUDENT = "walker"


def make(target: str, cwd: Path, *args: str, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`make <target>` as a user types it, with this test's venv (-o: never reinstall it for a copy)."""
    venv = Path(sys.prefix)
    r = subprocess.run(["make", "-s", "--no-print-directory", target, f"VENV={venv}", "-o", f"{venv}/.installed",
                        *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, f"make {target} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_a_student_who_solved_every_task_walks_to_a_grade_of_100(tmp_path, data_dir):
    kit = copy_repo(tmp_path / "instructor")
    make("release", kit, "REPO_URL=none")
    release = kit / "release"
    for rel in TASK_FILES:  # the student's solved task files
        shutil.copy2(REPO / rel, release / rel)

    env = {k: v for k, v in os.environ.items() if not k.startswith("HW3_")}
    env.update(HW3_PROFILE=PROFILE, HW3_DATA_DIR=str(Path(data_dir).resolve()),
               HW3_RUNS_DIR=str(release / "runs"), PYTHONPATH=str(release))
    for name in NOTEBOOKS:  # each in a fresh kernel, saved in place with its outputs, as the student saves it
        path = release / "notebooks" / f"{name}.ipynb"
        r = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                            "--inplace", "--ExecutePreprocessor.timeout=600", str(path)],
                           cwd=path.parent, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{name} raised:\n{r.stderr[-4000:]}"
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.output_type == "error"]
        assert not errors and all(c.execution_count for c in nb.cells if c.cell_type == "code"), name
        printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        profile = conditional_profile(PROFILE, verbose=False) if name == "06_guidance" else PROFILE
        assert f"profile '{profile}'" in printed and f"runs in {release / 'runs' / profile}" in printed

    make("submit", release, f"STUDENT={STUDENT}", env=env)
    zpath = release / f"submission_{STUDENT}.zip"
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        assert {f"notebooks/{n}.ipynb" for n in NOTEBOOKS} | set(TASK_FILES) <= names
        assert "runs/cpu-smoke/fid.json" in names
        (tmp_path / "fid.json").write_bytes(z.read("runs/cpu-smoke/fid.json"))
    assert fid_mismatch(tmp_path / "fid.json") is None  # notebook 05's fid.json passes the grader's check
    record = json.loads((tmp_path / "fid.json").read_text())
    assert record["profile"] == "cpu-smoke" and record["num_samples"] == get_config(PROFILE, verbose=False).num_samples

    submissions = tmp_path / "submissions"
    submissions.mkdir()
    shutil.copy2(zpath, submissions / zpath.name)
    out = tmp_path / "grades"
    make("grade", kit, f"SUBMISSIONS={submissions}", f"OUT={out}", "JOBS=1", timeout=900)
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == [zpath.stem] and int(rows[0]["total"]) == sum(
        t.points for t in TASKS.values()), rows
    summary = (out / "summary.md").read_text()
    assert "## Needs a human look: 0" in summary, summary
