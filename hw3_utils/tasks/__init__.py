"""The assignment's tasks, one module each (`task_<id>.py`), found by name: `TASKS[id]` is its `Task`.

Adding a task is adding a module here (plus the solution region it covers and its notebook
cells): the checks, the release, the grader and the tests iterate over this registry.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import EPS32, T_STEPS, Patch, Task, Tolerance

__all__ = ["EPS32", "T_STEPS", "Patch", "Task", "Tolerance", "TASKS", "TASK_FILES", "task", "mistakes",
           "variants"]


def _discover() -> dict[str, Task]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("task_"))
    found = [importlib.import_module(f"{__name__}.{n}").TASK for n in names]
    return {t.id: t for t in found}


TASKS: dict[str, Task] = _discover()
TASK_FILES = sorted({t.file for t in TASKS.values()})


def task(task_id) -> Task:
    key = str(task_id)
    if key not in TASKS:
        raise KeyError(f"unknown task {task_id!r}; the tasks are {', '.join(TASKS)}")
    return TASKS[key]


def mistakes() -> list[tuple[Task, Patch]]:
    """Every known mistake with its task (empty in the student kit: they live in hidden regions)."""
    return [(t, p) for t in TASKS.values() for p in t.mistakes]


def variants() -> list[tuple[Task, Patch]]:
    """Every correct variant with its task (empty in the student kit)."""
    return [(t, p) for t in TASKS.values() for p in t.variants]
