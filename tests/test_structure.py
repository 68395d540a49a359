"""Knots that were untangled stay untangled: no import cycle between modules, no name that hides a
module, one description of the machine, notebooks that call the library instead of rebuilding it."""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import nbformat

import hw3_utils

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "hw3_utils"


def _imports(module: str) -> set[str]:
    """Sibling modules a hw3_utils module imports, at any depth of its code."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add(node.module or "")
            if not node.module:
                found |= {a.name for a in node.names}
    return found


def test_no_import_cycles_between_the_modules():
    graph = {p.stem: _imports(p.stem) for p in PKG.glob("*.py") if p.stem != "__init__"}
    for start in graph:
        stack, seen = [start], set()
        while stack:
            for nxt in graph.get(stack.pop(), ()):
                assert nxt != start, f"import cycle through hw3_utils.{start} (via {nxt})"
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
    assert "fid" not in graph["data"]


def test_module_names_are_not_hidden_by_functions():
    for name in ("config", "data", "unet", "diffusion", "train", "fid", "viz", "pipeline"):
        assert isinstance(getattr(hw3_utils, name), types.ModuleType), f"hw3_utils.{name} is not the module"
    assert hw3_utils.train is importlib.import_module("hw3_utils.train")
    assert callable(hw3_utils.train_model) and hw3_utils.train.train_model is hw3_utils.train_model


def test_one_description_of_the_machine():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import _common
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert _common.environment is hw3_utils.pipeline.environment
    env = hw3_utils.pipeline.environment("cpu")
    assert {"device", "device_type", "torch", "python", "host_cores", "date"} <= set(env)


def test_notebook_05_asks_the_library_for_the_samples_folder():
    nb = nbformat.read(ROOT / "notebooks" / "05_sampling_and_fid.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "samples_folder(run)" in code and "samples_{" not in code
