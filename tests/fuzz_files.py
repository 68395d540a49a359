"""Hypothesis strategies of malformed and hostile handed-in files (notebooks, fid.json, manifest.json, a zip's
notebooks), for tests/test_fuzz_student_files.py (every reader, in-process) and tests/test_fuzz_grade.py
(`python -m grader grade`); and the few inputs at full scale that bound each reader's work (`many_keys`,
`unclosed_markers`, `many_notebooks`).
"""

from __future__ import annotations

import copy
import json

from hypothesis import strategies as st

from grader import REPO
from hw3_utils import get_config
from hw3_utils.answers import HINT, MARK_SCHEME, PLACEHOLDER, SOLUTION
from hw3_utils.runfolder import fid_record
from hw3_utils.student_files import MAX_DEPTH

BASE_NOTEBOOK = json.loads((REPO / "notebooks" / "03_forward_diffusion.ipynb").read_text())
BASE_FID = fid_record(get_config("cpu", verbose=False), {"fid_vs_mnist_train": 17.4, "fid_vs_mnist_test": 17.3,
                                                         "fid_floor_test_vs_train": 8.9}, "cpu")
KIT_NOTEBOOKS = sorted(f"notebooks/{p.name}" for p in (REPO / "notebooks").glob("*.ipynb"))
BASE_MANIFEST = {"student": "x", "kit_version": "v1", "files": {"hw3_utils/data.py": "0" * 64}}
BASE_METADATA = {"users": [{"sid": "s123", "email": "ada@uni.edu", "name": "Ada"}],  # Gradescope's
                 "created_at": "2026-01-10T12:00:00+00:00",
                 "assignment": {"due_date": "2026-01-10T10:00:00+00:00", "late_due_date": "2026-01-12T10:00:00+00:00"}}

# any JSON value: wrong types everywhere, NaN and infinities, integers past 64 bits, lone surrogates
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**80, max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(st.characters(exclude_categories=()), max_size=12))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)


@st.composite
def mutated(draw, base):
    """`base` with a few of its values replaced, keys deleted or values wrapped deep; as a Python object."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        parent, key = None, None
        node = obj
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        if parent is None:
            continue
        action = draw(st.sampled_from(["replace", "delete", "wrap"]))
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        else:
            for _ in range(draw(st.integers(1, MAX_DEPTH + 8))):
                node = [node]
            parent[key] = node
    return obj


@st.composite
def hostile_bytes(draw, base):
    """A file's bytes: `base` mutated, then perhaps damaged as text (invalid UTF-8, truncated, a duplicate key,
    a huge integer, deep nesting spliced in)."""
    data = json.dumps(draw(mutated(base)), allow_nan=True).encode()
    damage = draw(st.sampled_from(["none", "bytes", "truncate", "duplicate", "integer", "nesting", "many_keys"]))
    at = draw(st.integers(0, len(data)))
    if damage == "bytes":
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    elif damage == "truncate":
        data = data[:at]
    elif damage == "duplicate" and data.startswith(b"{") and len(data) > 2:
        data = b'{"cells": [], ' + data[1:]
    elif damage == "integer":
        data = data[:at] + b"9" * draw(st.integers(15, 5000)) + data[at:]
    elif damage == "nesting":
        n = draw(st.integers(MAX_DEPTH - 4, 20_000))
        data = data[:at] + b"[" * n + b"]" * draw(st.integers(0, n)) + data[at:]
    elif damage == "many_keys" and data.startswith(b"{") and len(data) > 2:  # and perhaps one of them twice
        data = b"{" + _keys(draw(st.integers(1, 20_000)), draw(st.booleans())) + b", " + data[1:]
    return data


# inputs at full scale: a reader that compares every pair, or rescans the rest for every marker, does about n**2 / 2
# steps on them, where a reader in one pass does about n
def _keys(n: int, duplicate: bool) -> bytes:
    return b", ".join(b'"k%d": 0' % i for i in range(n)) + (b', "k0": 1' if duplicate else b"")


def many_keys(n: int, duplicate: bool = True) -> bytes:
    """A notebook whose metadata holds `n` keys, then (`duplicate`) the first of them again."""
    return b'{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {' + _keys(n, duplicate) + b"}}"


def answer_notebook(sources: dict[str, str]) -> dict:
    """A notebook of answer cells {grade_id: source}, each under its question's prompt."""
    cells = []
    for qid, src in sources.items():
        cells += [{"cell_type": "markdown", "id": f"p{qid}", "metadata": {},
                   "source": f"### Question {int(qid[1:])} · fuzzed (2 points)\nWhy?"},
                  {"cell_type": "markdown", "id": qid, "source": src,
                   "metadata": {"nbgrader": {"grade": True, "solution": True, "grade_id": qid, "points": 2}}}]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def unclosed_markers(n: int) -> str:
    """An answer cell's source: the student's text, then `n` mark-scheme begin markers that no end marker closes."""
    return f"{HINT}\n\nmy answer\n" + f"{MARK_SCHEME[0]}\n" * n


def many_notebooks(n: int, size: int) -> dict[str, bytes]:
    """A zip's members: `n` notebooks that are not the kit's (names the kit's notebooks never have) and every
    notebook of the kit, each a valid notebook of about `size` bytes (a string in its metadata: it compresses to
    almost nothing)."""
    names = [f"notebooks/extra_{k:04d}.ipynb" for k in range(n)] + KIT_NOTEBOOKS
    return {name: b'{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {"x": "' + b"x" * size + b'"}}'
            for name in names}


# answer cells with the kit's markers in any order and number, closed or not
marker_sources = st.lists(st.sampled_from([*MARK_SCHEME, *SOLUTION, HINT, PLACEHOLDER, "text", "\n", "$x$ "]),
                          max_size=60).map("".join)
marked_notebooks = st.dictionaries(st.sampled_from(["q01", "q02", "q04", "q11"]), marker_sources, min_size=1,
                                   max_size=4).map(answer_notebook)
# a zip's notebooks: the kit's and others, of a few sizes (the caps are shrunk where they are tested)
zip_notebooks = st.dictionaries(
    st.sampled_from(KIT_NOTEBOOKS) | st.from_regex(r"notebooks/[A-Za-z0-9_.-]{1,12}\.ipynb", fullmatch=True)
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\0"), min_size=1, max_size=12).map(
        lambda name: f"notebooks/{name}.ipynb"),
    st.integers(0, 3000).map(lambda size: many_notebooks(0, size)[KIT_NOTEBOOKS[0]]), max_size=40)


lines = st.lists(st.text(max_size=30), max_size=4)
metadata = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "nbgrader"),
                           st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(
                               allow_nan=False, allow_infinity=False) | st.text(max_size=10),
                               lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids,
                                                                                         max_size=3), max_leaves=6),
                           max_size=3)
nbgrader = st.fixed_dictionaries({}, optional={"grade": st.booleans(), "solution": st.booleans(),
                                               "locked": st.booleans(), "grade_id": st.text(max_size=8),
                                               "points": st.integers(0, 100) | st.floats(0, 100),
                                               "schema_version": st.just(3)})
outputs = st.one_of(
    st.fixed_dictionaries({"output_type": st.just("stream"), "name": st.sampled_from(["stdout", "stderr"]),
                           "text": lines}),
    st.fixed_dictionaries({"output_type": st.just("display_data"), "metadata": metadata,
                           "data": st.fixed_dictionaries({"text/plain": lines})}),
    st.fixed_dictionaries({"output_type": st.just("execute_result"), "metadata": metadata,
                           "execution_count": st.none() | st.integers(1, 10**6),
                           "data": st.fixed_dictionaries({"text/plain": lines})}),
    st.fixed_dictionaries({"output_type": st.just("error"), "ename": st.text(max_size=9),
                           "evalue": st.text(max_size=9), "traceback": lines}))


@st.composite
def honest_notebooks(draw) -> dict:
    """Notebooks nbformat 4.5's schema accepts: every kind of cell and output, any source, metadata of any
    shape (nbgrader's well typed)."""
    cells = []
    for k in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["code", "markdown", "raw"]))
        meta = draw(metadata)
        if kind == "markdown" and draw(st.booleans()):
            meta["nbgrader"] = draw(nbgrader)
        cell = {"cell_type": kind, "id": f"c{k}", "metadata": meta, "source": draw(st.text(max_size=40) | lines)}
        if kind == "code":
            cell.update(outputs=draw(st.lists(outputs, max_size=3)),
                        execution_count=draw(st.none() | st.integers(1, 999)))
        cells.append(cell)
    return {"cells": cells, "metadata": draw(metadata), "nbformat": 4, "nbformat_minor": 5}
