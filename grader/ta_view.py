"""The TA's view of the written half: one HTML page per question, every student's answer rendered beside their
own run.

    OUT/written/index.html        the questions, with links
    OUT/written/<qid>.html        prompt, rubric and model answer, then every student's answer: Markdown and math
                                  rendered (math as MathML, which browsers draw with no script and no network),
                                  the flags on where it was found, and beside it what the student's notebook of
                                  that question showed (figures, the printed check) and, where that notebook
                                  writes fid.json, their FID table
    OUT/written/run/<student>/    those figures, decoded and re-encoded here

Everything a student wrote is hostile: answers go through markdown-it (raw HTML off), math through
latex2mathml, and the result through nh3 (an allowlist of the tags and attributes produced here: no script,
no event handler, no style, no image, no `javascript:` URL); each image is decoded by PIL within size limits
and written again as a PNG of bounded size; printed text and FID values are escaped. The page itself runs no
script (a Content-Security-Policy says so).
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import warnings
from pathlib import Path

from hw3_utils.answers import cell_source
from hw3_utils.atomic import atomic_write
from hw3_utils.runfolder import CONDITIONAL_FIGURES
from hw3_utils.runfolder import FIGURES as RUN_FIGURES

FIGURES = RUN_FIGURES + CONDITIONAL_FIGURES  # the figures a notebook saves by name, shown beside its questions
MATH_CHARS = 4000  # of one formula; a longer one is shown as code
IMAGE_BYTES = 8 * 1024 * 1024  # of one decoded image output
IMAGE_PIXELS = 4096 * 4096  # of one image, before PIL decodes it
IMAGE_SIDE = 1024  # the longest side of a figure as shown
PRINTED_CHARS = 600  # of one check's printed output: its last lines
IMAGE_TRIES = 3  # images decoded per figure, from the notebook's last: a figure is the last one that decodes
PRINTED = ("mean_error(", "print_sweep(")  # code cells whose printed output sits beside their notebook's questions
FID_WRITER = "write_fid_json("  # the code cell of the notebook whose questions get the FID table
FID_ROWS = (("vs MNIST train", "fid_vs_mnist_train"), ("vs MNIST test", "fid_vs_mnist_test"),
            ("floor: test vs train", "fid_floor_test_vs_train"), ("samples", "num_samples"),
            ("profile", "profile"), ("sampler", "sampler"))
HTML_TAGS = {"p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "h1", "h2", "h3",
             "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "s", "span", "div"}
MATH_TAGS = {"math", "semantics", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup", "msubsup",
             "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mstyle",
             "mpadded", "mphantom", "menclose", "merror", "mmultiscripts", "mprescripts", "none"}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "math": {"display", "xmlns"},
              "mo": {"stretchy", "fence", "separator", "lspace", "rspace", "form", "largeop", "movablelimits",
                     "accent", "minsize", "maxsize", "symmetric"},
              "mover": {"accent"}, "munder": {"accentunder"}, "munderover": {"accent", "accentunder"},
              "mfrac": {"linethickness"}, "mstyle": {"displaystyle", "scriptlevel"}, "mi": {"mathvariant"},
              "mspace": {"width", "height", "depth"}, "mpadded": {"width", "height", "depth", "lspace", "voffset"},
              "mtable": {"columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines"},
              "mtd": {"columnalign", "rowspan", "columnspan"}, "menclose": {"notation"}}
STYLE = """body{font-family:sans-serif;max-width:1200px;margin:1.5em auto;line-height:1.45;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.4em}
.box{background:#f6f8fa;border-left:4px solid #4c72b0;padding:.3em 1em;margin:.6em 0}
.rubric{border-left-color:#c44e52}.student{display:flex;gap:1.5em;align-items:flex-start;border-top:1px solid #ddd;
padding:.6em 0}.answer{flex:1 1 55%;min-width:0;overflow-wrap:anywhere}.run{flex:1 1 45%;min-width:0}
.run img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}.flag{color:#a33;font-size:.9em}
.missing{color:#a33}.meta{color:#666;font-size:.9em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}pre{white-space:pre-wrap}
figure{margin:.4em 0}figcaption{color:#666;font-size:.85em}"""
CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"


# rendering what a student wrote ---------------------------------------------------------------------------
def _math(latex: str, display: bool) -> str:
    """A formula as MathML (latex2mathml), or as escaped code when it is too long or will not convert."""
    from latex2mathml.converter import convert

    if len(latex) <= MATH_CHARS:
        try:
            return convert(latex, display="block" if display else "inline")
        except Exception:  # any formula latex2mathml cannot take (RecursionError included) is shown as written
            pass
    return f"<code>{html.escape(latex[:MATH_CHARS])}</code>"


def _markdown():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": False, "maxNesting": 20}).enable("table")
    dollarmath_plugin(md, renderer=lambda content, opts: _math(content, opts.get("display_mode", False)))
    return md


def sanitize(fragment: str) -> str:
    """HTML reduced to the allowlist (nh3): what markdown-it and latex2mathml produce, nothing else."""
    import nh3

    return nh3.clean(fragment, tags=HTML_TAGS | MATH_TAGS, attributes=ATTRIBUTES, url_schemes={"http", "https"},
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def markdown_html(text: str, inline: bool = False) -> str:
    """A student's Markdown with `$...$` / `$$...$$` math as safe HTML with MathML (`inline`: one line of it, no
    paragraph around it)."""
    try:
        md = _markdown()
        rendered = md.renderInline(str(text)) if inline else md.render(str(text))
    except Exception:  # a parser failure costs this answer its formatting, never the page
        rendered = f"<pre>{html.escape(str(text))}</pre>"
    return sanitize(rendered)


# the student's run, from their submission ------------------------------------------------------------------
def png(data: bytes) -> bytes | None:
    """An image decoded by PIL within IMAGE_BYTES / IMAGE_PIXELS and written again as an RGB PNG no larger than
    IMAGE_SIDE; None for anything that is not such an image."""
    from PIL import Image

    if len(data) > IMAGE_BYTES:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.format != "PNG" or im.width * im.height > IMAGE_PIXELS or min(im.size) < 1:
                    return None
                im = im.convert("RGB")
                im.thumbnail((IMAGE_SIDE, IMAGE_SIDE))
                out = io.BytesIO()
                im.save(out, "PNG", optimize=True)
                return out.getvalue()
    except Exception:  # truncated, malformed, a bomb: no figure
        return None


def _outputs(cell: dict, kind: tuple[str, ...]) -> list:
    outs = cell.get("outputs") if cell.get("cell_type") == "code" else None
    return [o for o in outs or [] if isinstance(o, dict) and o.get("output_type") in kind]


def _text(value) -> str | None:
    """A notebook field that nbformat stores as a string or a list of strings, as one string; None otherwise."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return value if isinstance(value, str) else None


def _image(out: dict) -> bytes | None:
    """One output's PNG, decoded and re-encoded (`png`); None when it holds none that decodes."""
    data = out.get("data")
    data = _text(data.get("image/png")) if isinstance(data, dict) else None
    if data is None or len(data) > IMAGE_BYTES * 4 // 3 + 4:
        return None
    try:
        return png(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return None


def _figure(cells: list, name: str) -> bytes | None:
    """The figure `name` as the notebook last showed it: the last image that decodes, of the last code cells
    that save it (`"<name>"` in their source), walked from the end; at most IMAGE_TRIES images decoded."""
    tries = 0
    for cell in reversed(cells):
        if cell.get("cell_type") != "code" or f'"{name}"' not in cell_source(cell):
            continue
        for out in reversed(_outputs(cell, ("display_data", "execute_result"))):
            if not isinstance(out.get("data"), dict) or "image/png" not in out["data"]:
                continue
            image, tries = _image(out), tries + 1
            if image or tries >= IMAGE_TRIES:
                return image
    return None


def printed_tail(text: str) -> str:
    """The end of a cell's printed output, at most PRINTED_CHARS in whole lines: what a check prints last (a
    table, a verdict) comes after whatever the cell printed on the way (a classifier trained, a download)."""
    kept, size = [], 0
    for line in reversed(text.strip().splitlines()):
        size += len(line) + 1
        if size > PRINTED_CHARS:
            return "\n".join(["…", *reversed(kept)]) if kept else "…" + line[-PRINTED_CHARS:]
        kept.append(line)
    return "\n".join(reversed(kept))


def notebook_run(nb: dict) -> dict:
    """What one checked notebook showed of the run: {"figures": {name: PNG bytes}, "printed": [text],
    "writes_fid": bool}. figures: `_figure` of each of FIGURES; printed: the end of the stdout (`printed_tail`)
    of the cells named in PRINTED."""
    cells = [c for c in nb.get("cells", []) if isinstance(c, dict)]
    code = [cell_source(c) for c in cells if c.get("cell_type") == "code"]
    figures = {name: image for name in FIGURES if (image := _figure(cells, name))}
    printed = []
    for cell in cells:
        if cell.get("cell_type") == "code" and any(p in cell_source(cell) for p in PRINTED):
            text = "".join(_text(o.get("text")) or "" for o in _outputs(cell, ("stream",)) if o.get("name") == "stdout")
            if text.strip():
                printed.append(printed_tail(text))
    return {"figures": figures, "printed": printed, "writes_fid": any(FID_WRITER in src for src in code)}


def fid_rows(record) -> list[list[str]]:
    """[[label, value]] of a submitted fid.json (checked JSON): numbers formatted, text cut; escaped when shown."""
    rows = []
    for label, key in FID_ROWS:
        v = record.get(key) if isinstance(record, dict) else None
        if isinstance(v, bool) or v is None:
            continue
        rows.append([label, f"{v:.2f}" if isinstance(v, float) else str(v)[:40]])
    return rows


# the pages ------------------------------------------------------------------------------------------------
def _run_html(run: dict | None, folder: str, fid: list | None) -> str:
    """The student's figures, printed check and FID table for one question ("" when there is none)."""
    if not run:
        return ""
    parts = []
    for name, file in sorted(run.get("figures", {}).items()):
        parts.append(f'<figure><img alt="{html.escape(name)}" src="{html.escape(folder)}/{html.escape(file)}">'
                     f"<figcaption>their {html.escape(name.replace('_', ' '))}</figcaption></figure>")
    for text in run.get("printed", []):
        parts.append(f"<pre>{html.escape(text)}</pre>")
    if run.get("writes_fid"):
        if fid:
            body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in fid)
            parts.append(f"<table><tr><th>their fid.json</th><th></th></tr>{body}</table>")
        else:
            parts.append('<p class="missing">no readable fid.json in the submission</p>')
    if not parts:
        parts.append('<p class="missing">no figures in this notebook as submitted (not executed?)</p>')
    return '<div class="run">' + "".join(parts) + "</div>"


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>\n")


def question_page(q, store: dict) -> str:
    """One question's page: `q` a written.Question, `store` the answers store (written.py)."""
    body = [f"<h1>{html.escape(q.qid)} · {markdown_html(q.title, inline=True)}</h1>",
            f'<p class="meta">From {html.escape(q.notebook)}, {q.points} points. Score in sheet.csv '
            f"(question {html.escape(q.qid)}).</p>", markdown_html(q.prompt),
            '<h2>Rubric</h2><div class="box rubric">', markdown_html(q.rubric), "</div>",
            '<h2>Model answer</h2><div class="box">', markdown_html(q.model), "</div>",
            f"<h2>Answers ({len(store)})</h2>"]
    for student, entry in sorted(store.items()):
        a = entry.get("answers", {}).get(q.qid, {})
        text = a.get("text", "")
        flags = "".join(f'<p class="flag">{html.escape(f)}</p>' for f in a.get("flags", []))
        others = "".join(f'<details><summary class="flag">another copy (not counted)</summary>{markdown_html(t)}'
                         "</details>" for t in a.get("others", []))
        answer = markdown_html(text) if text.strip() else '<p class="missing">no answer</p>'
        run = _run_html(entry.get("run", {}).get(q.notebook), f"run/{student}", entry.get("fid"))
        body.append(f'<section class="student" id="{html.escape(student)}"><div class="answer">'
                    f"<h3>{html.escape(student)}</h3>{flags}{answer}{others}</div>{run}</section>")
    return _page(f"{q.qid} · written answers", body)


def write_pages(questions: list, store: dict, folder: Path) -> None:
    """OUT/written/<qid>.html for every question and index.html, from the whole store (every student)."""
    folder = Path(folder)
    for q in questions:
        atomic_write(folder / f"{q.qid}.html", question_page(q, store))
    items = "".join(f'<li><a href="{html.escape(q.qid)}.html">{html.escape(q.qid)}</a> · '
                    f"{markdown_html(q.title, inline=True)}</li>" for q in questions)
    atomic_write(folder / "index.html", _page("Written answers", [
        "<h1>Written answers</h1>", f"<p>{len(store)} students. Score in sheet.csv.</p><ul>{items}</ul>"]))
