"""The instructor's measurements of the kit: `python -m bench --help` lists them, bench/README.md says how
they record what they measure, and `python -m bench report` turns the records into docs/results.md.

A bench is a module of bench/ (or bench/gpu/, named gpu.NAME) with a `main(argv)`; its docstring's first
paragraph describes it. `benches()` reads them from the sources, so listing them runs none.
"""

from __future__ import annotations

import ast
from pathlib import Path

# hw3_utils before any bench imports torch: it sets how OpenMP threads wait, which libgomp reads once, when
# torch loads it (hw3_utils/_openmp.py); a bench must run as the kit does
import hw3_utils  # noqa: F401

HERE = Path(__file__).resolve().parent
GROUPS = {"": "bench/", "gpu.": "bench/gpu/"}  # name prefix -> folder


def benches() -> dict[str, str]:
    """{name: description} of every module with a main(): bench/*.py, then bench/gpu/*.py as gpu.NAME."""
    found = {}
    for prefix, folder in GROUPS.items():
        for path in sorted((HERE.parent / folder).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if not path.stem.startswith("_") and any(
                    isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
                found[prefix + path.stem] = " ".join((ast.get_docstring(tree) or "").strip().split("\n\n")[0].split())
    return found
