"""hw3_utils.submit: what goes into submission_<student>.zip, the manifest, the warnings."""

from __future__ import annotations

import hashlib
import json
import zipfile

from grader import REPO
from hw3_utils import submit


def test_pack_contents_manifest_and_warnings(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "full-smoke").mkdir(parents=True)
    (runs / "full-smoke" / "fid.json").write_text('{"fid_vs_mnist_train": 1.0}')
    (runs / "full").mkdir()  # no fid.json: not packed
    zpath = submit.pack("Ada Lovelace", tmp_path, runs=runs)
    assert zpath.name == "submission_Ada_Lovelace.zip"
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        man = json.loads(z.read("manifest.json"))
        for name in names - {"manifest.json"}:
            assert man["files"][name] == hashlib.sha256(z.read(name)).hexdigest()
    assert {"hw3_utils/data.py", "hw3_utils/unet.py", "hw3_utils/diffusion.py", "hw3_utils/pipeline.py",
            "runs/full-smoke/fid.json", "manifest.json"} <= names
    assert {f"notebooks/{p.name}" for p in (REPO / "notebooks").glob("*.ipynb")} <= names
    assert man["profiles"] == ["full-smoke"] and man["student"] == "Ada_Lovelace" and man["torch"]
    out = capsys.readouterr().out
    assert "packed" in out and "WARNING: no fid.json" not in out


def test_pack_warns_without_fid(tmp_path, capsys):
    submit.pack("x", tmp_path, runs=tmp_path / "none")
    assert "WARNING: no fid.json" in capsys.readouterr().out
