"""Fuzzing every reader of a handed-in file with malformed and hostile notebooks, fid.json and manifests
(hypothesis): nothing raises out of a reader, the grader's records of them can be written, and the checked
subset of nbformat (hw3_utils.student_files) refuses no notebook that nbformat's own schema accepts.

Cases are generated from a fixed seed (derandomize) so CI sees the same ones every time; EXAMPLES says how many
each test draws. The files: mutations of the kit's notebooks and of a valid fid.json and manifest (a value
replaced by one of another type, a key deleted, deep nesting, NaN and Infinity, huge integers, duplicate keys,
lone surrogates, invalid UTF-8 bytes, truncation), and a few explicit extremes (100,000 deep, 20 MB on one line).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import nbformat
import pytest
from fuzz_files import (
    BASE_FID,
    BASE_MANIFEST,
    BASE_METADATA,
    BASE_NOTEBOOK,
    honest_notebooks,
    hostile_bytes,
    json_values,
    mutated,
)
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from grader.batch import flags_of
from grader.extract import (
    Extracted,
    fid_mismatch,
    fid_note,
    manifest_notes,
    notebook_cells,
    notebook_note,
    read_notebooks,
    unreadable,
)
from grader.gradescope import submitter
from grader.render import Graded, passed
from grader.written import write_sheet, written_answers
from hw3_utils import report
from hw3_utils.answers import answers, empty_answers
from hw3_utils.student_files import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    NBGRADER_TYPES,
    Unreadable,
    load_json,
    load_notebook,
    parse_json,
)
from hw3_utils.tasks import TASKS

EXAMPLES = {"notebook": 300, "fid": 150, "manifest": 150, "metadata": 100, "nbformat": 200, "depth": 300}
_FUZZ = settings(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def fuzz(what: str) -> settings:
    return settings(_FUZZ, max_examples=EXAMPLES[what])


def _graded(notes: list[str], flags: list[str], said: dict[str, str]) -> Graded:
    """A record built from what the readers returned, rendered as the batch renders it."""
    g = Graded("fuzzed", "graded", {t: passed(task.points) for t, task in TASKS.items()}, notes, "sandbox", flags, said)
    g.markdown().encode("utf-8")  # the feedback file (utf-8) can hold every note
    return g


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@fuzz("notebook")
@given(data=hostile_bytes(BASE_NOTEBOOK))
@example(data=b"[" * 100_000 + b"]" * 100_000)
@example(data=b'{"cells": {}, "nbformat": 4}')
@example(data=b'{"nbformat": 4, "cells": [{"cell_type": "markdown", "metadata": {"nbgrader": "x"}, "source": 3}]}')
@example(data=b'{"nbformat": 4, "metadata": {}, "cells": [], "x": "' + b"y" * 20_000_000 + b'"}')
def test_every_notebook_reader_survives(folder, data):
    path = _write(folder, "notebooks/fuzzed.ipynb", data)
    try:
        nb = load_notebook(path)
        assert isinstance(nb, dict) and isinstance(nb["cells"], list)
        event("read")
    except Unreadable as err:
        event(f"refused: {str(err).split(' ')[0]}")
    read = read_notebooks({"notebooks/fuzzed.ipynb": path})
    note = notebook_note("notebooks/fuzzed.ipynb", read["notebooks/fuzzed.ipynb"])
    assert note.startswith("notebooks/fuzzed.ipynb: ")
    assert notebook_cells(read["notebooks/fuzzed.ipynb"]) is None or isinstance(read["notebooks/fuzzed.ipynb"], dict)
    said = written_answers(read)
    ex = Extracted(files={"notebooks/fuzzed.ipynb": path})
    flags = flags_of({}, ex, read)
    assert (unreadable(ex.files, read) == ["notebooks/fuzzed.ipynb"]) == isinstance(read["notebooks/fuzzed.ipynb"],
                                                                                     Unreadable)
    _graded([note], flags, said)
    assert isinstance(empty_answers(path.parent), list)
    html = report.build({"fuzzed.ipynb": path}, runs=folder / "no-runs", student="s")
    html.encode("utf-8")


@fuzz("fid")
@given(data=hostile_bytes(BASE_FID))
@example(data=json.dumps(BASE_FID).encode())
@example(data=b'{"profile": "cpu", "num_samples": 1e400}')
def test_every_fid_json_reader_survives(folder, data):
    path = _write(folder, "runs/cpu/fid.json", data)
    note, problem = fid_note("runs/cpu/fid.json", path), fid_mismatch(path)
    assert note.startswith("runs/cpu/fid.json: ") and (problem is None or isinstance(problem, str))
    if data == json.dumps(BASE_FID).encode():
        assert problem is None and "fid_vs_mnist_train = 17.40" in note
    _graded([note], [problem] if problem else [], {})
    report.build({}, runs=folder / "runs", profile="cpu").encode("utf-8")


@pytest.mark.slow
@fuzz("manifest")
@given(data=hostile_bytes(BASE_MANIFEST))
def test_every_manifest_reader_survives(folder, data, tmp_path):
    files = {"manifest.json": _write(folder, "manifest.json", data),
             "hw3_utils/data.py": _write(folder, "hw3_utils/data.py", b"x = 1\n")}
    notes = manifest_notes(files)
    assert all(isinstance(n, str) for n in notes)
    g = _graded(notes, [], {})
    write_sheet([g], tmp_path)


@fuzz("metadata")
@given(data=hostile_bytes(BASE_METADATA))
@example(data=json.dumps(BASE_METADATA).encode())
@example(data=json.dumps({**BASE_METADATA, "created_at": "2026-01-10T12:00:00"}).encode())  # no time zone
def test_gradescope_metadata_reader_survives(folder, data):
    """Gradescope's submission_metadata.json carries what a student typed: whatever it holds, the grader gets a
    safe student id and a line, never an exception."""
    who, line = submitter(_write(folder, "submission_metadata.json", data))
    assert who and set(who) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    if data == json.dumps(BASE_METADATA).encode():
        assert who == "s123" and "2.0 h after the due date**" in line and "late due date" not in line


def _honest(nb) -> bool:
    """What student_files refuses on purpose, beyond nbformat's schema, is absent: nbgrader metadata of other
    types than nbgrader writes, integers past MAX_INT_DIGITS, NaN and infinities, lone surrogates, nesting
    deeper than MAX_DEPTH."""
    for cell in nb.get("cells", []) if isinstance(nb, dict) and isinstance(nb.get("cells"), list) else []:
        meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
        grader = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
        if not isinstance(grader, dict) or any(
                k in grader and grader[k] is not None and (type(grader[k]) not in types) for k, types in
                NBGRADER_TYPES.items()):
            return False
    stack = [(nb, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth >= MAX_DEPTH:
                return False
            stack += [(x, depth + 1) for x in (list(v.keys()) + list(v.values()) if isinstance(v, dict) else v)]
        elif isinstance(v, int) and len(str(abs(v))) > MAX_INT_DIGITS or isinstance(v, float) and not math.isfinite(v):
            return False
        elif isinstance(v, str) and not v.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == v:
            return False
    return True


@fuzz("nbformat")
@given(nb=honest_notebooks() | mutated(BASE_NOTEBOOK))
def test_the_checked_subset_refuses_no_notebook_nbformat_accepts(nb):
    """Honest notebooks are never refused: what nbformat's schema validates (with nbgrader's metadata well typed)
    is read; and what the readers need (cells a list of typed cells) holds for whatever is read."""
    text = json.dumps(nb)
    try:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)), version=4)
        valid = _honest(nb)
    except Exception:
        valid = False
    event(f"nbformat and the readers' assumptions: {'valid' if valid else 'refused'}")
    try:
        got = answers(text, "fuzzed")
    except Unreadable as err:
        assert not valid, f"nbformat accepts it, the checked subset refuses it: {err}"
        return
    assert all(isinstance(a.text, str) and isinstance(a.points, int) for a in got)


@fuzz("depth")
@given(value=json_values, extra=st.integers(0, 3))
def test_depth_is_measured_before_parsing(value, extra):
    """parse_json refuses exactly what nests deeper than MAX_DEPTH, brackets inside strings not counted."""
    for _ in range(MAX_DEPTH - 2 + extra):
        value = [value, "[{\\\"["]
    text = json.dumps(value, allow_nan=True)

    def depth(v) -> int:
        return 1 + max(map(depth, v.values() if isinstance(v, dict) else v), default=0) \
            if isinstance(v, (list, dict)) else 0

    try:
        parse_json(text)
    except Unreadable as err:
        assert "deep" not in str(err) or depth(value) > MAX_DEPTH, err
        return
    assert depth(value) <= MAX_DEPTH


def test_a_valid_fid_json_and_notebook_are_read(tmp_path):
    """The control: an unchanged kit notebook and a fid.json as notebook 05 writes it are read as they are."""
    path = tmp_path / "03.ipynb"
    path.write_text(json.dumps(BASE_NOTEBOOK))
    assert load_notebook(path) == BASE_NOTEBOOK
    (tmp_path / "fid.json").write_text(json.dumps(BASE_FID, indent=2))
    assert load_json(tmp_path / "fid.json") == BASE_FID
