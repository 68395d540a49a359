"""The committed notebooks: the six expected ones (06 the optional extension), valid nbformat 4, no outputs, one
setup cell first, no library code (no def/class), no pinned profile, minimal metadata.

Running them is nbval's job (`make notebooks`); this file only reads them.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ["01_data_prep", "02_unet", "03_forward_diffusion", "04_training", "05_sampling_and_fid", "06_guidance"]
DEFINITION = re.compile(r"^[ \t]*(?:async[ \t]+def|def|class)[ \t]+\w*", re.MULTILINE)
PINNED_PROFILE = re.compile(r"""["'](full|cpu)(-smoke)?["']""")


def _read(name: str):
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=nbformat.NO_CONVERT)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_exactly_the_six_notebooks():
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_valid_nbformat_4(name):
    nb = _read(name)
    assert nb.nbformat == 4
    nbformat.validate(nb)


@pytest.mark.parametrize("name", EXPECTED)
def test_no_outputs_or_execution_counts(name):
    for i, cell in enumerate(_code_cells(_read(name))):
        assert cell.outputs == [], f"{name}.ipynb code cell {i} has outputs: clear them before committing"
        assert cell.execution_count is None, f"{name}.ipynb code cell {i} has an execution count"


@pytest.mark.parametrize("name", EXPECTED)
def test_minimal_metadata(name):
    nb = _read(name)
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, sorted(nb.metadata)  # e.g. no saved widget state
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", EXPECTED)
def test_first_code_cell_is_the_setup_cell(name):
    cells = _code_cells(_read(name))
    first = cells[0].source
    assert re.search(r"\bsetup\(", first), f"{name}.ipynb: the first code cell must call setup("
    for needed in ("REPO_URL", '"google.colab" in sys.modules', "%autoreload 2",
                   "from hw3_utils.notebook import setup"):
        assert needed in first, f"{name}.ipynb setup cell lacks {needed!r}"
    assert not any(re.search(r"\bsetup\(", c.source) for c in cells[1:]), "setup( belongs in the first cell only"


@pytest.mark.parametrize("name", EXPECTED)
def test_no_library_code_in_notebooks(name):
    for i, cell in enumerate(_code_cells(_read(name))):
        match = DEFINITION.search(cell.source)
        assert not match, f"{name}.ipynb code cell {i} defines {match.group(0).strip()!r}: move it to hw3_utils"


@pytest.mark.parametrize("name", EXPECTED)
def test_profile_is_not_pinned(name):
    # the same notebook runs in both profiles without edits: HW3_PROFILE (or an edit by the user) picks it.
    # Only notebook 02 names "full", to check the report's parameter count whatever profile runs.
    for i, cell in enumerate(_code_cells(_read(name))):
        for line in cell.source.splitlines():
            code = line.split("#", 1)[0]  # comments may show the alternatives
            if PINNED_PROFILE.search(code):
                assert name == "02_unet" and 'get_config("full"' in code, f"{name}.ipynb cell {i}: {line.strip()}"


TASK_CHECKS = {"01_data_prep": ["1"], "02_unet": ["2a", "2b"], "03_forward_diffusion": ["3"],
               "04_training": ["4"], "05_sampling_and_fid": ["5a", "5b"], "06_guidance": ["6a", "6b"]}


@pytest.mark.parametrize("name", EXPECTED)
def test_each_task_has_its_check_cell_right_after_its_task_text(name):
    from hw3_utils.checks import TASKS

    cells = _read(name).cells
    found = [(i, m.group(1)) for i, c in enumerate(cells) if c.cell_type == "code"
             for m in [re.search(r'check\("(\w+)"\)', c.source)] if m]
    assert [t for _, t in found] == TASK_CHECKS[name]
    for i, task in found:
        assert TASKS[task].notebook == name
        text = cells[i - 1].source
        assert cells[i - 1].cell_type == "markdown" and f"### Task {task} " in text and TASKS[task].file in text
        assert f"({TASKS[task].points} points)" in text
