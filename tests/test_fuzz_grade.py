"""Hostile handed-in files through the whole grader: `python -m grader grade` on BATCHES generated batches, each
with an honest submission beside HOSTILE submissions whose notebooks, fid.json and manifest are malformed
(tests/fuzz_files.py). Every batch ends with a grades.csv holding everyone; every submission holds the
solution's code, so every one keeps its 100 points; the honest one has no unreadable file flagged. Some hostile
submissions hold many notebooks (tests/fuzz_files.py's many_notebooks)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

import pytest
from fuzz_files import BASE_FID, BASE_MANIFEST, BASE_NOTEBOOK, hostile_bytes, many_notebooks
from hostile import files, write_zip
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from grader import REPO
from grader.reference import build_reference, save_reference
from hw3_utils.tasks import TASKS

pytestmark = pytest.mark.slow

BATCHES, HOSTILE = 3, 3  # generated batches, and hostile submissions in each (beside one honest submission)
# a hostile submission's files, perhaps among many notebooks (150 the kit has not, and the kit's own)
hostile_files = st.builds(lambda handed, many: {**(many_notebooks(150, 2**16) if many else {}), **handed},
                          st.fixed_dictionaries({"notebooks/03_forward_diffusion.ipynb": hostile_bytes(BASE_NOTEBOOK),
                                                 "runs/cpu/fid.json": hostile_bytes(BASE_FID),
                                                 "manifest.json": hostile_bytes(BASE_MANIFEST)}), st.booleans())


@pytest.fixture(scope="module")
def prebuilt(tmp_path_factory, student_release):
    """The student release and the reference, built once for every batch (as Gradescope's bundle holds them)."""
    root = tmp_path_factory.mktemp("prebuilt")
    (root / "reference").mkdir()
    save_reference(build_reference(), root / "reference" / "reference.pt")
    return student_release, root / "reference" / "reference.pt"


def honest_members(release) -> dict:
    """What `make submit` packs: the solution's task files, the release's notebooks, a fid.json of the cpu
    profile, and a manifest with their checksums."""
    members = {**files(), "runs/cpu/fid.json": json.dumps(BASE_FID, indent=2)}
    members.update({f"notebooks/{p.name}": p.read_text() for p in sorted((release / "notebooks").glob("*.ipynb"))})
    sums = {n: hashlib.sha256(v.encode()).hexdigest() for n, v in members.items()}
    return {**members, "manifest.json": json.dumps({"kit_version": "fuzz", "files": sums})}


@settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(batch=st.lists(hostile_files, min_size=HOSTILE, max_size=HOSTILE))
def test_a_batch_with_hostile_files_grades_everyone(prebuilt, tmp_path_factory, batch):
    release, reference = prebuilt
    root = tmp_path_factory.mktemp("batch")
    subs, out = root / "subs", root / "out"
    subs.mkdir()
    write_zip(subs / "honest.zip", honest_members(release))
    for k, handed in enumerate(batch):
        write_zip(subs / f"hostile_{k}.zip", {**files(), **handed})
    res = subprocess.run([sys.executable, "-m", "grader", "grade", str(subs), "--out", str(out), "--release",
                          str(release), "--reference", str(reference), "--jobs", "2", "--task-timeout", "10"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert sorted(rows) == sorted(["honest", *(f"hostile_{k}" for k in range(HOSTILE))])
    full = str(sum(t.points for t in TASKS.values()))
    assert {s: r["total"] for s, r in rows.items()} == {s: full for s in rows}, res.stderr[-2000:]
    assert not (out / "grader-errors.log").exists()
    honest = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("- **honest**"))
    assert "unreadable" not in honest and "fid.json" not in honest and "differs" not in honest, honest
    md = (out / "feedback" / "honest.md").read_text()
    assert "differs from its checksum" not in md and "fid_vs_mnist_train = 17.40" in md
