"""`make release`: the student kit has stubs instead of solutions, no instructor files, and works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from doc_checks import broken_links, results_history

from grader import REPO
from grader.release import (
    PLACEHOLDER_PATH,
    PLACEHOLDER_URL,
    STUDENT_DOCS,
    MarkerError,
    ReleaseError,
    has_solution,
    make_release,
    solution_regions,
)
from hw3_utils.checks import TASKS

pytestmark = pytest.mark.slow
URL = "https://github.com/acme-univ/ddpm-hw3.git"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_release(tmp_path_factory.mktemp("kit") / "release", quiet=True, repo_url=URL)


def _env(release: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW3_")}
    env.update(PYTHONPATH=str(release), OMP_NUM_THREADS="1")
    return env


def test_solution_bodies_are_absent(release):
    regions = solution_regions()
    assert {t for _, t, _ in regions} == set(TASKS)
    assert sum(1 for _, t, _ in regions if t == "2b") >= 2  # Block.forward and UNet.forward
    for rel, task, body in regions:
        text = (release / rel).read_text()
        assert body.strip() and body not in text, f"the solution of task {task} is still in {rel}"
        if rel.endswith(".py"):
            assert f"Task {TASKS[task].number} ({TASKS[task].name}" in text
    for path in release.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".ipynb"):
            assert not has_solution(path.read_text(), path.suffix == ".ipynb"), path
    for path in (release / "hw3_utils" / "tasks").glob("task_*.py"):  # hidden cases, references, patches
        text = path.read_text()
        assert "BEGIN HIDDEN TESTS" not in text and "MISTAKES = (" not in text and "def reference(" not in text
    assert "seed=611" not in (release / "hw3_utils" / "tasks" / "task_5b.py").read_text()  # a hidden case's spec


def test_instructor_files_are_left_out(release):
    names = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert not any(n.startswith(("grader/", ".ci/", "bench/")) for n in names)
    assert sorted(n for n in names if n.startswith("tests/")) == ["tests/test_tasks.py"]
    docs = {n for n in names if n.startswith("docs/")}
    assert docs and all(n.startswith(STUDENT_DOCS) for n in docs)
    assert {"docs/students.md", "docs/decisions/README.md", "docs/img/student_03_check_passes.png"} <= docs
    assert not {"docs/instructors.md", "docs/developers.md"} & docs and "CHANGELOG.md" not in names
    assert {"Makefile", "README.md", "pyproject.toml", "hw3_utils/check_data.pt", "hw3_utils/checks.py",
            "hw3_utils/tasks/task_5b.py",
            "hw3_utils/submit.py", "RELEASE.json"} <= names
    assert (release / "hw3_utils" / "check_data.pt").read_bytes() == (REPO / "hw3_utils" / "check_data.pt").read_bytes()
    info = json.loads((release / "RELEASE.json").read_text())
    assert info["total_points"] == sum(t.points for t in TASKS.values()) and set(info["tasks"]) == set(TASKS)
    assert info["version"] and info["without"] == []


def test_release_imports_lints_and_fails_once_per_task(release, tmp_path):
    env = _env(release)
    res = subprocess.run([sys.executable, "-c", "import hw3_utils, hw3_utils.checks; print(hw3_utils.__file__)"],
                         cwd=release, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).resolve().is_relative_to(release.resolve())
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "hw3_utils", "tests"], cwd=release,
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    junit = tmp_path / "junit.xml"
    res = subprocess.run([sys.executable, "-m", "pytest", "tests", "-m", "not browser", "-q", "-p", "no:cacheprovider",
                          f"--junitxml={junit}"], cwd=release, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stdout[-3000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    failures = {}
    for case in cases:
        fail = case.find("failure")
        assert fail is not None, f"{case.get('name')} passed on the stub kit"
        failures[case.get("name")] = fail.get("message", "") + (fail.text or "")
    assert sorted(failures) == sorted(f"test_task[task_{t}]" for t in TASKS)
    for tid, task in TASKS.items():
        msg = failures[f"test_task[task_{tid}]"]
        assert f"{task.label}: not implemented yet" in msg, msg[:500]


def test_make_test_stages(release):
    def stages(cwd, target="test"):
        out = subprocess.run(["make", "-n", target], cwd=cwd, capture_output=True, text=True, check=True).stdout
        found = []
        for line in out.splitlines():
            for name, key in (("lint", "ruff check"), ("unit", 'pytest tests -m "not browser and not quality"'),
                              ("unit-fast", 'pytest tests -m "not browser and not quality and not slow"'),
                              ("notebooks", "--nbval-lax"), ("browser", "pytest tests -m browser"),
                              ("quality", "pytest tests/quality -m quality")):
                if key in line:
                    found.append(name)
        return found

    assert stages(REPO) == ["lint", "unit", "notebooks", "browser"]
    assert stages(release) == ["lint", "unit", "notebooks"]
    assert stages(REPO, "unit-fast") == stages(release, "unit-fast") == ["unit-fast"]
    assert stages(REPO, "quality") == ["quality"]  # CI's learning gate (.ci/run)
    for target in ("release", "quality"):  # grader.mk's targets vanish from the student kit
        assert subprocess.run(["make", "-n", target], cwd=release, capture_output=True, text=True).returncode != 0


def test_release_writes_the_repo_url_and_a_student_readme(release):
    for nb in sorted((release / "notebooks").glob("*.ipynb")):
        setup = "".join(json.loads(nb.read_text())["cells"][1]["source"])
        assert f'REPO_URL = "{URL}"' in setup and PLACEHOLDER_URL not in nb.read_text(), nb.name
    links = (release / "notebooks" / "README.md").read_text()
    assert "colab.research.google.com/github/acme-univ/ddpm-hw3/blob/main/notebooks/" in links
    assert PLACEHOLDER_PATH not in links
    assert json.loads((release / "RELEASE.json").read_text())["repo_url"] == URL
    readme = (release / "README.md").read_text()
    assert readme.startswith((REPO / "docs" / "students.md").read_text().split("\n", 1)[0])  # the student page
    assert "| task | what you write |" in readme and "](docs/img/student_03_check_passes.png)" in readme
    assert "make submit" in readme and "Colab" in readme and "python -m hw3_utils.checks" in readme
    assert "colab.research.google.com/github/acme-univ/ddpm-hw3/blob/main/notebooks/01_data_prep.ipynb" in readme
    assert PLACEHOLDER_PATH not in readme
    for instructor in ("### For instructors", "make gradescope", "grader/sandbox.py", "### Tolerances",
                       "INSTRUCTOR -->", "make grade SUBMISSIONS", "hostile", "grade_speed", "grader/ ",
                       "bench/ ", "bash .ci/run", "Changes to the public API", "grades.csv", "test_student_walk"):
        assert instructor not in readme, instructor


def test_release_refuses_a_missing_or_malformed_url(tmp_path, student_release):
    for bad in (None, "", "https://github.com/YOUR-ORG/hw3-ddpm-kit.git", "not a url", 'https://x/"y'):
        with pytest.raises(ReleaseError, match="REPO_URL|git URL"):
            make_release(tmp_path / "out", quiet=True, repo_url=bad)
    assert not (tmp_path / "out").exists()
    res = subprocess.run(["make", "release", "REPO_URL="], cwd=REPO, capture_output=True, text=True)
    assert res.returncode != 0 and "REPO_URL=none" in res.stderr
    local = student_release  # REPO_URL=none: the placeholders kept, said so
    assert PLACEHOLDER_URL in (local / "notebooks" / "01_data_prep.ipynb").read_text()


def test_release_readme_is_short_and_holds_no_results_history(release):
    """The student's README: at most 200 lines, none with a date, a CI rehearsal, a student walk, a commit, the
    machine of a measurement, a comparison with an earlier version, or a measured time or FID in a table
    (tests/doc_checks.py); and every relative link of the kit's Markdown pages points into the kit."""
    readme = (release / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert results_history(readme) == []
    pages = sorted(release.rglob("*.md"))
    assert release / "README.md" in pages and release / "notebooks" / "README.md" in pages
    assert broken_links(pages, release) == []


def test_release_refuses_bad_markers(tmp_path):
    root = tmp_path / "kit"
    (root / "hw3_utils").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "hw3_utils"\nversion = "0.1.0"\n')
    (root / "hw3_utils" / "a.py").write_text("x = 1\n    ### END SOLUTION\n")
    out = tmp_path / "out"
    with pytest.raises(MarkerError, match=r"hw3_utils/a\.py:2"):
        make_release(out, root=root, quiet=True, repo_url="none")
    assert not out.exists()
    (root / "hw3_utils" / "a.py").write_text("x = 1\n")
    with pytest.raises(MarkerError, match="no solution region found"):
        make_release(out, root=root, quiet=True, repo_url="none")
    assert not out.exists()


def test_make_release_refuses_notebooks_that_still_hold_expected_placeholders(tmp_path, monkeypatch):
    root = tmp_path / "kit"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "hw3_utils"\nversion = "0.1.0"\n')
    cells = [{"cell_type": "markdown", "id": "06-17", "metadata": {}, "source": ["| 2 | EXPECTED(acc@w=2) |\n"]},
             {"cell_type": "markdown", "metadata": {}, "source": "FID EXPECTED(fid)"}]
    (root / "notebooks" / "06_guidance.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}}))
    (root / "notebooks" / "05_sampling_and_fid.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
    out = tmp_path / "out"
    with pytest.raises(ReleaseError, match=r"notebooks/06_guidance\.ipynb cell 06-17; notebooks/06_guidance\.ipynb "
                                           r"cell 2: still EXPECTED\(\.\.\.\) placeholders"):
        make_release(out, root=root, quiet=True, repo_url="none", measured=True)
    assert not out.exists()
    # left out with its notebook, or not asked for (the tests' kits): the release goes on, to the missing regions
    for kw in (dict(measured=True, without="06"), dict()):
        with pytest.raises(MarkerError, match="no solution region found"):
            make_release(out, root=root, quiet=True, repo_url="none", **kw)
    seen = {}
    monkeypatch.setattr("grader.release.make_release", lambda *a, **kw: seen.update(kw))
    from grader.__main__ import main

    assert main(["release", "--out", str(out), "--repo-url", "none"]) == 0 and seen["measured"] is True


FIRST_TASK = {"01_data_prep": "1", "02_unet": "2a", "03_forward_diffusion": "3", "04_training": "4",
              "05_sampling_and_fid": "5a", "06_guidance": "6a"}


@pytest.mark.parametrize("name", list(FIRST_TASK))
def test_release_notebook_runs_up_to_its_first_task_and_stops_with_its_message(release, name, tmp_path,
                                                                              monkeypatch, data_dir):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for key in [k for k in os.environ if k.startswith("HW3_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PYTHONPATH", str(release))  # the kernel imports the release's hw3_utils
    monkeypatch.setenv("HW3_PROFILE", "full-smoke")
    monkeypatch.setenv("HW3_DATA_DIR", data_dir)
    monkeypatch.setenv("HW3_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(release / "notebooks" / f"{name}.ipynb", as_version=4)
    task = TASKS[FIRST_TASK[name]]
    check_at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and f'check("{task.id}")' in c.source)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(release / "notebooks")}})
    with pytest.raises(CellExecutionError) as err:
        client.execute()
    message = str(err.value)
    assert f"{task.label}: not implemented yet" in message and task.hint[:40] in message, message[-2000:]
    ran = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count")]
    assert ran and max(ran) == check_at, f"stopped at cell {max(ran)}, the task's check is cell {check_at}"
    where = [o.text for o in nb.cells[1].outputs if o.output_type == "stream"]
    assert "profile 'full-smoke'" in "".join(where)


def test_release_names_where_students_download_the_fid_statistics(tmp_path, student_release):
    import hashlib

    stats = tmp_path / "stats"
    stats.mkdir()
    for k, name in enumerate(("mnist_train_all.npz", "mnist_test_all.npz", "mnist_digits_all.pt")):
        (stats / name).write_bytes(f"stand-in {k}".encode())  # the digit classifier is uploaded beside them
    url = "https://course.example.edu/hw3/fid"
    kit = make_release(tmp_path / "kit", quiet=True, repo_url="none", fid_stats_url=url, fid_stats_dir=stats)
    src = json.loads((kit / "hw3_utils" / "fid_references.json").read_text())
    assert src["url"] == url
    assert src["sha256"] == {n: hashlib.sha256((stats / n).read_bytes()).hexdigest() for n in src["sha256"]}
    assert sorted(src["sha256"]) == ["mnist_digits_all.pt", "mnist_test_all.npz", "mnist_train_all.npz"]
    assert json.loads((kit / "RELEASE.json").read_text())["fid_stats_url"] == url
    with pytest.raises(ReleaseError, match="mnist_test_all.npz"):  # it will not publish hashes it cannot compute
        (stats / "mnist_test_all.npz").unlink()
        make_release(tmp_path / "kit2", quiet=True, repo_url="none", fid_stats_url=url, fid_stats_dir=stats)
    plain = student_release
    assert json.loads((plain / "hw3_utils" / "fid_references.json").read_text()) == {"url": None, "sha256": {}}


def test_release_strips_an_answer_cell_as_nbgrader_does():
    from grader.release import strip_answer
    from hw3_utils.answers import HINT, MARK_SCHEME, PLACEHOLDER, SOLUTION

    model, rubric = "A model answer.", "- 1 point: a rubric."
    cell = f"{HINT}\n\n{SOLUTION[0]}\n{model}\n\n{MARK_SCHEME[0]}\n{rubric}\n{MARK_SCHEME[1]}\n{SOLUTION[1]}\nafter"
    assert strip_answer(cell, "q") == f"{HINT}\n\n{PLACEHOLDER}\nafter"
    outside = f"{HINT}\n{SOLUTION[0]}\n{model}\n{SOLUTION[1]}\n{MARK_SCHEME[0]}\n{rubric}\n{MARK_SCHEME[1]}"
    with pytest.raises(MarkerError, match="must lie inside"):
        strip_answer(outside, "q")
    with pytest.raises(MarkerError, match="needs one"):
        strip_answer(f"{HINT}\n{SOLUTION[0]}\n{model}\n{SOLUTION[1]}", "q")


def test_a_release_without_the_extension_has_no_trace_of_it(tmp_path):
    from grader.release import extension_tasks, left_out

    kit = make_release(tmp_path / "kit", quiet=True, repo_url="none", without="06")
    gone = extension_tasks()
    names = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()}
    assert gone and not {n for n in names if n.startswith("notebooks/06_")}
    assert not {TASKS[t].file for t in gone} & names and not {f"hw3_utils/tasks/task_{t}.py" for t in gone} & names
    assert not any(left_out(n, ("06",)) for n in names)
    info = json.loads((kit / "RELEASE.json").read_text())
    assert set(info["tasks"]) == set(TASKS) - set(gone) and info["total_points"] == 100 and info["without"] == ["06"]
    res = subprocess.run([sys.executable, "-c", "from hw3_utils.checks import TASKS; print(' '.join(TASKS))"],
                         cwd=kit, env=_env(kit), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.split() == [t for t in TASKS if t not in gone], res.stderr
    pages = sorted(kit.rglob("*.md"))  # the Markdown pages say nothing of it, and every link still lands
    assert broken_links(pages, kit) == [] and not [p for p in pages if "06_guidance" in p.read_text()]
    with pytest.raises(ReleaseError, match="07 is not an optional extension.*06"):
        make_release(tmp_path / "kit2", quiet=True, repo_url="none", without="07")


def test_a_pages_extension_block_is_kept_or_dropped_whole():
    from grader.release import strip_extensions

    page = "a\n<!-- extension 06 -->\nabout 06\n\n| 6a | 5 |\n<!-- /extension 06 -->\nb\n"
    assert strip_extensions(page) == "a\nabout 06\n\n| 6a | 5 |\nb\n"  # the markers go, the block stays
    assert strip_extensions(page, ("06",)) == "a\nb\n"
    for bad, where in (("<!-- extension 06 -->\nx\n", "p.md:1: .*never closed"), ("<!-- /extension 06 -->\n",
                       "p.md:1: .*closes no block"), ("<!-- extension 07 -->\n", "p.md:1: .*names no extension"),
                       ("<!-- extension 06 -->\n<!-- extension 06 -->\n", "p.md:2: .*inside the block")):
        with pytest.raises(MarkerError, match=where):
            strip_extensions(bad, ("06",), "p.md")
