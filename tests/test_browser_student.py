"""The student's loop in a real browser, on the generated student release: `make lab` starts JupyterLab at
the kit's root with notebook 01 open; notebook 03 runs up to its task and stops with the task's message;
the student opens the task's file from JupyterLab's file browser, types an implementation in its
editor, saves, re-runs the check cell, and it passes.

Same machinery as test_browser.py (JupyterLab on 127.0.0.1 with a random token, headless Chromium
through Playwright); screenshots go to tests/_artifacts/browser_student/.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from browser_helpers import LabBrowser, LabServer, fresh_dir, kernel_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts" / "browser_student"
TASK_FILE = "hw3_utils/diffusion.py"
ANSWER = "return self._at(self.sqrt_alpha_bars, t) * x0 + self._at(self.sqrt_one_minus_alpha_bars, t) * noise"


def _stub_span(lines: list[str]) -> tuple[int, int]:
    """First and last line (0-based) of task 3's stub: the TODO comment through the raise's ')'."""
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("# TODO Task 3 "))
    raise_at = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("raise NotImplementedError("))
    end = next(i for i in range(raise_at, len(lines)) if lines[i].strip() == ")")
    return start, end


def _check_cell_output(page) -> str:
    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text='check("3")'))
    assert cell.count() == 1, "notebook 03 should have exactly one check(\"3\") cell"
    return cell.first.locator(".jp-OutputArea").inner_text()


def test_student_fixes_task_3_in_the_editor_and_the_check_passes(tmp_path, student_release):
    fresh_dir(ARTIFACTS)
    root = shutil.copytree(student_release, tmp_path / "release")  # the student edits it: a copy of the shared kit
    stub_file = root / TASK_FILE
    before = stub_file.read_text().splitlines()
    start, end = _stub_span(before)
    indent = re.match(r"\s*", before[start]).group(0)

    server = LabServer(root, tmp_path / "home", kernel_env(tmp_path / "runs"), ARTIFACTS / "jupyterlab.log").start()
    browser = LabBrowser(server)
    try:
        # 1. Run All: the notebook runs up to task 3's check and stops there with the task's message
        nb = browser.open_notebook("notebooks/03_forward_diffusion.ipynb")
        where = browser.run_in_kernel(nb, "import hw3_utils; print(hw3_utils.__file__)").strip().splitlines()[-1]
        assert Path(where).resolve().is_relative_to(root.resolve()), f"the kernel imported {where}"
        state = browser.run_all_cells(nb, 180)
        nb.locator(".jp-CodeCell").filter(has=nb.locator(".jp-InputArea", has_text='check("3")')).first \
            .scroll_into_view_if_needed()
        nb.screenshot(path=str(ARTIFACTS / "1_stub_fails.png"))
        assert not state["timed_out"], state
        shown = "\n".join(state["errors"])
        assert "Task 3 (q_sample)" in shown and "not implemented" in shown, shown
        counts = state["counts"]
        first_unrun = counts.index(None)
        assert all(c is not None for c in counts[:first_unrun]) and "Task 3" in _check_cell_output(nb)

        # 2. `make lab` serves the kit's root, so the task file is in the file browser: open it there
        with urllib.request.urlopen(server.url("api/contents/hw3_utils")) as r:
            assert r.status == 200
        opened = [p.read_text() for p in Path(server.env["JUPYTER_RUNTIME_DIR"]).glob("jpserver-*-open.html")]
        # what a student's browser opens (jupyter_server writes one file for /lab, one for the file to run)
        assert any("lab/tree/notebooks/01_data_prep.ipynb" in text for text in opened), opened
        editor = browser.context.new_page()
        editor.goto(server.url("lab/workspaces/student-editor"))
        browser.open_from_file_browser(editor, TASK_FILE)
        # then select the stub in the editor, type the answer, save
        lines = editor.locator(".jp-FileEditor .cm-line")
        todo = editor.locator(".jp-FileEditor .cm-line", has_text="# TODO Task 3 ")
        lines.first.wait_for(timeout=60_000)
        # CodeMirror draws only the lines near its viewport: page down, as a student scrolls, until the stub's is drawn
        lines.first.click()
        for _ in range(len(before)):
            if todo.count():
                break
            editor.keyboard.press("PageDown")
            editor.wait_for_timeout(150)  # CodeMirror redraws on the next frame
        todo.first.scroll_into_view_if_needed()
        todo.first.click()
        editor.keyboard.press("End")
        editor.keyboard.press("Home")  # CodeMirror: to the end of the indentation
        for _ in range(end - start):
            editor.keyboard.press("Shift+ArrowDown")
        editor.keyboard.press("Shift+End")
        editor.keyboard.type(ANSWER)
        editor.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        while ANSWER not in stub_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.3)
        saved = stub_file.read_text().splitlines()
        editor.screenshot(path=str(ARTIFACTS / "2_typed.png"))
        assert lines.count() > 0
        assert saved[start].strip() == ANSWER, f"the saved line is {saved[start]!r}"
        assert saved[start] == indent + ANSWER  # typed at the stub's indentation
        assert len(saved) == len(before) - (end - start)
        assert "Task 3" not in "\n".join(saved)  # the whole stub was replaced

        # 3. back in the notebook: re-run the check cell (autoreload picks up the saved file): PASS
        nb.bring_to_front()
        cell = nb.locator(".jp-CodeCell").filter(has=nb.locator(".jp-InputArea", has_text='check("3")')).first
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputArea-editor").click()
        nb.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 60
        out = ""
        while time.monotonic() < deadline:
            out = _check_cell_output(nb)
            if "PASS" in out or "Error" in out and "Task 3 (q_sample): not implemented" not in out:
                break
            time.sleep(0.5)
        nb.screenshot(path=str(ARTIFACTS / "3_check_passes.png"))
        assert "PASS  Task 3" in out and "15/15 points" in out, out
    finally:
        try:
            browser.close()
        finally:
            server.stop()
