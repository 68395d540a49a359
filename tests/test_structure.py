"""Knots that were untangled stay untangled: no import cycle between modules, no name that hides a
module, one description of the machine, notebooks that call the library instead of rebuilding it."""

from __future__ import annotations

import ast
import importlib
import re
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


def test_each_task_lives_in_its_own_module():
    # the modules that run, strip, grade and report tasks name no task: they iterate over the registry
    from hw3_utils.tasks import TASKS

    ids = set(TASKS) - {"1"}  # "1" is also a value of OMP_NUM_THREADS and the like
    for path in [PKG / "checks.py", *sorted((ROOT / "grader").glob("*.py"))]:
        literals = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
                    and isinstance(n.value, str)}
        assert not literals & ids, f"{path.name} names task(s) {sorted(literals & ids)}"
    for t in TASKS.values():
        assert (PKG / "tasks" / f"task_{t.id}.py").is_file()


def test_sample_shows_algorithm_2s_loop_and_fast_is_split():
    import inspect

    src = inspect.getsource(hw3_utils.DDPM.sample)
    assert "self.p_sample(net, x, t, generator)" in src and "for i, t in enumerate(" in src
    assert not (PKG / "fast.py").exists() and (PKG / "cuda_graphs.py").exists()
    fields = {f for f in hw3_utils.Config().to_dict()}
    assert {"tensor_data", "cuda_graphs"} <= fields and "fast" not in fields


def _code(source: str) -> str:
    """A notebook cell's Python, its IPython magics and shell lines commented out."""
    return "\n".join("#" + ln if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def _string_constants(tree: ast.AST):
    """(line, text) of every string constant in code, docstrings left out (they may describe the layout)."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def _names_a_run_folder_path(text: str) -> bool:
    """True when a piece of the string, between slashes, is a run-folder name or one of its name patterns."""
    from hw3_utils import runfolder as rf

    names = {rf.CONFIG_JSON, rf.CHECKPOINTS, rf.FID_JSON, rf.PREVIEWS, rf.FID_CACHE, *(f"{f}.png" for f in rf.FIGURES)}
    prefixes = (rf.SAMPLES_PREFIX, rf.CHECKPOINT_GLOB.split("*")[0], "epoch_")  # samples_*, step_*.pt, epoch_NNN.png
    pattern = re.compile(rf"({'|'.join(map(re.escape, prefixes))})([*\d].*)?")
    return any(part in names or pattern.fullmatch(part) for part in re.split(r"[/\\]", text))


# where a literal names something else that happens to share a run folder's name
NOT_THE_RUN_FOLDER = {("hw3_utils/fid.py", "checkpoints"): "torch hub's folder of downloaded weights"}


def test_run_folder_paths_come_only_from_runfolder():
    """No file or folder name of the run folder is spelled outside hw3_utils/runfolder.py: the library, the grader,
    the bench and the notebooks' code ask it (tests may spell them, to check the layout from outside)."""
    sources = [p for d in ("hw3_utils", "grader", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    found = []
    for path in sources:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "hw3_utils/runfolder.py":
            continue
        for line, text in _string_constants(ast.parse(path.read_text(encoding="utf-8"))):
            if _names_a_run_folder_path(text) and (rel, text) not in NOT_THE_RUN_FOLDER:
                found.append(f"{rel}:{line}: {text!r}")
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for k, cell in enumerate(nbformat.read(nb_path, as_version=4).cells):
            if cell.cell_type == "code":
                for line, text in _string_constants(ast.parse(_code(cell.source))):
                    if _names_a_run_folder_path(text):
                        found.append(f"notebooks/{nb_path.name} cell {k}, line {line}: {text!r}")
    assert not found, "run-folder paths spelled outside runfolder.py (use its functions):\n" + "\n".join(found)

