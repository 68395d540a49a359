"""The setup cell's Colab branch, run as Colab would run it: a fresh kernel where `google.colab` is
already imported, REPO_URL set by the instructor. Here the URL is a local clone (file://), the kit
folder a temporary one, and google.colab a stand-in that records the widget-manager call."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent

STAND_IN = '''"""Stand-in for Colab's google.colab.output: records calls instead of talking to Colab's front end."""
calls = []


def enable_custom_widget_manager():
    calls.append("enable_custom_widget_manager")
'''


@pytest.mark.slow
def test_setup_cell_colab_branch_clones_installs_and_enables_widgets(tmp_path):
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(REPO), str(origin)], check=True)
    fake = tmp_path / "fake_colab" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("from . import output\n")
    (fake / "output.py").write_text(STAND_IN)
    kit = tmp_path / "content" / "hw3-kit"

    setup_src = nbformat.read(REPO / "notebooks" / "01_data_prep.ipynb", as_version=4).cells[1].source
    assert 'REPO_URL = "https://github.com/YOUR-ORG/hw3-ddpm-kit.git"' in setup_src
    assert 'KIT_DIR = "/content/hw3-kit"' in setup_src
    cell = (setup_src.replace("https://github.com/YOUR-ORG/hw3-ddpm-kit.git", f"file://{origin}")
            .replace('"/content/hw3-kit"', repr(str(kit))))
    report = ("import json, hw3_utils, google.colab.output as _o\n"
              "print(json.dumps({'file': hw3_utils.__file__, 'calls': _o.calls, 'profile': cfg.profile, "
              "'path0': sys.path[0]}))")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"import sys; sys.path.insert(0, {str(tmp_path / 'fake_colab')!r})\n"
                                  "import google.colab  # Colab's runtime has imported it before any user code"),
        nbformat.v4.new_code_cell(cell),
        nbformat.v4.new_code_cell(report),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    assert (kit / ".git").is_dir() and (kit / "hw3_utils" / "__init__.py").is_file()  # cloned
    out = json.loads("".join(o.get("text", "") for o in nb.cells[2].outputs if o.output_type == "stream"))
    assert out["file"] == str(kit / "hw3_utils" / "__init__.py")  # the clone's package, not this checkout's
    assert out["path0"] == str(kit)
    assert out["calls"] == ["enable_custom_widget_manager"]  # ipywidgets 8 sliders can render
    # cpu without CUDA, unless HW3_PROFILE says otherwise
    assert out["profile"] in ("cpu", "full", "cpu-smoke", "full-smoke")
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs if o.output_type == "stream")
    assert "hw3_utils: profile" in printed and "device" in printed

    # running the cell again (a reconnect) reuses the clone instead of failing on an existing folder
    again = nbformat.v4.new_notebook(cells=[nb.cells[0], nbformat.v4.new_code_cell(cell)])
    again.metadata = nb.metadata
    NotebookClient(again, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()


def test_setup_cell_without_repo_url_says_what_to_set(tmp_path):
    setup_src = nbformat.read(REPO / "notebooks" / "01_data_prep.ipynb", as_version=4).cells[1].source
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import sys, types; sys.modules['google.colab'] = types.ModuleType('google.colab')"),
        nbformat.v4.new_code_cell(setup_src),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with pytest.raises(Exception, match="Set REPO_URL in this cell"):
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
