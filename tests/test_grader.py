"""The grader: full marks for the solution, 0 for the stubs, each mutant loses only its own task, and
hostile submissions harm only themselves. One batch, graded once per session (about 2-3 minutes)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import hostile
import pytest
from hostile import files, write_zip

from grader import REPO, sandbox
from grader.batch import grade_batch_detailed
from grader.extract import safe_extract
from grader.patches import patched_source
from grader.written import questions
from hw3_utils import get_config
from hw3_utils.runfolder import write_fid_json
from hw3_utils.tasks import TASK_FILES, TASKS, mistakes, variants

pytestmark = pytest.mark.slow

MISTAKES, VARIANTS = mistakes(), variants()
FULL = {t: task.points for t, task in TASKS.items()}
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def batch(tmp_path_factory, student_release):
    """Build every submission, grade them in one batch; returns {student: (row, feedback, per_task)}."""
    root = tmp_path_factory.mktemp("grading")
    subs, out = root / "submissions", root / "grades"
    subs.mkdir()
    release = student_release
    stub = {rel: (release / rel).read_text() for rel in TASK_FILES}

    write_zip(subs / "zz_solution.zip", files())
    write_zip(subs / "stub.zip", stub)
    for _, m in MISTAKES:
        write_zip(subs / f"mutant_{m.name}.zip", {**files(), m.file: patched_source(m)})
    for _, v in VARIANTS:
        write_zip(subs / f"variant_{v.name}.zip", {**files(), v.file: patched_source(v)})

    bait = hostile.Bait(root / "home")  # the grading user's secrets: a 0600 file and a 0600 unix socket
    folder = Path("/var/tmp") / f"hw3-planted-{os.getpid()}"  # what an instructor's workflow leaves about
    planted = hostile.plant(folder)
    hostile.build(subs, out, stub, bait, planted=planted)
    for name in ("h clash", "h_clash"):  # two zips whose names give one student id
        (subs / f"{name}.zip").write_text(f"{name}: not a zip\n")

    # the submit -> grade round trip ---------------------------------------------------------------
    kit = root / "kitcopy"
    shutil.copytree(REPO / "hw3_utils", kit / "hw3_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "notebooks", kit / "notebooks")
    (kit / "pyproject.toml").write_text("")
    runs = root / "runs"  # the fid.json notebook 05 writes (the one writer), for a full-smoke run
    write_fid_json(runs / "full-smoke", get_config("full-smoke", verbose=False),
                   {"fid_vs_mnist_train": 421.1, "fid_vs_mnist_test": 430.5, "fid_floor_test_vs_train": 80.2}, "cpu")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW3_")}
    env.update(PYTHONPATH=str(kit), HW3_RUNS_DIR=str(runs))
    res = subprocess.run([sys.executable, "-m", "hw3_utils.submit", "--student", "roundtrip", "--out", str(subs)],
                         cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "WARNING: notebooks/01_data_prep.ipynb has no outputs" in res.stdout
    assert (subs / "submission_roundtrip.zip").exists()

    try:
        results = grade_batch_detailed(subs, out, task_timeout=TIMEOUT, release_dir=release, startup=120, jobs=2)
    finally:
        bait.close()
        hostile.unplant(folder, planted)
    assert bait.connections == 0, "a submission reached the grading user's socket"
    by_student = {g.student: g for g in results}
    return {"results": by_student, "out": out, "subs": subs, "root": root}


def points(batch, student) -> dict[str, int]:
    return batch["results"][student].points()


def message(batch, student, task) -> str:
    return batch["results"][student].tasks[task].message


def feedback(batch, student) -> str:
    return batch["results"][student].markdown()


def test_solution_full_marks_and_stub_zero(batch):
    row = batch["results"]["zz_solution"].row()
    assert points(batch, "zz_solution") == FULL and row["total"] == sum(FULL.values()) and row["status"] == "graded"
    assert points(batch, "stub") == {t: 0 for t in TASKS}
    for t in TASKS:
        assert "not implemented" in message(batch, "stub", t), message(batch, "stub", t)


def test_submit_round_trip(batch):
    md = feedback(batch, "submission_roundtrip")
    assert batch["results"]["submission_roundtrip"].total == sum(FULL.values())
    assert "runs/full-smoke/fid.json: fid_vs_mnist_train = 421.10" in md
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


def test_hostile_submissions_harm_only_themselves(batch):
    res = batch["results"]
    points = {s: g.points() for s, g in res.items()}
    assert hostile.check(points, {s: g.markdown() for s, g in res.items()}) == []
    assert not list(batch["root"].rglob("evil.py")) and not Path("/tmp/hw3_abs_evil.py").exists()
    row = res["h_notazip"].row()
    assert row["total"] == 0 and row["status"] == "rejected: not a zip file"


def test_nothing_survives_the_batch(batch):
    """No file in the shared temporary folders, no process: not the daemon, not the filler's files."""
    assert hostile.leftovers() == []


def test_resource_limits_are_the_sandboxes(batch):
    if sandbox.detect_mode() not in ("root", "userns"):
        pytest.fail(f"the sandbox mode here is {sandbox.detect_mode()!r}: the tmpfs caps are untested")
    # the flood was cut, not fatal: graded in full, with the line saying what happened
    assert batch["results"]["h_flood"].total == sum(FULL.values())


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
    assert f"{sum(FULL.values())} / {sum(FULL.values())}" in (batch["out"] / "feedback" / "zz_solution.md").read_text()


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
    assert "Task 3 timeout" in look["h_loop"]
    assert "zip member(s) refused" in look["h_paths"] and "rejected: not a zip file" in look["h_notazip"]
    nbs = len(list((REPO / "notebooks").glob("*.ipynb")))  # the round trip packs the kit's notebooks, none run
    assert f"notebooks not executed ({nbs} of {nbs})" in look["submission_roundtrip"]
    assert "fid.json" not in look["submission_roundtrip"]  # its fid.json matches the full-smoke profile
    assert "fid.json missing" in look["zz_solution"]
    from grader.summary import headline, summarize

    graded = list(batch["results"].values())
    s = summarize(graded, TASKS)
    assert s["per_task"]["5a"]["passed"] == sum(g.tasks["5a"].points == TASKS["5a"].points for g in graded)
    top_tenth = sum(g.total * 10 >= 9 * sum(FULL.values()) for g in graded)
    assert sum(s["histogram"]) == n and s["histogram"][9] == top_tenth
    lines = headline(s)
    assert len(lines) == 5 and lines[0].startswith(f"graded {n} submission(s): mean")


def test_fork_server_children_hold_no_solution(tmp_path):
    """A run forked by the fork server finds torch already imported, but nothing of the kit or the grader:
    no solution code, no reference, in memory; and it runs in the mode's sandbox (not as root)."""
    work = tmp_path / "w"
    (work / "kit").mkdir(parents=True)
    sandbox.prepare_workdir(work)
    code = ("import sys, os, json; print(json.dumps({'mods': sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'hw3_utils', 'grader', 'sandbox', 'zygote')), 'uid': os.getuid(), 'cwd': os.getcwd()}))")
    zygote = sandbox.Zygote()
    try:
        run = sandbox.Run([sys.executable, "-c", code], work, {"PATH": "/usr/bin:/bin"}, 60, zygote)
        assert run.wait(60) == 0, run.stderr_tail()
        run.close()
        os.close(run.results)
    finally:
        zygote.close()
    got = json.loads(bytes(run.stdout.data).decode())
    assert "torch" in got["mods"]
    assert not [m for m in got["mods"] if not m.startswith("torch")], got["mods"]
    assert got["cwd"] == str(sandbox.kit_path(work))
    want = {"root": sandbox.INNER_UID, "userns": sandbox.INNER_UID}  # "nobody": tests/test_grader_nobody.py
    assert got["uid"] == want.get(sandbox.detect_mode(), os.getuid())


def test_a_batch_removes_the_cgroups_of_a_killed_one():
    """A batch killed by SIGKILL cannot remove its runs' cgroups (named `<its pid>-<run>`): the next batch's
    start does, and leaves those of a live grader alone."""
    if not sandbox.Cgroups.available():
        pytest.fail("no cgroups here: root mode's caps are untested")
    dead = subprocess.Popen(["true"])
    dead.wait()
    cgroups = sandbox.Cgroups()
    cgroups.create(f"{dead.pid}-0")
    cgroups.create("1-999999")  # init's pid: a live process (this one's own the batch sweeps at its end)
    try:
        sandbox.Zygote().close()
        names = {d.name for parent in cgroups.parents.values() for d in parent.iterdir() if d.is_dir()}
        assert f"{dead.pid}-0" not in names and "1-999999" in names
    finally:
        cgroups.remove(f"{dead.pid}-0")
        cgroups.remove("1-999999")


def test_what_a_submission_wrote_cannot_reshape_the_feedback(batch):
    """h_inject's exception message, manifest and fid.json carry newlines, a table row, a heading, HTML, an
    unclosed comment, a link and terminal escapes: none of it starts a line or survives as markup."""
    texts = {"feedback": batch["results"]["h_inject"].markdown(), "summary": (batch["out"] / "summary.md").read_text(),
             "csv": (batch["out"] / "grades.csv").read_text()}
    for name, text in texts.items():
        assert "\x1b" not in text and "<!--" not in text and "<script" not in text, name
        assert not re.search(r"(?<!\\)\]\(javascript", text), name  # an escaped \] starts no link
        assert not [ln for ln in text.splitlines() if ln.startswith(("| fake", "## Fake"))], name
    assert "&lt;script&gt;" in texts["feedback"] and "fake" in texts["feedback"]


def test_malformed_outputs_cost_their_tasks_not_the_batch(batch):
    """h_tensors sent meta, stride-0 (2**50 elements), sparse and complex tensors: every task fails with what was
    wrong, and the batch finished with its grades.csv (this test runs after it)."""
    msgs = {t: message(batch, "h_tensors", t) for t in TASKS}
    assert "meta" in msgs["1"] and "far more than" in msgs["2a"] and "sparse" in msgs["2b"]
    assert "complex64" in msgs["3"] and (batch["out"] / "grades.csv").exists()


def test_hidden_cases_are_no_oracle(batch):
    """h_oracle is right on the public cases and wrong on the hidden ones: it loses the task and learns no
    hidden expected value from the feedback (which Gradescope shows at once)."""
    msg = message(batch, "h_oracle", "4")
    assert msg.startswith("FAIL") and "hidden cases: their values are not shown" in msg
    assert "expected" not in msg and not re.search(r"\d\.\d{3}", msg), msg


def test_grading_sheet_and_similar_code_in_the_batch(batch):
    """make grade writes the written answers' grading sheet (the round trip's notebooks hold answers; a zip
    without notebooks has none) and lists the near-copies among the batch (the mutants are the solution with
    one line changed) under summary.md's similar task code."""
    rows = list(csv.DictReader(open(batch["out"] / "written" / "sheet.csv")))
    assert len(rows) == len(questions()) * len(batch["results"])
    answered = {r["question"]: r["answered"] for r in rows if r["student"] == "submission_roundtrip"}
    assert set(answered.values()) == {"yes"} and len(answered) == len(questions())
    assert {r["answered"] for r in rows if r["student"] == "zz_solution"} == {"no"}
    assert 'id="submission_roundtrip"' in (batch["out"] / "written" / "q05.html").read_text()
    md = (batch["out"] / "summary.md").read_text()
    assert re.search(r"### Similar task code: \d+ pair\(s\)", md)
    assert re.search(r"- `[\w.-]+` and `[\w.-]+`: 100% shared \(\d+ tokens\)", md) and "more pairs" in md


def test_regrading_one_student_replaces_only_their_rows(batch, tmp_path):
    """`make regrade`: h_loop hands in a fixed zip; its rows change, every other row and summary.md stay."""
    out = tmp_path / "grades"
    shutil.copytree(batch["out"], out)
    before = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    summary = (out / "summary.md").read_text()
    one = tmp_path / "one"
    one.mkdir()
    write_zip(one / "h_loop.zip", files())
    res = subprocess.run([sys.executable, "-m", "grader", "grade", str(one), "--out", str(out), "--task-timeout",
                          str(TIMEOUT), "--update"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    after = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    full = str(sum(FULL.values()))
    assert set(after) == set(before) and after["h_loop"]["total"] == full and before["h_loop"]["total"] != full
    assert {s: r for s, r in after.items() if s != "h_loop"} == {s: r for s, r in before.items() if s != "h_loop"}
    assert (out / "summary.md").read_text() == summary and "regraded h_loop" in res.stdout
    sheet = list(csv.DictReader(open(out / "written" / "sheet.csv")))
    assert len(sheet) == len(questions()) * len(before)
    merged = subprocess.run([sys.executable, "-m", "grader", "merge", str(out)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert merged.returncode == 2 and "points '' is not a number" in merged.stderr  # nothing graded by hand yet


def test_a_release_without_the_extension_grades_as_tasks_1_to_5b_alone(tmp_path):
    """`make grade WITHOUT=06` (a release without notebook 06): an honest submission, its files from the full kit,
    gets grades.csv's columns and points of tasks 1-5b alone, and a known mistake of an extension task costs nothing;
    the written half is the ten questions of notebooks 01-05 (20 points)."""
    from grader.release import extension_tasks

    gone = set(extension_tasks())
    core = {t: p for t, p in FULL.items() if t not in gone}
    subs, out = tmp_path / "subs", tmp_path / "grades"
    subs.mkdir()
    write_zip(subs / "honest.zip", files())
    _, m = next((t, m) for t, m in MISTAKES if t.id in gone)
    write_zip(subs / "extension_mistake.zip", {**files(), m.file: patched_source(m)})
    graded = grade_batch_detailed(subs, out, task_timeout=TIMEOUT, startup=120, jobs=2, without=("06",))
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert gone and list(rows[0]) == ["student", *core, "total", "status"]
    assert {r["student"]: {t: int(r[t]) for t in core} for r in rows} == {"extension_mistake": core, "honest": core}
    assert [int(r["total"]) for r in rows] == [100, 100] and {g.total for g in graded} == {100}
    md = (out / "feedback" / "honest.md").read_text()
    assert "Total: **100 / 100**" in md and not any(f"Task {t} " in md for t in gone)
    written = json.loads((out / "written" / "questions.json").read_text())
    assert written["total_points"] == 20 and [q["qid"] for q in written["questions"]] == [
        q.qid for q in questions(without=("06",))]
    assert {r["question"] for r in csv.DictReader(open(out / "written" / "sheet.csv"))} == {
        q["qid"] for q in written["questions"]}
    # a regrade of this class without the option is refused before anything is graded, saying which to pass
    from grader.release import ReleaseError

    with pytest.raises(ReleaseError, match="grade with WITHOUT=06 as the release was made"):
        grade_batch_detailed(subs, out, task_timeout=TIMEOUT, update=True)


def test_zips_whose_names_give_one_id_are_two_students(batch):
    """`h clash.zip` and `h_clash.zip` both become h_clash: each is graded under the id with a short hash of its own
    name, with its own row, feedback and store entry, and both are flagged."""
    rows = [r["student"] for r in csv.DictReader(open(batch["out"] / "grades.csv"))]
    clash = sorted(s for s in rows if s.startswith("h_clash"))
    assert len(clash) == 2 and all(re.fullmatch(r"h_clash_[0-9a-f]{8}", s) for s in clash)
    assert len(set(rows)) == len(rows)
    look = {line.split("**")[1]: line for line in (batch["out"] / "summary.md").read_text().splitlines()
            if line.startswith("- **")}
    store = json.loads((batch["out"] / "written" / "answers.json").read_text())
    for s in clash:
        assert "gives the id h_clash as" in look[s] and s in store
        assert f"graded as {s}" in (batch["out"] / "feedback" / f"{s}.md").read_text()
