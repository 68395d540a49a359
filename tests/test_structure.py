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
    for name in ("config", "data", "unet", "diffusion", "sampling", "train", "fid", "viz", "pipeline"):
        assert isinstance(getattr(hw3_utils, name), types.ModuleType), f"hw3_utils.{name} is not the module"
    assert hw3_utils.train is importlib.import_module("hw3_utils.train")
    assert callable(hw3_utils.train_model) and hw3_utils.train.train_model is hw3_utils.train_model


def test_one_description_of_the_machine():
    sys.path.insert(0, str(ROOT))
    try:
        from bench import _common
    finally:
        sys.path.remove(str(ROOT))
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

    src = inspect.getsource(hw3_utils.sampling.ancestral)
    assert "ddpm.p_sample(net, x, t, generator)" in src and "for t in range(" in src
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

    names = {rf.CONFIG_JSON, rf.CHECKPOINTS, rf.FID_JSON, rf.PREVIEWS, rf.FID_CACHE,
             *(f"{f}.png" for f in rf.FIGURES + rf.CONDITIONAL_FIGURES)}
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


# sampling has one owner: hw3_utils/sampling.py ------------------------------------------------------
SAMPLERS = PKG / "sampling.py"
REVERSE_STEPS = {"p_sample", "ddim_step"}  # one step of a sampler: only sampling.py loops over them
OWN_SAMPLERS = {"sample", "ddim_sample"}  # methods DDPM no longer has; `sampling.sample` is the entry
LOOPS = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _called(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _run_by(loop: ast.AST):
    """The nodes a loop runs: its subtree, less the bodies of functions it only defines."""
    for child in ast.iter_child_nodes(loop):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield child
            yield from _run_by(child)


def sampling_outside_the_samplers(source: str) -> list[str]:
    """What `source` does that only sampling.py may: a reverse step called inside a loop, or a sampler
    called as a method of something other than the `sampling` module (`ddpm.sample(...)`)."""
    tree, found = ast.parse(source), []
    for loop in (n for n in ast.walk(tree) if isinstance(n, LOOPS)):
        found += [f"{_called(c)} in a loop, line {c.lineno}" for c in _run_by(loop)
                  if isinstance(c, ast.Call) and _called(c) in REVERSE_STEPS]
    for c in ast.walk(tree):
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr in OWN_SAMPLERS:
            owner = c.func.value
            if not (isinstance(owner, ast.Name) and owner.id == "sampling"):
                found.append(f".{c.func.attr}(...) of {ast.unparse(owner)}, line {c.lineno}")
    return sorted(set(found))


def _code_outside_the_samplers():
    """(name, source) of every .py file of hw3_utils/, grader/ and bench/ but sampling.py, and of each
    notebook's code cells (IPython magics left out)."""
    for folder in ("hw3_utils", "grader", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != SAMPLERS:
                yield str(path.relative_to(ROOT)), path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        yield path.name, "\n".join(_code(c.source) for c in cells if c.cell_type == "code")


def test_the_sampling_check_finds_a_loop_and_a_ddpm_sampler():
    loop = "x = noise\nfor t in reversed(range(T)):\n    x = ddpm.p_sample(model, x, t)\n"
    assert sampling_outside_the_samplers(loop) == ["p_sample in a loop, line 3"]
    assert sampling_outside_the_samplers("xs = [ddim_step(d, m, x, t, t - 1) for t in ts]")
    assert sampling_outside_the_samplers("while t:\n    if t > 0:\n        x, t = ddpm.p_sample(m, x, t), t - 1")
    # one step timed by a function a loop defines (bench/gpu/sample_speed.py) is not a sampling loop
    assert not sampling_outside_the_samplers("for b in sizes:\n    def step():\n        ddpm.p_sample(m, x, 5)")
    assert sampling_outside_the_samplers("imgs = DDPM.from_config(cfg).sample(model, 8)")
    assert not sampling_outside_the_samplers("imgs = sample(model, ddpm, cfg, n=8)\nx = ddpm.p_sample(m, x, 3)")
    assert not sampling_outside_the_samplers("from hw3_utils import sampling\nimgs = sampling.sample(m, d, n=8)")


def test_no_sampling_loop_outside_the_samplers_module():
    found = {name: sampling_outside_the_samplers(source) for name, source in _code_outside_the_samplers()}
    assert {"hw3_utils/pipeline.py", "grader/release.py", "bench/cpu_ablation.py", "05_sampling_and_fid.ipynb"} <= set(
        found)
    assert not {k: v for k, v in found.items() if v}, "sampling outside hw3_utils/sampling.py (call sampling.sample)"
    assert not {"sample", "ddim_sample", "ddim_step", "respaced", "clipped"} & set(dir(hw3_utils.DDPM))


# a private name is private to its module, a private module to its package ---------------------------------
PACKAGES = ("hw3_utils", "grader", "bench")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(dotted: str, root: Path = ROOT) -> bool:
    """True when `dotted` names a module or package of the kit (a file under `root`)."""
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def private_reaches(source: str, module: str, root: Path = ROOT) -> list[str]:
    """Where the code of `module` (dotted, e.g. "grader.batch") uses a private name of another module of the kit:
    `from .x import _name`, `from x import _name`, or `alias._name` on a module it imported. A private module
    (`bench/_common.py`) may be imported by the modules of its own package; its private names stay its own."""
    package = module.rsplit(".", 1)[0] if not (root / module.replace(".", "/") / "__init__.py").is_file() else module
    tree, found, aliases = ast.parse(source), [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                if _is_module(full, root):
                    aliases[a.asname or a.name] = full
                    if _private(a.name) and not package.startswith(base):
                        found.append(f"line {node.lineno}: the private module {full} of another package")
                elif _private(a.name) and base != module:
                    found.append(f"line {node.lineno}: from {base} import {a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = ast.unparse(node.value)
            head, _, rest = owner.partition(".")
            target = aliases.get(head, "") + (f".{rest}" if rest else "")
            if head in aliases and _is_module(target, root) and target != module:
                found.append(f"line {node.lineno}: {owner}.{node.attr} ({target})")
    return sorted(set(found))


def test_the_private_import_check_finds_each_way_in():
    reach = private_reaches
    assert reach("from .extract import _tasks", "grader.batch") == ["line 1: from grader.extract import _tasks"]
    assert reach("from hw3_utils.train import _ema_update", "bench.cpu_speed")
    assert reach("from hw3_utils import train\ntrain._ema_update(a, b)", "bench.x") == [
        "line 2: train._ema_update (hw3_utils.train)"]
    assert reach("import hw3_utils.train as t\nt._x", "grader.y") and reach("import hw3_utils\nhw3_utils.fid._x", "z.w")
    assert reach("from hw3_utils import _openmp", "grader.sandbox")  # a private module of another package
    assert reach("from bench import _common as C\nC._thread_note()", "bench.fid_speed")
    assert not reach("from bench import _common as C\nC.environment()", "bench.gpu.check")  # its own package
    assert not reach("from ._openmp import OMP_SPIN_COUNT", "hw3_utils")
    assert not reach("def _f(): pass\n_f()\nself._at(x)\nos._exit(0)", "hw3_utils.diffusion")
    assert not reach("from google.colab import _message", "hw3_utils.submit")  # not the kit's


def test_no_private_name_is_used_across_modules():
    found = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            found += [f"{path.relative_to(ROOT)}: {f}" for f in private_reaches(path.read_text(), module)]
    assert not found, "private names used outside their module (make them public, or move the code):\n" + "\n".join(
        found)


# functions fit on a screen ---------------------------------------------------------------------------------
LONG = 60  # lines from `def` to the function's last line
WHY_LONG = re.compile(r"#\s*long:\s*\S")


def long_functions(source: str) -> list[str]:
    """Functions over LONG lines without a `# long: <reason>` comment on their def line or the line above it
    (above the decorators, if any)."""
    lines, found = source.splitlines(), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            said = [lines[node.lineno - 1], lines[first - 2] if first > 1 else ""]
            if length > LONG and not any(WHY_LONG.search(s) for s in said):
                found.append(f"{node.name} (line {node.lineno}, {length} lines)")
    return found


def test_the_length_check_counts_lines_and_reads_the_reason():
    body = "".join(f"    x{i} = {i}\n" for i in range(LONG - 1))
    assert long_functions(f"def f():\n{body}") == []
    assert long_functions(f"def f():\n{body}    return 1\n") == [f"f (line 1, {LONG + 1} lines)"]
    assert long_functions(f"def f():  # long: one table\n{body}    return 1\n") == []
    assert long_functions(f"# long: one table\n@cache\ndef f():\n{body}    return 1\n") == []
    assert long_functions(f"class A:\n    def f(self):\n    {body.replace(chr(10), chr(10) + '    ')}    return 1\n")


def test_no_function_over_60_lines_without_a_reason():
    found = [f"{p.relative_to(ROOT)}: {f}" for d in ("hw3_utils", "grader") for p in sorted((ROOT / d).rglob("*.py"))
             for f in long_functions(p.read_text())]
    assert not found, (f"functions over {LONG} lines: split them, or say why on the def line (# long: <why>):\n"
                       + "\n".join(found))
