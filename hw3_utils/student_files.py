"""Reading a file someone handed in (a notebook, fid.json, manifest.json): bounded and checked before use.

Every reader of a submitted notebook or JSON file goes through here: the grader's notes, flags and written
answers (grader/), the answers and the report (answers.py, report.py), so one malformed file costs only
itself, with a message saying what was wrong, and never an exception out of the reader. What is refused:

- a file over its size cap (NOTEBOOK_BYTES, JSON_BYTES) or that is not UTF-8;
- JSON nested deeper than MAX_DEPTH (measured on the text BEFORE parsing: no recursion is ever entered);
- NaN, Infinity, numbers that overflow a float, integers longer than MAX_INT_DIGITS, duplicate keys, strings
  holding lone surrogates (which no UTF-8 file can hold);
- a notebook that is not nbformat 4 as far as the readers use it (`check_notebook`: a checked subset of
  nbformat's schema, with nbgrader's cell metadata).
"""

from __future__ import annotations

import json
import math

import numpy as np

MiB = 1024 * 1024
NOTEBOOK_BYTES = 20 * MiB  # grader/extract.py's cap on a submitted .ipynb
JSON_BYTES = 64 * 1024  # fid.json, manifest.json
MAX_DEPTH = 64  # an nbformat 4 notebook nests about 8 deep (widget state in metadata somewhat deeper)
MAX_INT_DIGITS = 20
CELL_TYPES = ("code", "markdown", "raw")
OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")
# nbgrader's cell metadata (schema version 3): key -> the types its value may have
NBGRADER_TYPES = {"grade": (bool,), "solution": (bool,), "locked": (bool,), "task": (bool,),
                  "grade_id": (str,), "points": (int, float), "schema_version": (int,)}


class Unreadable(ValueError):
    """A handed-in file that cannot be used; the message says what was wrong with it (for the feedback)."""


_STEP = np.zeros(256, dtype=np.int8)  # what each byte does to the nesting level outside strings
_STEP[[ord("["), ord("{")]], _STEP[[ord("]"), ord("}")]] = 1, -1
_CHUNK = 1 << 22


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text (UTF-8 bytes) nest, brackets inside strings not counted,
    without parsing it: linear in the text whatever it holds, in chunks of 4 MiB. A text json.loads accepts
    never nests deeper; one it refuses may count deeper than json would get before refusing it."""
    data = data.replace(b"\\\\", b"").replace(b'\\"', b"")  # escaped backslashes, then escaped quotes
    inside, level, deepest = False, 0, 0
    for start in range(0, len(data), _CHUNK):
        arr = np.frombuffer(data, dtype=np.uint8, count=min(_CHUNK, len(data) - start), offset=start)
        quote = arr == ord('"')
        quote[0] ^= inside  # the parity of quotes so far: inside a string or not
        parity = np.logical_xor.accumulate(quote)
        steps = _STEP[arr]
        steps = steps[(steps != 0) & ~parity]
        if steps.size:
            levels = np.cumsum(steps, dtype=np.int64)
            deepest = max(deepest, level + int(levels.max()))
            level += int(levels[-1])
        inside = bool(parity[-1])
    return deepest


def read_bytes(path, cap: int) -> bytes:
    """A handed-in file's bytes, at most `cap` of them."""
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as err:
        raise Unreadable(f"cannot be read ({type(err).__name__})") from None
    if len(data) > cap:
        raise Unreadable(f"larger than {cap:,} bytes")
    return data


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Unreadable(f"the number {text[:20]} is beyond a float's range")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Unreadable(f"an integer of {len(text)} digits")
    return int(text)


def _constant(name: str):
    raise Unreadable(f"{name} is not a JSON number")


def _no_duplicates(pairs: list) -> dict:
    """One JSON object's (key, value) pairs as a dict; Unreadable naming the first key that occurs twice. One
    pass over the pairs: an object may hold millions of keys."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Unreadable(f"the key {key[:40]!r} occurs twice in one object")
            seen.add(key)
    return out


def _check_strings(obj) -> None:
    """Every string (key or value) can be written as UTF-8: no lone surrogate from a \\ud800 escape."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack += list(node.keys()) + list(node.values())
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, str) and not node.isascii():
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise Unreadable("a string holds a lone surrogate (\\ud800-\\udfff)") from None


def parse_json(data: bytes | str, max_depth: int = MAX_DEPTH):
    """A JSON text (UTF-8 bytes, or str) as Python objects, or Unreadable saying why not (see the module's
    docstring)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        data = data if isinstance(data, bytes) else data.encode("utf-8")
    except UnicodeError as err:
        raise Unreadable(f"not UTF-8 text (position {err.start})") from None
    depth = json_depth(data)
    if depth > max_depth:
        raise Unreadable(f"nested {depth} deep (more than {max_depth})")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_constant, parse_float=_number,
                         parse_int=_integer)
    except Unreadable:
        raise
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise Unreadable(f"not valid JSON ({str(err)[:80]})") from None
    _check_strings(obj)
    return obj


def load_json(path, cap: int = JSON_BYTES) -> dict:
    """A handed-in JSON file (fid.json, manifest.json) that must hold an object."""
    obj = parse_json(read_bytes(path, cap))
    if not isinstance(obj, dict):
        raise Unreadable(f"holds a JSON {type(obj).__name__}, not an object")
    return obj


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _check_cell(k: int, cell) -> None:
    where = f"cell {k + 1}"
    if not isinstance(cell, dict):
        raise Unreadable(f"{where} is a {_kind(cell)}, not an object")
    if cell.get("cell_type") not in CELL_TYPES:
        raise Unreadable(f"{where}: cell_type {str(cell.get('cell_type'))[:20]!r} is none of {CELL_TYPES}")
    src = cell.get("source", "")
    if not (isinstance(src, str) or isinstance(src, list) and all(isinstance(s, str) for s in src)):
        raise Unreadable(f"{where}: source is a {_kind(src)}, not text or a list of lines")
    meta = cell.get("metadata", {})
    if not isinstance(meta, dict):
        raise Unreadable(f"{where}: metadata is a {_kind(meta)}, not an object")
    nbgrader = meta.get("nbgrader", {})
    if not isinstance(nbgrader, dict):
        raise Unreadable(f"{where}: metadata.nbgrader is a {_kind(nbgrader)}, not an object")
    for key, types in NBGRADER_TYPES.items():
        value = nbgrader.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            raise Unreadable(f"{where}: metadata.nbgrader.{key} is a {_kind(value)}")
    if cell["cell_type"] == "code":
        outputs, count = cell.get("outputs", []), cell.get("execution_count")
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and o.get("output_type") in OUTPUT_TYPES
                                                    for o in outputs):
            raise Unreadable(f"{where}: outputs is not a list of nbformat outputs")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            raise Unreadable(f"{where}: execution_count is a {_kind(count)}")


def check_notebook(nb) -> dict:
    """`nb` (parsed JSON) if it is an nbformat 4 notebook in every field a reader uses, else Unreadable."""
    if not isinstance(nb, dict):
        raise Unreadable(f"holds a JSON {_kind(nb)}, not a notebook")
    if nb.get("nbformat") != 4 or isinstance(nb.get("nbformat"), bool):
        raise Unreadable(f"nbformat {str(nb.get('nbformat'))[:10]}, not 4")
    if not isinstance(nb.get("metadata", {}), dict):
        raise Unreadable("its metadata is not an object")
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise Unreadable(f"cells is a {_kind(cells)}, not a list")
    for k, cell in enumerate(cells):
        _check_cell(k, cell)
    return nb


def parse_notebook(data: bytes | str) -> dict:
    """A notebook's JSON text (UTF-8 bytes, or str), parsed and checked (`check_notebook`)."""
    return check_notebook(parse_json(data))


def load_notebook(path) -> dict:
    """The one way a handed-in notebook is read: bounded, parsed without recursion risk, checked."""
    return parse_notebook(read_bytes(path, NOTEBOOK_BYTES))
