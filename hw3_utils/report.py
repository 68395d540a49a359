"""The student's report: one HTML file from the executed notebooks and the run folder, shaped like the seed
report (model, implementation, results, conclusion), with the figures embedded so it opens anywhere.

    make report                      # or: python -m hw3_utils.report [--out report.html]

`make submit` (and the Colab submit cell) build it from the notebooks they pack and put it in the zip. What it
holds: the written answers (Markdown, raw HTML escaped), the loss curve, the 8x8 process grid and the sample
grid of the run, the FID table beside the floor and the report's numbers, and the profile and hyperparameters
from the run's config.json. A Content-Security-Policy without scripts keeps whatever an answer holds inert.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from datetime import datetime, timezone
from pathlib import Path

from .answers import read_all
from .config import Config, runs_dir
from .pipeline import REPORT_FID
from .runfolder import FIGURES, config_path, fid_json_path, fid_json_paths, figure_path
from .student_files import Unreadable, load_json, load_notebook

KIT = Path(__file__).resolve().parent.parent
REPORT = "report.html"
# The seed report's sections, and the written questions each one holds
SECTIONS = [
    ("1. Model description", ["q02", "q03"], []),
    ("2. Implementation details", ["q01", "q04", "q09"], ["config"]),
    ("3. Result analysis", ["q05", "q06", "q10", "q07"], ["loss_curve", "process_grid", "samples_grid", "fid"]),
    ("4. Conclusion", ["q08"], []),
    ("5. Extension: classifier-free guidance", ["q11", "q12"], []),
]
OPTIONAL = {"5. Extension: classifier-free guidance"}  # left out when the kit has no notebook 06
CAPTIONS = {"loss_curve": "The training loss (every logged step, smoothed, epoch means)",
            "process_grid": "The 8x8 process grid: 8 samples (columns) from noise (top) to digits (bottom)",
            "samples_grid": "64 generated digits (the first PNGs of the FID folder)"}
CONFIG_ROWS = ("profile", "in_channels", "model_channels", "channel_mult", "time_emb_dim", "timesteps", "beta_start",
               "beta_end", "variance", "batch_size", "epochs", "lr", "lr_warmup_steps", "lr_decay", "ema_decay",
               "sampler", "sample_steps", "clip_denoised", "num_samples")
STYLE = """body{font-family:sans-serif;max-width:920px;margin:2em auto;line-height:1.45;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
figure{margin:1em 0}figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
.answer{background:#f6f8fa;border-left:4px solid #4c72b0;padding:.4em 1em;margin:.6em 0}
.missing{color:#a33}.meta{color:#666;font-size:.9em}"""


def _markdown(text: str) -> str:
    """A student's Markdown as HTML, any raw HTML in it escaped."""
    import mistune

    return mistune.create_markdown(escape=True, plugins=["table"])(text)


def _run_folder(runs: Path, profile: str | None) -> Path | None:
    """The run the report is about: `profile`'s, else the one whose fid.json is newest."""
    if profile:
        return runs / profile
    fids = sorted(fid_json_paths(runs), key=lambda p: p.stat().st_mtime)
    return fids[-1].parent if fids else None


def _figure(run: Path | None, name: str) -> str:
    path = figure_path(run, name) if run else None
    if path is None or not path.is_file():
        return f'<p class="missing">{html.escape(CAPTIONS[name])}: not found (run notebooks 04 and 05).</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(CAPTIONS[name])}</figcaption></figure>")


def _config_table(run: Path | None) -> str:
    path = config_path(run) if run else None
    if path is None or not path.is_file():
        return '<p class="missing">No config.json in the run folder (run notebook 04).</p>'
    cfg = Config.load(path)
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(getattr(cfg, k)))}</td></tr>" for k in CONFIG_ROWS)
    return f"<h3>Profile and hyperparameters (the run's config.json)</h3><table>{rows}</table>"


def _fid_table(run: Path | None) -> str:
    path = fid_json_path(run) if run else None
    if path is None or not path.is_file():
        return '<p class="missing">No fid.json in the run folder (run notebook 05).</p>'
    try:
        rec = load_json(path)
    except Unreadable as err:
        return f'<p class="missing">fid.json cannot be read: {html.escape(str(err))}.</p>'

    def num(key):
        v = rec.get(key)
        return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"

    rows = [("vs MNIST train", num("fid_vs_mnist_train")), ("vs MNIST test", num("fid_vs_mnist_test")),
            (f"floor: {rec.get('floor_images', '?')} real test images vs train", num("fid_floor_test_vs_train"))]
    rows += [(f"the report, {k}", f"{v:.2f}") for k, v in REPORT_FID.items()]
    body = "".join(f"<tr><td>{html.escape(str(a))}</td><td>{b}</td></tr>" for a, b in rows)
    return (f"<h3>FID ({html.escape(str(rec.get('num_samples', '?')))} samples, "
            f"{html.escape(str(rec.get('sampler', '')))})</h3><table><tr><th>FID</th><th>value</th></tr>{body}"
            "</table><p class=\"meta\">The report used 10,000 samples; FID is biased upwards at fewer, so compare "
            "with the floor beside it.</p>")


def build(notebooks: dict[str, Path] | None = None, runs: Path | None = None, profile: str | None = None,
          student: str = "", kit: Path = KIT) -> str:
    """The report's HTML from `notebooks` ({file name: path}, default the kit's) and the run folder."""
    notebooks = notebooks or {p.name: p for p in sorted((kit / "notebooks").glob("*.ipynb"))}
    texts = {}
    for name, path in sorted(notebooks.items()):
        try:
            texts[name] = load_notebook(path)
        except ValueError:  # student_files.Unreadable: a notebook that cannot be read adds no answers
            continue
    found = {qid: c.answer for qid, c in read_all(texts).items()}  # the copies the grader counts
    run = _run_folder(Path(runs) if runs else runs_dir(), profile)
    blocks = {"config": _config_table(run), "fid": _fid_table(run), **{f: _figure(run, f) for f in FIGURES}}
    parts = []
    for title, qids, extras in SECTIONS:
        if title in OPTIONAL and not any(q in found for q in qids):
            continue
        parts.append(f"<h2>{title}</h2>")
        parts += [blocks[e] for e in extras]
        for qid in qids:
            a = found.get(qid)
            if a is None:
                parts.append(f'<p class="missing">Question {qid}: not found in the notebooks.</p>')
            elif not a.text:
                parts.append(f'<p class="missing">Question {qid} ({a.notebook}): not answered yet.</p>')
            else:
                parts.append(f'<div class="answer"><p class="meta">{qid}, {a.points} points, from {a.notebook}'
                             f"</p>{_markdown(a.text)}</div>")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    who = html.escape(student) if student else "(make submit fills in the student)"
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\"><title>HW3 report</title>"
            f"<style>{STYLE}</style></head><body><h1>HW3 · Image generation with a DDPM on MNIST</h1>"
            f"<p class=\"meta\">{who} · run folder {html.escape(run.name if run else 'none')} · built {when}</p>"
            + "".join(parts) + "</body></html>\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw3_utils.report", description="Build report.html from the notebooks")
    p.add_argument("--out", default=str(KIT / REPORT), help=f"default: {REPORT} in the kit's folder")
    p.add_argument("--profile", default=None, help="whose run folder (default: the newest fid.json's)")
    args = p.parse_args(argv)
    from .atomic import atomic_write

    out = Path(args.out)
    atomic_write(out, build(profile=args.profile))
    print(f"wrote {out}: open it in a browser (the written answers, figures and FID of your run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
