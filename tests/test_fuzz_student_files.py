"""Fuzzing every reader of a handed-in file with malformed and hostile notebooks, fid.json and manifests
(hypothesis): nothing raises out of a reader, the grader's records of them can be written, and the checked
subset of nbformat (hw3_utils.student_files) refuses no notebook that nbformat's own schema accepts.

Cases are generated from a fixed seed (derandomize) so CI sees the same ones every time; EXAMPLES says how many
each test draws. The files: mutations of the kit's notebooks and of a valid fid.json and manifest (a value
replaced by one of another type, a key deleted, deep nesting, NaN and Infinity, huge integers, duplicate keys,
lone surrogates, invalid UTF-8 bytes, truncation, many keys and a duplicate), answer cells with the kit's markers in
any number and order, a zip's notebooks (the kit's and others), and a few explicit extremes (100,000 deep, 20 MB on
one line).

How much work a reader does is bounded by counts, never by a clock: each reader is run on an input of MANY keys or
markers, where a reader that compares every pair or rescans the rest for every marker does about MANY**2 / 2 steps
(and this suite would not end), and the work that matters (images decoded, bytes written) is counted.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import nbformat
import pytest
from fuzz_files import (
    BASE_FID,
    BASE_MANIFEST,
    BASE_METADATA,
    BASE_NOTEBOOK,
    KIT_NOTEBOOKS,
    answer_notebook,
    honest_notebooks,
    hostile_bytes,
    json_values,
    many_keys,
    many_notebooks,
    marked_notebooks,
    mutated,
    unclosed_markers,
    zip_notebooks,
)
from hostile import write_zip
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from grader import extract
from grader.batch import flags_of
from grader.extract import (
    Extracted,
    fid_mismatch,
    fid_note,
    manifest_notes,
    notebook_cells,
    notebook_note,
    read_notebooks,
    safe_extract,
    unreadable,
)
from grader.gradescope import submitter
from grader.render import Graded, passed
from grader.written import write_sheet, written_answers
from hw3_utils import report
from hw3_utils.answers import (
    HINT,
    MARK_SCHEME,
    PLACEHOLDER,
    SOLUTION,
    TEXT_CHARS,
    answers,
    empty_answers,
    instructor_parts,
)
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

EXAMPLES = {"notebook": 300, "fid": 150, "manifest": 150, "metadata": 100, "nbformat": 200, "depth": 300,
            "markers": 200, "zip": 60}
MANY = 400_000  # keys or markers of the full-scale inputs (a few MB, well within a notebook's cap)
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


# how much work each reader does: inputs at full scale, and counts -----------------------------------------------
def test_a_duplicate_after_many_keys_is_found_in_one_pass():
    """Many keys plus a duplicate: the check for a key that occurs twice passes over the keys once."""
    with pytest.raises(Unreadable, match="the key 'k0' occurs twice"):
        parse_json(many_keys(MANY))
    assert len(parse_json(many_keys(MANY, duplicate=False))["metadata"]) == MANY


def test_unclosed_mark_scheme_markers_are_stripped_in_one_pass():
    """Unclosed mark-scheme markers in an answer cell: the student's text is read, the markers kept as text (no
    region closes), and a later end marker closes the first region, whatever the number of markers."""
    src = unclosed_markers(MANY)
    [a] = answers(json.dumps(answer_notebook({"q01": src})), "fuzzed")
    assert a.text.startswith(f"my answer\n{MARK_SCHEME[0]}") and len(a.text) == TEXT_CHARS
    [a] = answers(answer_notebook({"q01": src + MARK_SCHEME[1] + " after"}), "fuzzed")
    assert a.text == "my answer\n after"
    assert written_answers({"notebooks/x.ipynb": answer_notebook({"q01": src})})["q01"].startswith("my answer")
    model, rubric = instructor_parts(f"{SOLUTION[0]}\nthe model\n{src}{SOLUTION[1]}")
    assert model.startswith(f"the model\n{HINT}") and rubric == ""


def _stripped(src: str) -> str:
    """answer_text's reference: the rubric regions removed by a regex, then the markers and the hint."""
    text = re.sub(re.escape(MARK_SCHEME[0]) + ".*?" + re.escape(MARK_SCHEME[1]), "", src, flags=re.S)
    for marker in (*SOLUTION, HINT, PLACEHOLDER):
        text = text.replace(marker, "")
    return text.strip()[:TEXT_CHARS]


@fuzz("markers")
@given(nb=marked_notebooks)
@example(nb=answer_notebook({"q01": MARK_SCHEME[0] * 3 + "x" + MARK_SCHEME[1] * 2 + MARK_SCHEME[0]}))
def test_answer_cells_with_any_markers_read_as_a_regex_reads_them(nb):
    """The one-pass stripper against a regex on short texts: the same answers, the same model and rubric."""
    got = {a.qid: a.text for a in answers(json.dumps(nb), "fuzzed")}
    for cell in nb["cells"][1::2]:
        src = cell["source"]
        assert got[cell["id"]] == _stripped(src), src
        m = re.search(re.escape(SOLUTION[0]) + "(.*?)" + re.escape(SOLUTION[1]), src, re.S)
        region = m.group(1).strip() if m else ""
        rubric = re.search(re.escape(MARK_SCHEME[0]) + "(.*?)" + re.escape(MARK_SCHEME[1]), region, re.S)
        model = re.sub(re.escape(MARK_SCHEME[0]) + ".*?" + re.escape(MARK_SCHEME[1]), "", region, flags=re.S)
        assert instructor_parts(src) == (model.strip(), rubric.group(1).strip() if rubric else ""), src


def _on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_many_notebooks_extract_the_kits_alone_within_the_total(tmp_path, monkeypatch):
    """Many notebooks: 150 the kit has not (refused, each counted, in one note) and the kit's own, of 1 MiB each,
    with the total cap shrunk to 3.5 MiB: the task file (zipped last) and three of the kit's notebooks are
    extracted, the others refused; the bytes written are those counted, within the cap."""
    monkeypatch.setattr(extract, "MAX_TOTAL_BYTES", 3 * 2**20 + 2**19)
    members = {**many_notebooks(150, 2**20), "hw3_utils/data.py": b"x = 1\n"}
    ex = safe_extract(write_zip(tmp_path / "many.zip", members), tmp_path / "x")
    assert ex.fatal is None and len(ex.files) == 4 and "hw3_utils/data.py" in ex.files
    assert set(ex.files) - {"hw3_utils/data.py"} <= set(KIT_NOTEBOOKS)
    assert ex.refused == 150 + len(KIT_NOTEBOOKS) - 3
    foreign = [n for n in ex.notes if "not one of the kit's notebooks" in n]  # one note names three, counts the rest
    assert len(foreign) == 1 and "and 147 more" in foreign[0]
    assert sum("MiB one submission's files may hold" in n for n in ex.notes) == len(KIT_NOTEBOOKS) - 3
    assert _on_disk(tmp_path / "x") == ex.size <= extract.MAX_TOTAL_BYTES
    assert all(isinstance(nb, dict) for nb in read_notebooks(ex.files).values())


@fuzz("zip")
@given(members=zip_notebooks)
def test_a_zips_notebooks_are_the_kits_within_the_caps(tmp_path_factory, monkeypatch, members):
    """Whatever notebooks a zip holds: only the kit's are extracted, every other is refused and counted, and the
    bytes written stay within the total (shrunk here to a few notebooks' worth)."""
    monkeypatch.setattr(extract, "MAX_TOTAL_BYTES", 6000)
    root = tmp_path_factory.mktemp("zip")
    ex = safe_extract(write_zip(root / "s.zip", members), root / "x")
    kit = [n for n in members if n in KIT_NOTEBOOKS]
    assert set(ex.files) <= set(kit) and ex.refused == len(members) - len(ex.files)
    assert _on_disk(root / "x") == ex.size <= 6000
    event(f"{len(ex.files)} of {len(kit)} kit notebooks extracted")
