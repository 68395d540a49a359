"""The assignment's checks, one test per task: `make unit` (or `pytest tests/test_tasks.py`).

Each test runs the task's public checks (the same as the check cell of its notebook); a failure
names the task and says what differs, with a hint.
"""

import pytest

from hw3_utils.checks import TASKS, check


@pytest.mark.parametrize("task_id", list(TASKS), ids=[f"task_{t}" for t in TASKS])
def test_task(task_id, monkeypatch, tmp_path):
    monkeypatch.setenv("HW3_RUNS_DIR", str(tmp_path / "runs"))
    check(task_id)
