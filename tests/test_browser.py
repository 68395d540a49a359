"""End to end, as a student sees it: JupyterLab in headless Chromium runs every notebook, shows no
error, renders the two sliders, and moving a slider changes the picture to the frame whose
timestep the readout names; in notebook 06, a click on a digit button and a move of the guidance
slider redraw the picture of that digit at that weight.

nbval proves the cells run in a kernel; this proves the widget front end is there too. It starts
JupyterLab through `make lab` (127.0.0.1, random port and token) in a temporary copy of the repo, and
runs notebooks 01..06 in order in that one server (05 loads the checkpoint 04 writes under a temporary
$HW3_RUNS_DIR; 06 trains the conditional twin of the profile), once per code path at test sizes: cpu-smoke (a
student's default, 1 channel, respaced clipped sampler) and full-smoke (3 channels, all T steps). Screenshots:
tests/_artifacts/browser/<profile>/ (git-ignored). `HW3_UPDATE_DOCS_IMG=1` also refreshes
docs/img/browser_0{3,5}_slider.png, browser_04_samples.png and browser_06_guidance.png (cpu path).

Needs Chromium (/usr/bin/chromium, or $HW3_CHROMIUM) and the PyPI package playwright; without
them it fails with a message saying how to install them -- it is never skipped.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from browser_helpers import (
    JS_IMAGE_DIGEST,
    REPO,
    LabBrowser,
    LabServer,
    copy_repo,
    fresh_dir,
    kernel_env,
    shrink_png,
)

from hw3_utils.config import conditional_profile

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS_ROOT = REPO / "tests" / "_artifacts" / "browser"
PROFILES = ["cpu-smoke", "full-smoke"]
DOCS_PROFILE = "cpu-smoke"  # the docs' screenshots show a student's default path
DOCS_IMG = REPO / "docs" / "img"
NOTEBOOKS = ["01_data_prep", "02_unet", "03_forward_diffusion", "04_training", "05_sampling_and_fid", "06_guidance"]
# FID's progress and its singular-covariance note must not look like errors
NO_STDERR = {"05_sampling_and_fid", "06_guidance"}
RUN_TIMEOUT_S = {"04_training": 300, "05_sampling_and_fid": 420, "06_guidance": 900}  # the others: 180

# Per slider notebook: how the kernel recomputes the frames the slider was built from, to know
# which PNG belongs to which timestep independently of the slider's callback.
SLIDERS = {
    "03_forward_diffusion": dict(var="slider", nrow="cfg.viz_samples",
                                 frames="noising_frames(ddpm, digits, slider_ts, seed=cfg.seed)"),
    "05_sampling_and_fid": dict(var="slider", nrow="cfg.viz_samples", frames="slider_frames"),
}
SHOT_FRAME = {"03_forward_diffusion": 4, "05_sampling_and_fid": 16}  # t = 201 and t = 200: digits and noise
TRUTH_CODE = """
import hashlib as _hl, json as _js
from hw3_utils.viz import png_bytes as _png
print(_js.dumps({{"labels": [int(v) for v in {var}.labels],
                  "hashes": [_hl.sha256(_png(_f, {nrow})).hexdigest()[:16] for _f in {frames}]}}))
"""
READOUT_T = re.compile(r"\bt = (\d+)\b")
# Notebook 06's widget: the PNG of (digit, w) recomputed in the kernel, apart from the widget's own callback.
GUIDED_TRUTH = """
import hashlib as _hl, torch as _t
from hw3_utils.conditional import EXPLORER_IMAGES as _n, PER_DIGIT as _r, preview_guided as _pg
from hw3_utils.viz import png_bytes as _png
print(_hl.sha256(_png(_pg(model, cfg, _t.full((_n,), {digit}), {w}), _r)).hexdigest()[:16])
"""
GUIDED_SHOT = ("7", 4.0)  # the docs' screenshot: a digit at the strongest weight


@dataclass
class Lab:
    server: LabServer
    browser: LabBrowser
    root: Path
    profile: str
    artifacts: Path
    ran: dict[str, str | None] = field(default_factory=dict)  # notebook -> None (ok) or what failed
    timings: dict[str, float] = field(default_factory=dict)

    def run_notebook(self, name: str):
        """Open notebooks/<name>.ipynb, Run All Cells, assert no error; returns the open page."""
        t0 = time.monotonic()
        page = self.browser.open_notebook(f"notebooks/{name}.ipynb")
        try:
            state = self.browser.run_all_cells(page, RUN_TIMEOUT_S.get(name, 180))
            page.screenshot(path=str(self.artifacts / f"{name}_page.png"))
            problem = None
            if state["timed_out"]:
                problem = f"Run All Cells did not finish in {RUN_TIMEOUT_S.get(name, 180)} s: {state}"
            elif state["errors"]:
                problem = "error output:\n" + "\n\n".join(state["errors"])
            elif not all(c is not None for c in state["counts"]):
                problem = f"not every code cell ran: execution counts {state['counts']}"
            elif name in NO_STDERR and state["stderr"]:
                # a red stderr box reads as a failure to a student (progress bars, warnings)
                problem = "stderr output (shown in red to the student):\n" + "\n".join(state["stderr"])[:2000]
            self.ran[name] = problem
            self.timings[name] = time.monotonic() - t0
            if state["stderr"]:
                (self.artifacts / f"{name}_stderr.txt").write_text("\n".join(state["stderr"]))
            assert problem is None, f"{name}.ipynb in JupyterLab ({self.profile}): {problem}"
            return page
        except BaseException:
            self.ran.setdefault(name, "failed before the run finished")
            _failure_shot(page, name, self.artifacts)
            self.browser.close_notebook(page)
            raise

    def require(self, name: str) -> None:
        """Make sure a notebook this one depends on has run (and passed) in this server."""
        if name not in self.ran:
            self.browser.close_notebook(self.run_notebook(name))
        assert self.ran[name] is None, f"{name}.ipynb, which this notebook needs, failed: {self.ran[name]}"


def _failure_shot(page, name: str, artifacts: Path) -> None:
    try:  # show the cell that is running or failed, not the end of the notebook
        for sel in (".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                    ".jp-InputPrompt:has-text('[*]')"):
            target = page.locator(sel)
            if target.count():
                target.first.scroll_into_view_if_needed(timeout=5000)
                break
        page.screenshot(path=str(artifacts / f"{name}_FAILED.png"), full_page=True)
    except Exception:
        pass


@pytest.fixture(scope="module", params=PROFILES)
def lab(request, tmp_path_factory):
    profile = request.param
    artifacts = fresh_dir(ARTIFACTS_ROOT / profile)
    tmp = tmp_path_factory.mktemp(f"browser-{profile}")
    root = copy_repo(tmp / "repo")
    env = kernel_env(tmp / "runs", profile)
    server = LabServer(root, tmp / "home", env, artifacts / "jupyterlab.log")
    browser = None
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        server.start()
        browser = LabBrowser(server)
        yield Lab(server, browser, root, profile, artifacts, timings=timings)
    finally:  # also when a test failed or was interrupted
        try:
            if browser is not None:
                if browser.console:
                    (artifacts / "browser_console.txt").write_text("\n".join(browser.console))
                browser.close()
        finally:
            server.stop()
        lines = [f"{k:<24}{v:7.1f} s" for k, v in timings.items()]
        lines.append(f"{'total, with start/stop':<24}{time.monotonic() - t0:7.1f} s")
        (artifacts / "timings.txt").write_text("\n".join(lines) + "\n")


def _slider_view(page):
    """The output that renders the frame slider: VBox[HBox[IntSlider, Label], Image]."""
    box = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=page.locator(".widget-slider"))
    assert box.count() == 1, (
        f"expected one rendered slider widget, found {box.count()}: without the ipywidgets front end "
        "JupyterLab shows only the text 'VBox(children=...)'")
    return box.first


def _shown(page, view) -> dict:
    """What the student sees now: slider position, readout text, and the displayed PNG."""
    handle = view.locator(".noUi-handle")
    img = view.locator("img.widget-image")
    shown = page.evaluate(JS_IMAGE_DIGEST, img.element_handle())
    shown["frame"] = round(float(handle.get_attribute("aria-valuenow")))
    shown["readout"] = view.locator(".widget-hbox > .widget-label").inner_text().strip()
    shown["kernel"] = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus")
    return shown


def _frame_problem(shown: dict, truth: dict) -> str | None:
    """None when the picture is the PNG of the slider's frame and the readout names that frame's
    timestep; else what is wrong."""
    if not (shown["complete"] and min(shown["natural"]) > 0 and min(shown["box"]) > 0):
        return f"the image is not drawn ({shown})"
    k = shown["frame"]
    m = READOUT_T.search(shown["readout"])
    if not m:
        return f"readout {shown['readout']!r} names no timestep 't = N'"
    if shown["hash"] not in truth["hashes"]:
        return f"the displayed PNG ({shown['hash']}) is none of the slider's frames"
    shown_k = truth["hashes"].index(shown["hash"])
    if shown_k != k:
        return f"the slider is at frame {k} but the picture is frame {shown_k} (t = {truth['labels'][shown_k]})"
    if int(m.group(1)) != truth["labels"][k]:
        return f"readout {shown['readout']!r} but the picture is frame {k}, t = {truth['labels'][k]}"
    return None


def _settle(page, view, before: dict | None, truth: dict, what: str, frame: int | None = None,
            timeout_s: float = 20) -> dict:
    """Wait until the view shows a new picture (unless before is None), sits at `frame`, the kernel
    is idle, and picture, slider and readout agree, for two reads in a row. Polling, not a fixed
    sleep: a slow round trip only waits longer. At the deadline, fail saying what never happened."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        now = _shown(page, view)
        ok = ((before is None or now["src"] != before["src"]) and now["kernel"] == "idle"
              and (frame is None or now["frame"] == frame) and _frame_problem(now, truth) is None)
        if ok and last is not None and \
                (now["src"], now["readout"], now["frame"]) == (last["src"], last["readout"], last["frame"]):
            return now
        last = now
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
    if before is not None and last["src"] == before["src"]:
        pytest.fail(f"{what}: the displayed image did not change within {timeout_s:.0f} s "
                    f"(slider frame {before['frame']} -> {last['frame']}, readout {before['readout']!r} -> "
                    f"{last['readout']!r}, image {before['hash']} -> {last['hash']}): the slider's callback "
                    "does not reach the picture")
    problem = _frame_problem(last, truth)
    if problem:
        pytest.fail(f"{what}: {problem}")
    pytest.fail(f"{what}: the slider is at frame {last['frame']}, expected {frame} (kernel {last['kernel']})")


def _exercise_slider(page, lab: Lab, name: str) -> None:
    spec = SLIDERS[name]
    out = lab.browser.run_in_kernel(page, TRUTH_CODE.format(**spec))
    try:
        truth = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail(f"{name}: could not recompute the slider frames in the kernel "
                    f"(test_browser.SLIDERS out of date with the notebook?): {out}")
    assert len(truth["hashes"]) == len(truth["labels"]) >= 3
    assert len(set(truth["hashes"])) == len(truth["hashes"]), "two slider frames have identical pictures"

    view = _slider_view(page)
    view.scroll_into_view_if_needed()
    handle = view.locator(".noUi-handle")
    last_frame = len(truth["labels"]) - 1
    assert round(float(handle.get_attribute("aria-valuemax"))) == last_frame

    shown = _settle(page, view, None, truth, f"{name}, as rendered", frame=0)

    # 1. keyboard: focus the handle, three right-arrow presses
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    shown = _settle(page, view, shown, truth, f"{name}, after ArrowRight x3", frame=3)

    # 2. keyboard: End jumps to the last frame
    page.keyboard.press("End")
    shown = _settle(page, view, shown, truth, f"{name}, after End", frame=last_frame)

    # 3. mouse: drag the handle to the middle of the track
    track = view.locator(".noUi-base").bounding_box()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] / 2, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    shown = _settle(page, view, shown, truth, f"{name}, after a drag to the middle")
    assert abs(shown["frame"] - last_frame / 2) <= 1, f"{name}: the drag left the slider at frame {shown['frame']}"

    # 4. keyboard: Home, then right arrows to the frame of the screenshot
    handle.focus()
    page.keyboard.press("Home")
    shown = _settle(page, view, shown, truth, f"{name}, after Home", frame=0)
    for _ in range(SHOT_FRAME[name]):
        page.keyboard.press("ArrowRight")
    _settle(page, view, shown, truth, f"{name}, after ArrowRight x{SHOT_FRAME[name]}", frame=SHOT_FRAME[name])

    # the key view: the slider cell part-way through the process
    cell = page.locator(".jp-Cell").filter(has=view)
    page.add_style_tag(content=".jp-cell-toolbar { display: none !important; }")  # hover-only clutter
    page.mouse.move(0, 0)
    cell.screenshot(path=str(lab.artifacts / f"{name}_slider.png"))
    if os.environ.get("HW3_UPDATE_DOCS_IMG") == "1" and lab.profile == DOCS_PROFILE:
        short = name.split("_")[0]
        size = shrink_png(lab.artifacts / f"{name}_slider.png", DOCS_IMG / f"browser_{short}_slider.png")
        assert size < 80_000


def _guidance_view(page):
    """The output that renders notebook 06's widget: VBox[ToggleButtons, HBox[SelectionSlider, Label], Image]."""
    box = page.locator(".jp-OutputArea-output .widget-vbox").filter(
        has=page.locator(".widget-toggle-buttons")).filter(has=page.locator(".widget-slider"))
    assert box.count() == 1, f"expected one rendered guidance widget, found {box.count()}"
    return box.first


def _guided_shown(page, view) -> dict:
    """What the student sees now in the guidance widget: the chosen button, the readout, the displayed PNG."""
    shown = page.evaluate(JS_IMAGE_DIGEST, view.locator("img.widget-image").element_handle())
    active = view.locator(".widget-toggle-button.mod-active")
    shown["digit"] = active.inner_text().strip() if active.count() == 1 else None
    shown["readout"] = view.locator(".widget-hbox > .widget-label").inner_text().strip()
    shown["kernel"] = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus")
    return shown


def _guided_settle(page, lab: Lab, view, before: dict | None, digit: str, w: float, what: str,
                   timeout_s: float = 180) -> dict:
    """Wait until the widget shows digit `digit` at weight `w` (button, readout, a new picture once drawn, the
    kernel idle, for two reads in a row), then check the picture is the PNG the kernel recomputes for the pair."""
    want = f"digit {digit}, w = {w:g}"
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        now = _guided_shown(page, view)
        ok = ((before is None or now["src"] != before["src"]) and now["kernel"] == "idle" and now["digit"] == digit
              and now["readout"] == want and now["complete"] and min(now["natural"]) > 0)
        if ok and last is not None and (now["src"], now["readout"]) == (last["src"], last["readout"]):
            break
        last = now
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: the widget did not show {want!r} with a new picture within {timeout_s:.0f} s "
                        f"(button {last['digit']!r}, readout {last['readout']!r}, image {last['hash']}, "
                        f"kernel {last['kernel']}): the callback does not reach the picture")
        time.sleep(0.5)
    out = lab.browser.run_in_kernel(page, GUIDED_TRUTH.format(digit=int(digit), w=w))
    truth = out.strip().splitlines()[-1] if out.strip() else out
    assert now["hash"] == truth, f"{what}: the picture ({now['hash']}) is not digit {digit} at w = {w:g} ({out})"
    return now


def _exercise_guidance(page, lab: Lab) -> None:
    """Notebook 06's widget: a click on a digit button, then the slider moved by the keyboard and by a drag,
    each redraws the picture of the chosen digit at the chosen weight."""
    view = _guidance_view(page)
    view.scroll_into_view_if_needed()
    handle = view.locator(".noUi-handle")
    out = lab.browser.run_in_kernel(page, "import json; print(json.dumps([w for _, w in explorer.slider.options]))")
    weights = json.loads(out.strip().splitlines()[-1])
    start = weights.index(2.0)
    assert round(float(handle.get_attribute("aria-valuenow"))) == start
    shown = _guided_settle(page, lab, view, None, "0", 2.0, "06, as rendered")

    # 1. a click on the button of digit 3
    view.locator(".widget-toggle-button", has_text=re.compile(r"^3$")).click()
    shown = _guided_settle(page, lab, view, shown, "3", 2.0, "06, after a click on 3")

    # 2. keyboard: focus the slider's handle, one right-arrow press: the next weight
    handle.focus()
    page.keyboard.press("ArrowRight")
    shown = _guided_settle(page, lab, view, shown, "3", weights[start + 1], "06, after ArrowRight")

    # 3. mouse: drag the handle to the left end of the track (w = 0)
    track, box = view.locator(".noUi-base").bounding_box(), handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] - 20, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    shown = _guided_settle(page, lab, view, shown, "3", weights[0], "06, after a drag to the left end")

    # the key view: another digit at the strongest weight
    view.locator(".widget-toggle-button", has_text=re.compile(rf"^{GUIDED_SHOT[0]}$")).click()
    shown = _guided_settle(page, lab, view, shown, GUIDED_SHOT[0], weights[0], "06, after a click on 7")
    handle.focus()
    page.keyboard.press("End")
    _guided_settle(page, lab, view, shown, GUIDED_SHOT[0], GUIDED_SHOT[1], "06, after End")
    cell = page.locator(".jp-Cell").filter(has=view)
    page.add_style_tag(content=".jp-cell-toolbar { display: none !important; }")
    page.mouse.move(0, 0)
    cell.screenshot(path=str(lab.artifacts / "06_guidance_widget.png"))
    if os.environ.get("HW3_UPDATE_DOCS_IMG") == "1" and lab.profile == DOCS_PROFILE:
        assert shrink_png(lab.artifacts / "06_guidance_widget.png", DOCS_IMG / "browser_06_guidance.png") < 80_000


def _live_samples(page, lab: Lab) -> None:
    """Digits while it trains: the training cell shows the loss curve and, redrawn in place after each epoch, one
    grid of 16 samples whose title names the last epoch."""
    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text="LiveSamples(cfg)")).first
    images = cell.locator(".jp-RenderedImage img")
    assert images.count() == 2, f"the training cell shows {images.count()} figures, not the loss curve and samples"
    epochs = lab.browser.run_in_kernel(page, "print(cfg.epochs, samples.calls)").split()[-2:]
    assert epochs[0] == epochs[1], f"LiveSamples drew {epochs[1]} times for {epochs[0]} epochs"
    cell.scroll_into_view_if_needed()
    page.add_style_tag(content=".jp-cell-toolbar { display: none !important; }")
    cell.locator(".jp-OutputArea").screenshot(path=str(lab.artifacts / "04_training_samples.png"))
    if os.environ.get("HW3_UPDATE_DOCS_IMG") == "1" and lab.profile == DOCS_PROFILE:
        assert shrink_png(lab.artifacts / "04_training_samples.png", DOCS_IMG / "browser_04_samples.png") < 150_000


def _figures(page):
    """Cells that show a matplotlib figure (an image output that is not a widget)."""
    return page.locator(".jp-Cell").filter(has=page.locator(".jp-RenderedImage img"))


def _key_view(page, name: str, artifacts: Path) -> None:
    """Screenshot of the last figure the notebook shows (its 'result' view)."""
    cell = _figures(page).last
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=str(artifacts / f"{name}_key.png"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_in_jupyterlab(lab: Lab, name: str):
    if name == "05_sampling_and_fid":
        lab.require("04_training")  # 05 loads the checkpoint that 04 trains
    page = lab.run_notebook(name)
    try:
        # the kernel is the venv's interpreter and imports the copy's hw3_utils
        where = lab.browser.run_in_kernel(
            page, "import sys, hw3_utils; print(sys.prefix); print(hw3_utils.__file__); print(cfg.profile)")
        prefix, pkg, profile = where.strip().splitlines()[-3:]
        expected = conditional_profile(lab.profile, verbose=False) if name == "06_guidance" else lab.profile
        assert profile == expected, f"{name} ran with profile {profile}, not {expected}"
        assert Path(prefix).resolve() == Path(sys.prefix).resolve(), f"kernel runs in {prefix}, not {sys.prefix}"
        assert Path(pkg).resolve().is_relative_to(lab.root.resolve()), f"kernel imported hw3_utils from {pkg}"
        assert _figures(page).count() >= 1, f"{name}: no figure is shown (matplotlib inline output missing)"
        if name in SLIDERS:
            _exercise_slider(page, lab, name)
        else:
            _key_view(page, name, lab.artifacts)
        if name == "04_training":
            _live_samples(page, lab)
        if name == "06_guidance":
            _exercise_guidance(page, lab)
    except BaseException:
        _failure_shot(page, name, lab.artifacts)
        raise
    finally:
        lab.browser.close_notebook(page)
