"""The TA's page of one question in headless Chromium, as a TA opens it from disk: the answer's math laid out
as MathML, the student's process grid and FID table beside it, and nothing the page refuses (a script, a
remote image) or fails to load. `HW3_UPDATE_DOCS_IMG=1` refreshes docs/img/ta_page_q10.png.

Needs Chromium (/usr/bin/chromium, or $HW3_CHROMIUM) and the PyPI package playwright; never skipped.
"""

from __future__ import annotations

import io
import json
import os

import pytest
from browser_helpers import CHROMIUM_ARGS, REPO, find_chromium, shrink_png
from PIL import Image
from test_written import _handed_in, _simple

from grader.render import Graded, passed
from grader.written import write_sheet
from hw3_utils.tasks import TASKS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANSWER = r"""(a) An error $\delta$ in the image mean of $\epsilon_\theta$ moves the mean of $\hat x_0$ by

$$\delta\,\frac{\sqrt{1-\bar\alpha_T}}{\sqrt{\bar\alpha_T}} = 157\,\delta ,$$

so my printed $e = 0.0061$ gives about **0.96**: a background pixel at $-1$ comes out near $0$, grey.

(b) Clipping keeps $\hat x_0 \in [-1, 1]$; with $\eta = 0$ DDIM adds no fresh noise, so the error is not washed out.
<script>document.title = "pwned"</script> ![tracker](https://example.org/t.png)"""


@pytest.fixture
def ta_page(tmp_path, monkeypatch):
    monkeypatch.setattr("grader.written.QUESTIONS_FILE", tmp_path / "none.json")
    grid = io.BytesIO()
    Image.open(REPO / "docs" / "img" / "process_grid_cpu.png").convert("RGB").save(grid, "PNG")
    fid = tmp_path / "fid.json"
    fid.write_text(json.dumps({"profile": "cpu", "num_samples": 1000, "sampler": "ddpm, 50 respaced steps, clipped",
                               "fid_vs_mnist_train": 17.39, "fid_vs_mnist_test": 17.86,
                               "fid_floor_test_vs_train": 8.93}))
    from grader.written import submission_written

    said, written, flags = submission_written(
        _handed_in({"q10": ANSWER}, grid.getvalue(), "mean error at t = T: 0.0061 (a model that ignores the mean "
                   "of x_t: 0.0357)\nit follows the mean"), {"runs/cpu/fid.json": fid})
    ada = Graded("ada", "graded", {t: passed(task.points) for t, task in TASKS.items()}, flags=flags,
                 answers=said, written=written)
    out = tmp_path / "grades"
    write_sheet([ada, _simple("bob", {"q10": "The factor is $1/\\sqrt{\\bar\\alpha_T}$; I did not compute it."})],
                out)
    return out / "written" / "q10.html"


def test_ta_page_renders_math_and_the_students_grid(ta_page, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        problems, requests = [], []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(ta_page.as_uri())
        page.wait_for_load_state("load")
        ada = page.locator("section#ada")
        maths = ada.locator("math")
        assert maths.count() >= 8
        # MathML laid out by the browser: the display formula is a block with a fraction taller than a text line
        frac = ada.locator("math[display=block] mfrac").first.bounding_box()
        line = ada.locator("p").first.bounding_box()
        assert frac and frac["height"] > 20 and line and frac["height"] > 0.8 * 18
        grid = ada.locator(".run img")
        assert grid.count() == 1 and grid.evaluate("i => i.complete && i.naturalWidth > 100")
        box_answer, box_run = ada.locator(".answer").bounding_box(), ada.locator(".run").bounding_box()
        assert box_run["x"] > box_answer["x"] + box_answer["width"] - 1  # beside the answer, not below it
        assert "17.39" in ada.locator(".run table").inner_text() and "0.0061" in ada.inner_text()
        assert page.title() != "pwned" and not any("example.org" in u for u in requests)
        assert problems == [], problems
        shot = tmp_path / "ta_page_q10.png"
        ada.screenshot(path=str(shot))
        browser.close()
    if os.environ.get("HW3_UPDATE_DOCS_IMG") == "1":
        assert shrink_png(shot, REPO / "docs" / "img" / "ta_page_q10.png", max_bytes=150_000, max_width=1100) < 150_000
