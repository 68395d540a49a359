"""The student's report: the written answers (raw HTML inert), the figures embedded, the FID table beside the
floor and the report's numbers, the config; built by `make submit` from the notebooks it packs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nbformat
from PIL import Image

from grader import REPO
from hw3_utils import get_config, report, submit
from hw3_utils.runfolder import FIGURES, figure_path, write_fid_json

TABLE = {"fid_vs_mnist_train": 22.83, "fid_vs_mnist_test": 22.61, "fid_floor_test_vs_train": 8.89,
         "floor_images": 1000}


def _run(runs: Path) -> Path:
    cfg = get_config("cpu", verbose=False)
    run = runs / "cpu"
    write_fid_json(run, cfg, TABLE, "cpu")
    cfg.save(run / "config.json")
    for name in FIGURES:
        Image.new("RGB", (32, 32), (10, 200, 10)).save(figure_path(run, name))
    return run


def _notebooks(tmp: Path, answer: str) -> dict[str, Path]:
    """The kit's notebooks with every answer cell holding `answer` ({id}: the question's), as a student saves them."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = {}
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("solution"):
                cell.source = answer.format(id=cell.id)
        out[path.name] = tmp / path.name
        nbformat.write(nb, out[path.name])
    return out


def test_report_holds_answers_figures_fid_and_config(tmp_path):
    _run(tmp_path / "runs")
    nbs = _notebooks(tmp_path, "The noise is **N(0, I)** <script>alert(1)</script> <img src=x onerror=alert(2)> ({id})")
    html = report.build(nbs, runs=tmp_path / "runs", student="ada")
    for title, qids, _ in report.SECTIONS:
        assert f"<h2>{title}</h2>" in html and all(f"({q})" in html for q in qids)
    assert "<strong>N(0, I)</strong>" in html  # Markdown rendered
    assert "<script>" not in html and "<img src=x" not in html and "&lt;script&gt;" in html  # HTML escaped
    assert "default-src 'none'" in html  # and no script could run anyway
    assert html.count('src="data:image/png;base64,') == 3 and "22.83" in html and "8.89" in html and "5.77" in html
    assert "<th>lr_decay</th><td>cosine</td>" in html and "ada" in html


def test_report_says_what_is_missing(tmp_path):
    html = report.build({}, runs=tmp_path / "none", kit=tmp_path)
    assert html.count('class="missing"') >= 8 + 3 and "run notebooks 04 and 05" in html


def test_submit_packs_the_report_and_warns_about_empty_answers(tmp_path, capsys):
    runs = tmp_path / "runs"
    _run(runs)
    zpath = submit.pack("ada", tmp_path, runs=runs)
    out = capsys.readouterr().out
    with zipfile.ZipFile(zpath) as z:
        html = z.read("report.html").decode()
        man = json.loads(z.read("manifest.json"))
    assert "report.html" in man["files"] and "22.83" in html
    assert "written answer(s)" not in out  # the instructor's notebooks hold model answers
    zpath = submit.pack("bob", tmp_path, runs=runs, notebooks=_notebooks(tmp_path / "nbs", "YOUR ANSWER HERE"))
    assert "written answer(s) q01 still empty" in capsys.readouterr().out
