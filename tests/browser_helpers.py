"""Plumbing for tests/test_browser.py: a JupyterLab server on a temporary copy of the repo, and
headless Chromium (Debian's `chromium`, driven by the PyPI package `playwright`) pointed at it.

Kept apart from the test so the test reads as what a student does: open, run all, look, slide.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHROMIUM_ENV = "HW3_CHROMIUM"  # optional override of the browser executable
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
]
INSTALL_HINT = (
    "The browser test needs Chromium and the Python package playwright:\n"
    "  sudo apt-get update && sudo apt-get install -y chromium     # Debian/Ubuntu: /usr/bin/chromium\n"
    "  .venv/bin/pip install -e '.[dev]'                           # brings playwright\n"
    f"or point ${CHROMIUM_ENV} at a Chromium/Chrome executable. Do not run `playwright install`: "
    "the test uses the system browser and never downloads one."
)


def find_chromium() -> str:
    """Path of the Chromium executable, or an AssertionError that says how to install it."""
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        assert Path(override).is_file(), f"${CHROMIUM_ENV}={override} is not a file.\n{INSTALL_HINT}"
        return override
    for cand in CHROMIUM_CANDIDATES:
        if Path(cand).is_file():
            return cand
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, f"Chromium not found (looked for {', '.join(CHROMIUM_CANDIDATES)} and on $PATH).\n{INSTALL_HINT}"
    return found


# --------------------------------------------------------------------------------------------
# A copy of the repo, as a fresh clone would have it
# --------------------------------------------------------------------------------------------

def copy_repo(dest: Path) -> Path:
    """Copy the files git knows about (tracked + untracked-but-not-ignored) into dest.

    That is what a clone plus the work in progress holds: no .venv, data/, runs/ or caches.
    """
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted({p for p in out.decode().split("\0") if p}):
        src = REPO / rel
        if not src.is_file():  # deleted in the work tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


# --------------------------------------------------------------------------------------------
# The JupyterLab server
# --------------------------------------------------------------------------------------------

def kernel_env(runs_dir: Path, profile: str = "cpu-smoke") -> dict[str, str]:
    """The environment of the Lab server and its kernels: the student's, but a smoke twin of a profile
    (default: the cpu path, a student's default, at test sizes), the data of $HW3_DATA_DIR, a temporary
    runs folder holding the FID cache's MNIST statistics, and no MPLBACKEND (CI sets Agg, which would hide
    every figure; a student's kernel uses the inline backend)."""
    data = os.environ.get("HW3_DATA_DIR")
    assert data, "set HW3_DATA_DIR to a folder holding MNIST/raw (docs/students.md, 'Troubleshooting'); .ci/run does"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW3_") and k != "MPLBACKEND"}
    env.update(HW3_PROFILE=profile, HW3_DATA_DIR=str(Path(data).resolve()), HW3_RUNS_DIR=str(runs_dir))
    # Chromium, the server and the kernel share the 2 CPUs here, Chromium busy while it renders: then
    # passive waiting is the fastest (a preview's model call 2.6x faster than with the kit's 10,000
    # spins, bench/omp_spin.py). It changes no result, only how idle OpenMP threads wait.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def fresh_dir(path: Path) -> Path:
    """An empty folder at path (the screenshots of one test run)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """`make lab` in a kit copy (the repo's or the student release's), as a student starts JupyterLab: the
    server's root is the kit's folder and notebook 01 opens; the test adds, through LAB_ARGS, only what a
    headless run needs (no browser, 127.0.0.1:<random port>, a random token, window.jupyterapp exposed).

    It runs with this test's venv (VENV=...; `-o` keeps make from reinstalling it for the copy). Its
    Jupyter config, data, runtime and settings folders are private temporary ones, so no user-level
    kernelspec or lab setting can change what runs: the kernel is the venv's python3 (argv[0] "python"
    is replaced with the server's own interpreter by jupyter_client), and PYTHONPATH puts the copy's
    hw3_utils ahead of the editable install of the checkout.
    """

    def __init__(self, root: Path, home: Path, env: dict[str, str], log_path: Path):
        self.root, self.home, self.log_path = root, home, log_path
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(env)
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                     "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
            path = home / name.lower()
            path.mkdir(parents=True, exist_ok=True)
            self.env[name] = str(path)
        # no "Would you like to get notified about Jupyter news?" toast over the screenshots
        notif = home / "jupyterlab_settings_dir" / "@jupyterlab" / "apputils-extension"
        notif.mkdir(parents=True, exist_ok=True)
        (notif / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
        self.env.pop("JUPYTER_PATH", None)
        self.env.pop("JUPYTER_TOKEN", None)
        self.env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
        self.env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def command(self) -> list[str]:
        lab_args = [
            "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: read kernel state, run commands
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.shutdown_no_activity_timeout=1800",  # a safety net should teardown be skipped
            "--MappingKernelManager.cull_idle_timeout=0",
            "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
        ] + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])  # CI containers
        venv = Path(sys.prefix)
        assert (venv / "bin" / "jupyter").is_file(), f"the tests run in a venv with jupyter; {venv} has none"
        return ["make", "-s", "--no-print-directory", "lab", f"VENV={venv}", "-o", f"{venv}/.installed",
                "LAB_ARGS=" + " ".join(lab_args)]

    def start(self, timeout: float = 90) -> LabServer:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        url = f"{self.base}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"jupyter lab did not answer on {self.base} within {timeout:.0f} s:\n{self.log_tail()}")

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL the process group if needed."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None:
            try:  # kernels are in the server's session: take down whatever is left of it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------------------------
# In-page helpers (JavaScript run by page.evaluate; window.jupyterapp is exposed by the server flag)
# --------------------------------------------------------------------------------------------

JS_KERNEL_IDLE = """
() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const ctx = w && w.sessionContext;
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return !!(ctx && ctx.isReady && ctx.session && ctx.session.kernel && ctx.kernelDisplayStatus === 'idle'
            && ind && ind.getAttribute('data-status') === 'idle');
}
"""

# The state of the open notebook: kernel status, execution counts, queued cells, and the outputs a
# student would read as "it broke" -- from the cell models (output_type "error") and from the page
# (JupyterLab 4 renders a traceback as an application/vnd.jupyter.stderr output; a widget whose
# front end is missing shows "Error displaying widget").
JS_NOTEBOOK_STATE = """
() => {
  const w = window.jupyterapp.shell.currentWidget;
  const ctx = w.sessionContext;
  const code = w.content.widgets.filter(c => c.model.type === 'code');
  const errors = [], stderr = [];
  code.forEach((c, i) => {
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(`code cell ${i + 1}: ${o.ename}: ${o.evalue}`);
    }
    for (const el of c.node.querySelectorAll('.jp-OutputArea-output')) {
      const mime = el.getAttribute('data-mime-type') || '';
      const text = el.innerText || '';
      if (mime === 'application/vnd.jupyter.error') errors.push(`code cell ${i + 1} shows:\n${text}`);
      else if (mime === 'application/vnd.jupyter.stderr') {
        if (/Traceback|^\\w*(Error|Exception)\\b/m.test(text)) errors.push(`code cell ${i + 1} shows:\n${text}`);
        else stderr.push(`code cell ${i + 1}: ${text}`);
      }
      if (text.includes('Error displaying widget')) errors.push(`code cell ${i + 1} shows: ${text}`);
    }
  });
  const prompts = code.map(c => { const p = c.node.querySelector('.jp-InputPrompt'); return p ? p.textContent : ''; });
  return {
    status: ctx.kernelDisplayStatus,
    counts: code.map(c => c.model.executionCount),
    queued: prompts.filter(p => p.includes('*')).length,
    errors, stderr,
  };
}
"""

JS_RUN_IN_KERNEL = """
async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let out = '';
  future.onIOPub = msg => {
    const t = msg.header.msg_type;
    if (t === 'stream') out += msg.content.text;
    if (t === 'error') out += `${msg.content.ename}: ${msg.content.evalue}`;
  };
  await future.done;
  return out;
}
"""

JS_SHUTDOWN_KERNEL = "async () => { await window.jupyterapp.shell.currentWidget.sessionContext.shutdown(); }"

# sha256 (first 16 hex digits) of the bytes behind an <img src="blob:..."> -- the PNG the
# widget received -- plus whether the browser decoded it into a visible picture.
JS_IMAGE_DIGEST = """
async (img) => {
  const buf = await (await fetch(img.src)).arrayBuffer();
  const d = await crypto.subtle.digest('SHA-256', buf);
  const hex = [...new Uint8Array(d)].map(b => b.toString(16).padStart(2, '0')).join('');
  const r = img.getBoundingClientRect();
  return {hash: hex.slice(0, 16), src: img.src, bytes: buf.byteLength, complete: img.complete,
          natural: [img.naturalWidth, img.naturalHeight], box: [r.width, r.height]};
}
"""


# --------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------

class LabBrowser:
    """Headless Chromium (system executable) via Playwright's sync API; one page per notebook."""

    def __init__(self, server: LabServer, viewport=(1280, 900)):
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as err:  # not skipped: CI must have it
            raise AssertionError(f"Python package playwright is missing ({err}).\n{INSTALL_HINT}") from err
        self.server = server
        executable = find_chromium()
        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            self.context = self.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        except Exception:
            self._pw.stop()
            raise
        self.console: list[str] = []  # browser console errors and uncaught page exceptions, for reports

    def open_from_file_browser(self, page, rel_path: str, timeout_s: float = 60) -> None:
        """Open a file as a student does: the file browser's home (the server's root), then a double click
        on each folder and on the file."""
        page.locator(".jp-BreadCrumbs-home").first.click(timeout=timeout_s * 1000)
        for part in rel_path.split("/"):
            item = page.locator(".jp-DirListing-content .jp-DirListing-item").filter(
                has=page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(part)}$")))
            item.first.dblclick(timeout=timeout_s * 1000)

    def open_notebook(self, rel_path: str, timeout_s: float = 120):
        """A page showing the notebook, once its kernel has started and reports idle."""
        page = self.context.new_page()
        page.on("console", lambda m: self.console.append(f"[{rel_path}] console.{m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(f"[{rel_path}] page error: {e}"))
        # a workspace of its own: the default one would reopen (and restart kernels for) the
        # notebooks of earlier pages
        workspace = re.sub(r"\W+", "-", Path(rel_path).stem)
        page.goto(self.server.url(f"lab/workspaces/{workspace}/tree/{rel_path}"))
        # the first kernel start of a fresh page takes seconds: wait on its state, not on a sleep
        page.wait_for_function(JS_KERNEL_IDLE, timeout=timeout_s * 1000, polling=250)
        return page

    def run_all_cells(self, page, timeout_s: float) -> dict:
        """Run > Run All Cells from the menu bar, as a student would; returns the final state.

        Done when the kernel is idle, no cell is queued ([*]) and every code cell has an execution
        count -- or an error stopped the run (JupyterLab stops Run All at the first error).
        """
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel:visible", has_text=re.compile(r"^Run All Cells$")).click()
        deadline = time.monotonic() + timeout_s
        settled = 0
        state = page.evaluate(JS_NOTEBOOK_STATE)
        while time.monotonic() < deadline:
            state = page.evaluate(JS_NOTEBOOK_STATE)
            finished = state["status"] == "idle" and not state["queued"] and (
                all(c is not None for c in state["counts"]) or state["errors"])
            settled = settled + 1 if finished else 0
            if settled >= 2:  # twice in a row, half a second apart
                state["timed_out"] = False
                return state
            time.sleep(0.5)
        state["timed_out"] = True
        return state

    def run_in_kernel(self, page, code: str) -> str:
        return page.evaluate(JS_RUN_IN_KERNEL, code)

    def close_notebook(self, page) -> None:
        try:
            page.evaluate(JS_SHUTDOWN_KERNEL)
        except Exception:  # the page may be gone after a failure; the server stop kills kernels anyway
            pass
        page.close()

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._pw.stop()


def shrink_png(src: Path, dst: Path, max_bytes: int = 80_000, max_width: int = 900) -> int:
    """Copy a screenshot to dst as a PNG under max_bytes: narrower and fewer colours if needed."""
    from PIL import Image

    im = Image.open(src).convert("RGB")
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for colors in (None, 128, 64, 32, 16):
        out = im if colors is None else im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
        out.save(dst, format="PNG", optimize=True)
        if dst.stat().st_size <= max_bytes:
            break
    return dst.stat().st_size
