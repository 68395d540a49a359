"""The grader: full marks for the solution, 0 for the stubs, each mutant loses only its own task, and
hostile submissions harm only themselves. One batch, graded once per session (about 2-3 minutes)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import REPO, sandbox
from grader.grade import grade_batch_detailed, safe_extract
from grader.patches import patched_source
from grader.release import make_release
from hw3_utils.tasks import TASK_FILES, TASKS, mistakes, variants

pytestmark = pytest.mark.slow

MISTAKES, VARIANTS = mistakes(), variants()
FULL = {t: task.points for t, task in TASKS.items()}
TIMEOUT = 10.0


def solution(rel: str) -> str:
    return (REPO / rel).read_text()


def write_zip(path: Path, members: dict[str, str | bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            z.writestr(info, target)
    return path


def patch_size(path: Path, member: str, size: int) -> None:
    """Rewrite a member's declared uncompressed size (local header and central directory)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, name_len_at, name_at, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        pos = data.find(sig)
        while pos >= 0:
            n = struct.unpack_from("<H", data, pos + name_len_at)[0]
            if bytes(data[pos + name_at:pos + name_at + n]) == name:
                struct.pack_into("<I", data, pos + size_at, size)
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def files(**over) -> dict[str, str]:
    out = {rel: solution(rel) for rel in TASK_FILES}
    out.update({f"hw3_utils/{k}.py": v for k, v in over.items()})
    return {k: v for k, v in out.items() if v is not None}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Build every submission, grade them in one batch; returns {student: (row, feedback, per_task)}."""
    root = tmp_path_factory.mktemp("grading")
    subs, out = root / "submissions", root / "grades"
    subs.mkdir()
    release = make_release(root / "release", quiet=True, repo_url="none")
    stub = {rel: (release / rel).read_text() for rel in TASK_FILES}

    write_zip(subs / "zz_solution.zip", files())
    write_zip(subs / "stub.zip", stub)
    for _, m in MISTAKES:
        write_zip(subs / f"mutant_{m.name}.zip", {**files(), m.file: patched_source(m)})
    for _, v in VARIANTS:
        write_zip(subs / f"variant_{v.name}.zip", {**files(), v.file: patched_source(v)})

    # hostile submissions -------------------------------------------------------------------------
    diff = solution("hw3_utils/diffusion.py")
    loop = diff.replace("        ### BEGIN SOLUTION 3\n", "        ### BEGIN SOLUTION 3\n        while True:\n"
                        "            pass\n")
    write_zip(subs / "h_loop.zip", files(diffusion=loop))
    write_zip(subs / "h_exit_import.zip", files(diffusion=diff + "\nimport os\nos._exit(3)\n"))
    write_zip(subs / "h_raise_import.zip", files(unet=solution("hw3_utils/unet.py")
                                                 + "\nraise RuntimeError('boom at import')\n"))
    write_zip(subs / "h_syntax.zip", files(data=solution("hw3_utils/data.py") + "\ndef broken(:\n    pass\n"))
    write_zip(subs / "h_missing.zip", files(pipeline=None))
    write_zip(subs / "h_paths.zip", {**files(), "../evil.py": "print('evil')\n", "/tmp/hw3_abs_evil.py": "x\n",
                                     "hw3_utils\\evil.py": "x\n", "notes.txt": "hello\n"})
    write_zip(subs / "h_symlink.zip", files(data=None), symlinks={"hw3_utils/data.py": str(REPO / "hw3_utils/data.py")})
    write_zip(subs / "h_bigdecl.zip", files())
    patch_size(subs / "h_bigdecl.zip", "hw3_utils/unet.py", 2_000_000_000)
    write_zip(subs / "h_bomb.zip", files(diffusion=diff + "#" * (3 * 1024 * 1024) + "\n"))
    patch_size(subs / "h_bomb.zip", "hw3_utils/diffusion.py", 1000)
    hog = diff.replace("        ### BEGIN SOLUTION 5a\n", "        ### BEGIN SOLUTION 5a\n"
                       "        _hog = torch.ones(50 * 1024**3, dtype=torch.uint8)\n")
    write_zip(subs / "h_membomb.zip", files(diffusion=hog))
    evil_row = "h_writer,10,10,20,15,15,20,10,100,graded\n"
    writer = solution("hw3_utils/data.py") + f"""
import os as _os
for _p in [{str(out / 'grades.csv')!r}, {str(out / 'feedback' / 'zz_solution.md')!r}, {str(out / 'score.txt')!r},
           {str(REPO / 'hw3_utils' / 'zz_evil.py')!r}, {str(subs / 'zz_evil.zip')!r}]:
    try:
        _os.makedirs(_os.path.dirname(_p), exist_ok=True)
        with open(_p, "w") as _f:
            _f.write({evil_row!r})
    except Exception:
        pass
"""
    reader = stub["hw3_utils/diffusion.py"] + f"""
try:  # the solution's DDPM, read from the instructor's kit
    exec(open({str(REPO / 'hw3_utils' / 'diffusion.py')!r}).read().replace("from .config", "from hw3_utils.config"))
except Exception:
    pass
try:  # or from another student's zip
    import zipfile as _z
    exec(_z.ZipFile({str(subs / 'zz_solution.zip')!r}).read("hw3_utils/diffusion.py").decode())
except Exception:
    pass
"""
    write_zip(subs / "h_writer.zip", files(data=writer, diffusion=reader))
    (subs / "h_notazip.zip").write_text("this is not a zip\n")

    # the submit -> grade round trip ---------------------------------------------------------------
    kit = root / "kitcopy"
    shutil.copytree(REPO / "hw3_utils", kit / "hw3_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "notebooks", kit / "notebooks")
    (kit / "pyproject.toml").write_text("")
    runs = root / "runs"
    (runs / "smoke").mkdir(parents=True)
    (runs / "smoke" / "fid.json").write_text(json.dumps({"fid_vs_mnist_train": 421.1, "fid_vs_mnist_test": 430.5,
                                                         "num_samples": 32, "profile": "smoke"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW3_")}
    env.update(PYTHONPATH=str(kit), HW3_RUNS_DIR=str(runs))
    res = subprocess.run([sys.executable, "-m", "hw3_utils.submit", "--student", "roundtrip", "--out", str(subs)],
                         cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "WARNING: notebooks/01_data_prep.ipynb has no outputs" in res.stdout
    assert (subs / "submission_roundtrip.zip").exists()

    results = grade_batch_detailed(subs, out, task_timeout=TIMEOUT, release_dir=release, startup=120)
    by_student = {g.student: g for g in results}
    return {"results": by_student, "out": out, "subs": subs, "root": root}


def points(batch, student) -> dict[str, int]:
    return batch["results"][student].points()


def message(batch, student, task) -> str:
    return batch["results"][student].tasks[task][1]


def feedback(batch, student) -> str:
    return batch["results"][student].markdown()


def test_solution_full_marks_and_stub_zero(batch):
    row = batch["results"]["zz_solution"].row()
    assert points(batch, "zz_solution") == FULL and row["total"] == 100 and row["status"] == "graded"
    assert points(batch, "stub") == {t: 0 for t in TASKS}
    for t in TASKS:
        assert "not implemented" in message(batch, "stub", t), message(batch, "stub", t)


def test_submit_round_trip(batch):
    md = feedback(batch, "submission_roundtrip")
    assert batch["results"]["submission_roundtrip"].total == 100
    assert "runs/smoke/fid.json: fid_vs_mnist_train = 421.10" in md
    assert "notebooks/01_data_prep.ipynb: not executed" in md
    assert "differs from its checksum" not in md


@pytest.mark.parametrize("task, mutant", MISTAKES, ids=[m.name for _, m in MISTAKES])
def test_mutant_loses_points_in_its_task_only(batch, task, mutant):
    got = points(batch, f"mutant_{mutant.name}")
    assert got[task.id] < FULL[task.id], f"{mutant.name} not caught"
    assert {t: p for t, p in got.items() if t != task.id} == {t: p for t, p in FULL.items() if t != task.id}
    assert message(batch, f"mutant_{mutant.name}", task.id).startswith("FAIL")


@pytest.mark.parametrize("task, variant", VARIANTS, ids=[v.name for _, v in VARIANTS])
def test_correct_variant_gets_full_marks(batch, task, variant):
    assert points(batch, f"variant_{variant.name}") == FULL, message(batch, f"variant_{variant.name}", task.id)


def expect(batch, student, zero: set[str]):
    got = points(batch, student)
    assert got == {t: (0 if t in zero else FULL[t]) for t in TASKS}, (student, got)


def test_hung_task_fails_alone(batch):
    expect(batch, "h_loop", {"3"})
    assert "time limit exceeded" in message(batch, "h_loop", "3")


def test_import_crashes_fail_every_task_of_that_submission(batch):
    expect(batch, "h_exit_import", set(TASKS))
    assert "could not be imported" in message(batch, "h_exit_import", "1")
    assert "exit code 3" in message(batch, "h_exit_import", "1")
    expect(batch, "h_raise_import", set(TASKS))
    assert "RuntimeError: boom at import (hw3_utils/unet.py:" in message(batch, "h_raise_import", "3")
    expect(batch, "h_syntax", set(TASKS))
    syntax = message(batch, "h_syntax", "5b")
    assert "SyntaxError" in syntax and "hw3_utils/data.py:" in syntax


def test_missing_or_rejected_files_cost_only_their_tasks(batch):
    expect(batch, "h_missing", {"5b"})
    expect(batch, "h_paths", set())
    md = feedback(batch, "h_paths")
    assert "rejected '../evil.py'" in md and "rejected '/tmp/hw3_abs_evil.py': absolute path" in md
    assert "backslash" in md and "ignored 'notes.txt'" in md
    assert not list(batch["root"].rglob("evil.py")) and not Path("/tmp/hw3_abs_evil.py").exists()
    expect(batch, "h_symlink", {"1"})
    assert "symbolic link" in feedback(batch, "h_symlink")
    expect(batch, "h_bigdecl", {"2a", "2b"})
    assert "declares 2,000,000,000 bytes" in feedback(batch, "h_bigdecl")
    expect(batch, "h_bomb", {"3", "4", "5a"})
    assert "rejected 'hw3_utils/diffusion.py'" in feedback(batch, "h_bomb")
    row = batch["results"]["h_notazip"].row()
    assert row["total"] == 0 and row["status"] == "rejected: not a zip file"


def test_memory_bomb_fails_alone(batch):
    expect(batch, "h_membomb", {"5a"})


def test_submission_cannot_read_the_solution_or_write_the_grades(batch):
    if sandbox.detect_mode() == "none":
        if os.environ.get("CI"):  # CI must prove the isolation, never skip it
            pytest.fail("no sandbox on the CI machine (not root, no user namespaces): isolation untested")
        pytest.skip("no sandbox on this machine (not root, no user namespaces)")
    expect(batch, "h_writer", {"3", "4", "5a"})  # its diffusion.py is the stub: reading the solution failed
    rows = list(csv.DictReader(open(batch["out"] / "grades.csv")))
    assert sorted(r["student"] for r in rows) == sorted(batch["results"])
    assert "100,graded" not in (batch["out"] / "grades.csv").read_text().split("h_writer,")[1].split("\n")[0]
    assert not (batch["out"] / "score.txt").exists() and not (REPO / "hw3_utils" / "zz_evil.py").exists()
    assert not (batch["subs"] / "zz_evil.zip").exists()
    assert "h_writer" not in (batch["out"] / "feedback" / "zz_solution.md").read_text()
    assert "100 / 100" in (batch["out"] / "feedback" / "zz_solution.md").read_text()


def test_grades_csv_and_feedback(batch):
    rows = list(csv.DictReader(open(batch["out"] / "grades.csv")))
    assert list(rows[0]) == ["student", *TASKS, "total", "status"]
    assert {r["student"] for r in rows} == set(batch["results"])
    md = (batch["out"] / "feedback" / "mutant_noise-at-t0.md").read_text()
    assert "| Task 5a (p_sample) | 0 / 20 | FAIL: your output equals the output of a known mistake" in md
    assert "sandbox" in md.splitlines()[4]


def test_safe_extract_caps_and_duplicates(tmp_path):
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("hw3_utils/data.py", "a = 1\n")
        with pytest.warns(UserWarning):
            f.writestr("hw3_utils/data.py", "a = 2\n")
        f.writestr("manifest.json", "{" + " " * (70 * 1024) + "}")
    ex = safe_extract(z, tmp_path / "x")
    assert ex.files == {} and ex.fatal is None
    assert any("more than once" in n for n in ex.notes) and any("manifest.json" in n for n in ex.notes)
    many = write_zip(tmp_path / "many.zip", {f"f{i}.txt": "" for i in range(300)})
    assert "too many members" in safe_extract(many, tmp_path / "y").fatal


def test_class_summary(batch):
    out = batch["out"]
    md = (out / "summary.md").read_text()
    n = len(batch["results"])
    assert md.startswith(f"# Class summary: {n} submission(s)") and (out / "summary.png").stat().st_size > 5000
    for tid, task in TASKS.items():  # every task's row: passed, rate, its most common failures with counts
        row = next(line for line in md.splitlines() if line.startswith(f"| Task {tid} ({task.name}) | "))
        assert re.search(r"\| \d+ / \d+ \| \d+% \| .+ \(\d+\)", row), row
    look = {line.split("**")[1]: line for line in md.splitlines() if line.startswith("- **")}
    assert "Task 3 timed out" in look["h_loop"]
    assert "zip member(s) refused" in look["h_paths"] and "rejected: not a zip file" in look["h_notazip"]
    assert "notebooks not executed (5 of 5)" in look["submission_roundtrip"]
    assert "fid.json" not in look["submission_roundtrip"]  # its fid.json matches the smoke profile
    assert "fid.json missing" in look["zz_solution"]
    from grader.summary import headline, summarize

    graded = list(batch["results"].values())
    s = summarize(graded, TASKS)
    assert s["per_task"]["5a"]["passed"] == sum(g.tasks["5a"][0] == TASKS["5a"].points for g in graded)
    assert sum(s["histogram"]) == n and s["histogram"][9] == sum(g.total >= 90 for g in graded)
    lines = headline(s)
    assert len(lines) == 5 and lines[0].startswith(f"graded {n} submission(s): mean")
