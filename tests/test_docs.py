"""The docs: every relative link resolves, each page keeps to its audience and size, and the "where to
change what" table names symbols that exist in the files it links."""

from __future__ import annotations

import re

import pytest
from doc_checks import HISTORY, broken_links, relative_links, results_history

from grader import REPO

PAGES = [REPO / "README.md", REPO / "notebooks" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
KNOBS = ("the sampler", "the noise schedule", "a task's tolerance", "a sandbox limit", "a profile's size")


def test_every_relative_link_resolves():
    assert len(PAGES) > 5 and all(p.is_file() for p in PAGES)
    assert broken_links(PAGES, REPO) == []


def test_link_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "real.md").write_text("x\n")
    page.write_text("[ok](../real.md#part) [web](https://x.org/a.md) [top](#page) `[code](missing.md)`\n"
                    "![img](img/missing.png) [outside](../../elsewhere.md)\n")
    assert relative_links(page) == ["../real.md", "img/missing.png", "../../elsewhere.md"]
    assert broken_links([page], tmp_path) == ["docs/page.md: img/missing.png", "docs/page.md: ../../elsewhere.md"]


def test_readme_is_an_entry_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    assert "make run" in text and "make test" in text and re.search(r"!\[[^\]]*\]\(docs/img/", text)
    for page in ("docs/students.md", "docs/instructors.md", "docs/developers.md", "docs/decisions/README.md"):
        assert f"]({page}" in text, page
    assert "](docs/developers.md#where-to-change-what)" in text  # two clicks to every knob


def test_where_to_change_what_names_real_symbols():
    """Each row of developers.md's table links a file that defines every symbol the row names."""
    text = (REPO / "docs" / "developers.md").read_text()
    assert "\n## Where to change what\n" in text
    table = text.split("\n## Where to change what\n", 1)[1].split("\n## ", 1)[0]
    rows = {r.split("|")[1].strip(): r for r in table.splitlines() if r.startswith("| ") and "---" not in r}
    assert set(KNOBS) <= set(rows)
    for knob, row in rows.items():
        if knob == "to change":
            continue
        cells = row.split("|")
        path = REPO / "docs" / re.search(r"\]\(([^)#]+)\)", cells[2]).group(1)
        source = path.read_text()
        symbols = re.findall(r"`([A-Za-z_][\w.]*)", cells[3])
        assert symbols, knob
        for name in (part for s in symbols for part in s.split(".")):
            assert re.search(rf"\b{re.escape(name)}\b", source), f"{knob}: {name} is not in {path.name}"


def test_student_page_fits_the_release_and_holds_no_history():
    text = (REPO / "docs" / "students.md").read_text()
    assert len(text.splitlines()) <= 200
    assert results_history(text) == []
    for needed in ("make lab", "Colab", 'check("3")', "PASS", "make report", "make submit", "## Troubleshooting"):
        assert needed in text, needed


@pytest.mark.parametrize("line, what", [
    ("| walk | 2026-12-03 | 17.39 |", "a date"),
    ("passed, 32.6 min in a fresh-clone rehearsal of e318877", "a CI rehearsal"),
    ("The walk before (4e23354): no cell raised", "a student walk"),
    ("the profile of this version trains faster", "a version or run compared with an earlier one"),
    ("measured on a clone of 7e55428", "a commit"),
    ("on a 2-core AMD EPYC", "the machine of a measurement"),
    ("| training | 353.9 s |", "a measurement in a table"),
    ("| cpu profile | FID-1k 17.39 |", "a measurement in a table"),
])
def test_results_history_is_found(line, what):
    found = results_history(f"a clean line\n{line}\n")
    assert len(found) == 1 and found[0].startswith("line 2") and what in found[0], found


def test_results_history_leaves_plain_prose_alone():
    clean = ("| 3 | `q_sample`, eq. 4 | `diffusion.py` `DDPM.q_sample` | 15 | 03 |\n"
             "Training takes about ten minutes; 50 of the 1000 timesteps; values in [-1, 1]; the report's 5.77.\n"
             "The shape walk 28 -> 14 -> 7 (`shape_walk`); lr 1e-3; deadbeef is a word, 1234567 a number.\n")
    assert results_history(clean) == []


def test_no_page_compares_with_an_earlier_version():
    versions = HISTORY["a version or run compared with an earlier one"]
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), start=1):
            assert not versions.search(line), f"{page.relative_to(REPO)}:{n}: {line}"


def test_changelog_keeps_a_changelog():
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "\n## [Unreleased]\n" in text
    sections = re.findall(r"^### (\w+)$", text.split("\n## [Unreleased]\n", 1)[1].split("\n## ", 1)[0], re.M)
    assert sections and set(sections) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
