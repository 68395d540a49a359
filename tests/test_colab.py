"""The setup cell's Colab branch, run as Colab would run it: a fresh kernel where `google.colab` is
already imported, REPO_URL set by the instructor. Here the URL is a local clone (file://), the kit
folder a temporary one, and google.colab a stand-in that records the widget-manager call."""

from __future__ import annotations

import json
import os
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


COLAB_SUBMIT_STAND_IN = {
    "__init__.py": "from . import _message, files, output\n",
    "output.py": "def enable_custom_widget_manager():\n    pass\n",
    # Colab's front end hands the running notebook over as {"ipynb": <the notebook with its outputs>}
    "_message.py": ("import json, os\n"
                    "requests = []\n"
                    "def blocking_request(kind, request='', timeout_sec=None):\n"
                    "    requests.append(kind)\n"
                    "    with open(os.environ['FAKE_COLAB_IPYNB']) as f:\n"
                    "        return {'ipynb': json.load(f)}\n"),
    "files.py": "downloads = []\ndef download(path):\n    downloads.append(path)\n",
}


@pytest.mark.slow
def test_colab_submit_cell_packs_the_notebooks_as_run_and_downloads_the_zip(tmp_path):
    """Notebook 05's last cell on Colab: this notebook from the running session, 01-04 from the student's
    saved copies in Drive (the newest executed one of each), the task files and fid.json; the zip is offered
    for download and kept in the kit. A notebook with no executed copy in Drive is named in a note."""
    import sys
    import zipfile

    sys.path.insert(0, str(Path(__file__).parent))
    from browser_helpers import copy_repo

    kit = copy_repo(tmp_path / "content" / "hw3-kit")
    fake = tmp_path / "fake_colab" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    for name, text in COLAB_SUBMIT_STAND_IN.items():
        (fake / name).write_text(text)
    drive = tmp_path / "drive" / "Colab Notebooks"
    drive.mkdir(parents=True)

    def executed(name, marker):
        nb = nbformat.read(kit / "notebooks" / f"{name}.ipynb", as_version=4)
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=marker)]
        nb.cells[1].execution_count = 1
        return nb

    nbformat.write(executed("01_data_prep", "old run"), drive / "Copy of 01_data_prep.ipynb")
    os.utime(drive / "Copy of 01_data_prep.ipynb", (1, 1))
    nbformat.write(executed("01_data_prep", "ran 01"), drive / "Copy of 01_data_prep (1).ipynb")
    nbformat.write(executed("02_unet", "ran 02"), drive / "Copy of 02_unet.ipynb")
    nbformat.write(nbformat.read(kit / "notebooks" / "03_forward_diffusion.ipynb", as_version=4),
                   drive / "03_forward_diffusion.ipynb")  # saved, never run: not taken
    live = executed("05_sampling_and_fid", "ran 05 live")
    nbformat.write(live, tmp_path / "live.ipynb")
    runs = Path(os.environ["HW3_RUNS_DIR"]) / "cpu"  # the kernel inherits the test's runs folder
    runs.mkdir(parents=True)
    (runs / "fid.json").write_text('{"profile": "cpu"}')

    submit_src = nbformat.read(REPO / "notebooks" / "05_sampling_and_fid.ipynb", as_version=4).cells[-1].source
    assert "colab_submit(STUDENT" in submit_src and "in_colab()" in submit_src
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"import sys; sys.path[:0] = [{str(tmp_path / 'fake_colab')!r}, {str(kit)!r}]\n"
                                  "import google.colab\n"
                                  f"import hw3_utils.submit as _s; _s.DRIVE_NOTEBOOKS = _s.Path({str(drive)!r})"),
        nbformat.v4.new_code_cell(submit_src),  # as written: the placeholder id is refused
        nbformat.v4.new_code_cell(submit_src.replace('"your-student-id"', '"s1234567"')),
        nbformat.v4.new_code_cell("import json, google.colab as c; print(json.dumps([c.files.downloads, "
                                  "c._message.requests]))"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    env = {**os.environ, "FAKE_COLAB_IPYNB": str(tmp_path / "live.ipynb")}
    with client.setup_kernel(env=env):
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)

    refused = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert refused and "Set STUDENT" in refused[0].evalue
    assert not [o for o in nb.cells[2].outputs if o.output_type == "error"], nb.cells[2].outputs
    printed = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.output_type == "stream")
    assert "01_data_prep.ipynb: your copy Copy of 01_data_prep (1).ipynb" in printed
    assert "03_forward_diffusion.ipynb: no executed copy" in printed and "04_training.ipynb: no executed" in printed
    zpath = kit / "submission_s1234567.zip"
    downloads, requests = json.loads("".join(o.get("text", "") for o in nb.cells[3].outputs))
    assert downloads == [str(zpath)] and requests == ["get_ipynb"]  # asked once, after the placeholder was refused
    with zipfile.ZipFile(zpath) as z:
        def text(name):
            return z.read(f"notebooks/{name}.ipynb").decode()
        assert "ran 01" in text("01_data_prep") and "old run" not in text("01_data_prep")  # the newest copy
        assert "ran 02" in text("02_unet") and "ran 05 live" in text("05_sampling_and_fid")
        assert "hw3_utils/diffusion.py" in z.namelist() and "runs/cpu/fid.json" in z.namelist()
