"""The written half: questions with points and rubrics in the notebooks, frozen at release and stripped from it;
answers found where a student moved or copied them; the TA's pages (rendered, sanitized, the student's run beside
the answer); the sheet, a regrade that loses nothing, and the merge into the gradebook and the feedback."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from grader import REPO
from grader.release import make_release, strip_notebook
from grader.render import Graded, passed
from grader.ta_view import (
    ATTRIBUTES,
    HTML_TAGS,
    IMAGE_TRIES,
    MATH_TAGS,
    PRINTED_CHARS,
    markdown_html,
    notebook_run,
    png,
)
from grader.written import (
    CHANGED,
    OTHERS_KEPT,
    MergeError,
    freeze,
    graded_questions,
    merge,
    questions,
    release_without,
    submission_written,
    write_sheet,
)
from hw3_utils.answers import HINT, MARK_SCHEME, PLACEHOLDER, SOLUTION, answers, choose, empty_answers, is_answer_cell
from hw3_utils.tasks import TASKS

QS = questions()
TOTAL = sum(q.points for q in QS)
CORE = questions(without=("06",))  # a release without the optional extension (make release WITHOUT=06)
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(autouse=True)
def _no_release_file(tmp_path, monkeypatch):
    """Grading reads the notebooks frozen into OUT, never a grader/questions.json left by a `make release` here."""
    monkeypatch.setattr("grader.written.QUESTIONS_FILE", tmp_path / "no-release" / "questions.json")


def test_questions_have_points_rubrics_and_model_answers():
    assert sorted(q.qid for q in QS) == [f"q{k:02d}" for k in range(1, 13)] and TOTAL == 24
    # without notebook 06 the written half is the homework's ten questions, 20 points
    assert sorted(q.qid for q in CORE) == [f"q{k:02d}" for k in range(1, 11)] and sum(q.points for q in CORE) == 20
    assert {q.notebook for q in QS} - {q.notebook for q in CORE} == {"06_guidance"}
    for q in QS:
        assert q.title.startswith("Question ") and f"({q.points} points)" in q.title, q.title
        assert int(re.match(r"Question (\d+)", q.title).group(1)) == int(q.qid[1:]), q.qid
        assert len(q.prompt) > 50 and q.rubric.count("- ") >= 2 and len(q.model) > 100, q.qid
        assert MARK_SCHEME[0] not in q.model and SOLUTION[1] not in q.rubric, q.qid
        pts = sum(int(line.split()[1]) for line in q.rubric.splitlines() if line.startswith("- "))
        assert pts == q.points, f"{q.qid}: the rubric's points add up to {pts}, the question has {q.points}"


def test_release_strips_model_answers_and_rubrics(tmp_path):
    kit = make_release(tmp_path / "kit", quiet=True, repo_url="none", questions_out=tmp_path / "questions.json")
    texts = {p.stem: p.read_text() for p in (kit / "notebooks").glob("*.ipynb")}
    for q in QS:
        assert q.model[:60] not in texts[q.notebook] and q.rubric[:60] not in texts[q.notebook], q.qid
    for text in texts.values():
        assert not any(m in text for m in (*SOLUTION, *MARK_SCHEME))
    found = [a for name, text in texts.items() for a in answers(text, name)]
    assert len(found) == len(QS) and all(a.text == "" for a in found)
    assert PLACEHOLDER in texts["05_sampling_and_fid"]
    assert len(empty_answers(kit / "notebooks")) == len(QS) and empty_answers(REPO / "notebooks") == []
    frozen = json.loads((tmp_path / "questions.json").read_text())
    assert frozen["total_points"] == TOTAL and [q["qid"] for q in frozen["questions"]] == [q.qid for q in QS]
    # a release without notebook 06 freezes none of its questions
    make_release(tmp_path / "core", quiet=True, repo_url="none", questions_out=tmp_path / "core.json", without="06")
    frozen = json.loads((tmp_path / "core.json").read_text())
    assert frozen["total_points"] == 20 and [q["qid"] for q in frozen["questions"]] == [q.qid for q in CORE]
    assert not list(kit.rglob("questions.json")) and not list(kit.glob("docs/img/ta_*"))  # they hold answers
    with pytest.raises(ValueError, match="inside the student kit"):
        make_release(tmp_path / "kit2", quiet=True, repo_url="none", questions_out=tmp_path / "kit2" / "q.json")


def test_the_answer_cells_are_nbgrader_cells():
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader")
            if meta:
                assert cell["cell_type"] == "markdown" and meta["grade"] and meta["solution"], path.name
                assert meta["grade_id"] == cell["id"] and isinstance(meta["points"], int)


# a student's notebooks, as handed in -----------------------------------------------------------------------
def _png(w: int = 40, h: int = 30, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


def _handed_in(said: dict[str, str], figure: bytes | None = None, printed: str = "") -> dict[str, dict]:
    """The student release's notebooks {name: checked JSON} with `said` written into the answer cells; `figure`
    as the process grid's image output, `printed` as the mean-error check's output."""
    out = {}
    for nb in NOTEBOOKS:
        kit = json.loads(strip_notebook(nb.read_text(encoding="utf-8"), nb.name)[0])
        for cell in kit["cells"]:
            src = "".join(cell["source"])
            qid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if is_answer_cell(cell) and qid in said:
                cell["source"] = src.replace(PLACEHOLDER, said[qid])
            if figure and cell["cell_type"] == "code" and '"process_grid"' in src:
                cell["outputs"] = [{"output_type": "display_data", "metadata": {},
                                    "data": {"image/png": base64.b64encode(figure).decode()}}]
            if printed and cell["cell_type"] == "code" and "mean_error(" in src:
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": printed}]
        out[f"notebooks/{nb.name}"] = kit
    return out


def _graded(student: str, notebooks: dict, files: dict | None = None) -> Graded:
    said, written, flags = submission_written(notebooks, files or {})
    return Graded(student, "graded", {t: passed(task.points) for t, task in TASKS.items()}, flags=flags,
                  answers=said, written=written)


def _simple(student: str, said: dict[str, str]) -> Graded:
    return Graded(student, "graded", {t: passed(task.points) for t, task in TASKS.items()}, answers=said)


def _grades_csv(out: Path, students: list[str]) -> None:
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["student", *TASKS, "total", "status"])
        w.writeheader()
        w.writerows(_simple(s, {}).row() for s in students)


def _rows(sheet: Path) -> list[dict]:
    return list(csv.DictReader(open(sheet)))


def _fill(sheet: Path, fill) -> None:
    rows = _rows(sheet)
    for r in rows:
        fill(r)
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# finding the answers ---------------------------------------------------------------------------------------
def test_a_moved_duplicated_or_retyped_answer_is_used_and_flagged():
    nbs = _handed_in({"q01": "in place", "q04": "mine"})
    nb01, nb03 = nbs["notebooks/01_data_prep.ipynb"], nbs["notebooks/03_forward_diffusion.ipynb"]
    # q04's cell moved to the end of notebook 03; a copy of q01's cell (same grade_id) pasted lower with other text
    k = next(i for i, c in enumerate(nb03["cells"]) if c["id"] == "q04")
    nb03["cells"].append(nb03["cells"].pop(k))
    k = next(i for i, c in enumerate(nb01["cells"]) if c["id"] == "q01")
    nb01["cells"].append({**nb01["cells"][k], "id": "copy", "source": f"{HINT}\n\nthe copy"})
    # q02's answer retyped in a new cell (the metadata lost, the hint line kept) under its prompt; its cell left blank
    nb02 = nbs["notebooks/02_unet.ipynb"]
    k = next(i for i, c in enumerate(nb02["cells"]) if c["id"] == "q02")
    nb02["cells"].insert(k + 1, {"cell_type": "markdown", "id": "new", "metadata": {},
                                 "source": f"{HINT}\n\nretyped"})
    # q03's cell lost its metadata but kept its id
    k = next(i for i, c in enumerate(nb02["cells"]) if c["id"] == "q03")
    nb02["cells"][k] = {**nb02["cells"][k], "metadata": {}, "source": f"{HINT}\n\nby id"}
    said, written, flags = submission_written(nbs, {})
    assert said["q01"] == "in place" and said["q04"] == "mine" and said["q02"] == "retyped" and said["q03"] == "by id"
    f = written["flags"]
    assert "2 copies hold text; the one in 01_data_prep, cell" in f["q01"][0]
    assert written["others"]["q01"] == ["the copy"]
    assert "moved" in f["q04"][0] and "hint line" in f["q02"][0] and "cell id" in f["q03"][0]
    assert set(f) == {"q01", "q02", "q03", "q04"} and len(flags) == 4
    # the defined choice: the copy with text first, then its own cell under its prompt, then notebook order
    both = choose([a for name, nb in nbs.items() for a in answers(nb, Path(name).stem)])
    assert both["q01"].answer.in_place and both["q01"].answer.found_by == "cell"


# the TA's pages ----------------------------------------------------------------------------------------------
HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    r"$\href{javascript:alert(1)}{x}$",
    '<svg onload="alert(1)"><script>alert(1)</script></svg>',
    "<style>body{display:none}</style>",
    '<div style="position:fixed">x</div>',
    "![remote](https://example.org/track.png)",
    "<iframe src=https://example.org></iframe>",
    "> " * 5000 + "deep",
    "[" * 5000 + "x" + "]" * 5000,
    "$" + "{" * 3000 + "$",
    "x " * 50_000,
]


def _elements(html: str) -> list[tuple[str, dict]]:
    """Every element of an HTML fragment with its attributes, as a browser's tokenizer reads them."""
    from html.parser import HTMLParser

    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collect().feed(html)
    return found


@pytest.mark.parametrize("text", HOSTILE)
def test_answers_are_sanitized(text):
    allowed = HTML_TAGS | MATH_TAGS
    for tag, attrs in _elements(markdown_html(text)):
        assert tag in allowed and tag not in ("script", "style", "img", "iframe", "svg"), tag
        assert set(attrs) <= ATTRIBUTES.get(tag, set()) | {"rel"}, (tag, attrs)
        assert not any(a.startswith("on") or a in ("style", "src") for a in attrs), (tag, attrs)
        assert all(v is None or not v.strip().lower().startswith(("javascript:", "data:", "vbscript:"))
                   for v in attrs.values()), (tag, attrs)


def test_markdown_and_math_render_as_html_and_mathml():
    html = markdown_html(r"The SNR is **4 times** lower: $\mathrm{SNR}'_t = \bar\alpha_t/4$."
                         "\n\n$$E[x_t^2] = \\bar\\alpha_t E[x_0^2] + 1 - \\bar\\alpha_t$$"
                         "\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<strong>4 times</strong>" in html and "<table>" in html
    assert html.count("<math") == 2 and 'display="block"' in html and "<mfrac>" not in html
    assert "<msub>" in html and "<mover" in html  # x_t and the bar, as MathML elements
    assert "$" not in html


def test_images_are_reencoded_within_bounds():
    small = png(_png(40, 30))
    assert small and Image.open(io.BytesIO(small)).size == (40, 30)
    big = png(_png(3000, 1500))
    assert Image.open(io.BytesIO(big)).size == (1024, 512)
    assert png(b"\x89PNG\r\n\x1a\n" + b"\0" * 100) is None and png(b"GIF89a") is None
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, "PNG")  # a few kB that decode to 400 M pixels
    assert len(bomb.getvalue()) < 200_000 and png(bomb.getvalue()) is None
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    assert png(jpeg.getvalue()) is None


def test_pages_show_rendered_answers_beside_the_students_run(tmp_path):
    out = tmp_path / "grades"
    fid = tmp_path / "fid.json"
    fid.write_text(json.dumps({"profile": "cpu", "num_samples": 1000, "fid_vs_mnist_train": 17.4,
                               "fid_vs_mnist_test": 17.9, "fid_floor_test_vs_train": 8.9, "sampler": "<b>x</b>"}))
    ada = _graded("ada", _handed_in({"q10": r"$157 \times 0.006 \approx 0.94$ <script>alert(1)</script>",
                                     "q06": "the last two rows"}, _png(), "mean error at t = T: 0.0061"),
                  {"runs/cpu/fid.json": fid})
    write_sheet([ada, _simple("bob", {})], out)
    page = (out / "written" / "q10.html").read_text()
    assert "<math" in page and "<script>alert" not in page and "&lt;script&gt;alert(1)" in page  # shown, inert
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert 'src="run/ada/05_sampling_and_fid_process_grid.png"' in page and "mean error at t = T: 0.0061" in page
    assert "17.40" in page and "&lt;b&gt;x&lt;/b&gt;" in page and 'id="bob"' in page and "no answer" in page
    figure = out / "written" / "run" / "ada" / "05_sampling_and_fid_process_grid.png"
    assert Image.open(figure).size == (40, 30)
    assert "process_grid" not in (out / "written" / "q01.html").read_text()  # notebook 01 shows no run
    assert (out / "written" / "index.html").exists()


# the sheet, the regrade, the merge ---------------------------------------------------------------------------
def test_sheet_merge_carries_points_and_comments_into_the_feedback(tmp_path):
    out = tmp_path / "grades"
    out.mkdir()
    (out / "feedback").mkdir()
    _grades_csv(out, ["ada", "bob"])
    for s in ("ada", "bob"):
        (out / "feedback" / f"{s}.md").write_text(f"# Feedback for {s}\n\nTotal: 100 / 100\n")
    sheet = write_sheet([_simple("ada", {"q01": "because", "q04": "t = 260"}),
                         _simple("bob", {q.qid: "an answer" for q in QS})], out)
    rows = _rows(sheet)
    assert len(rows) == 2 * len(QS) and {r["answered"] for r in rows if r["student"] == "bob"} == {"yes"}
    empty = [r for r in rows if r["student"] == "ada" and r["answered"] == "no"]
    assert len(empty) == len(QS) - 2 and all(r["points"] == "0" and r["comment"] == "no answer" for r in empty)
    with pytest.raises(MergeError, match="bob / q01: points '' is not a number"):
        merge(out)

    def fill(r):
        if r["points"] == "":
            r["points"] = "1.5" if r["student"] == "ada" else r["max_points"]
        if r["student"] == "ada" and r["question"] == "q04":
            r["comment"] = "Right t; the fraction <script>x</script> is *missing*\nsee the rubric"

    _fill(sheet, fill)
    final, lms = merge(out)
    lms_rows = {r["student_id"]: r for r in csv.DictReader(open(lms))}
    code = sum(t.points for t in TASKS.values())
    assert lms_rows["bob"] == {"student_id": "bob", "total": str(code + TOTAL), "code": str(code),
                               "written": str(TOTAL)}
    assert lms_rows["ada"]["written"] == "3" and lms_rows["ada"]["total"] == str(code + 3)
    final_rows = list(csv.DictReader(open(final)))
    assert list(final_rows[0]) == ["student", *TASKS, "status", "code", *[q.qid for q in QS], "written", "grand_total"]
    feedback = (out / "feedback" / "ada.md").read_text()
    assert feedback.startswith("# Feedback for ada\n\nTotal: 100 / 100\n") and f"Written: **3 / {TOTAL}**" in feedback
    assert "Right t; the fraction &lt;script&gt;x&lt;/script&gt; is \\*missing\\* see the rubric" in feedback
    assert "| 1.5 / 2 |" in feedback and "<script>" not in feedback
    merge(out)  # again: the section is replaced, not added twice
    assert (out / "feedback" / "ada.md").read_text().count("## Written answers") == 1
    tests = json.loads((out / "final" / "gradescope_written.json").read_text())
    q04 = next(t for t in tests["ada"] if t["name"].startswith("Written q04"))
    assert q04["score"] == 1.5 and q04["max_score"] == 2 and "&lt;script&gt;" in q04["output"]
    assert q04["visibility"] == "after_published" and sum(t["max_score"] for t in tests["bob"]) == TOTAL
    # a point out of range is refused with where it is
    _fill(sheet, lambda r: r.update(points="9") if (r["student"], r["question"]) == ("ada", "q01") else None)
    with pytest.raises(MergeError, match="ada / q01: 9 is outside 0..2"):
        merge(out)


def test_regrade_keeps_other_students_and_unchanged_points(tmp_path):
    out = tmp_path / "grades"
    write_sheet([_simple("ada", {"q01": "first", "q02": "same"}), _simple("bob", {"q01": "bob's"})], out)
    _fill(out / "written" / "sheet.csv", lambda r: r.update(points="1", comment="ok") if r["points"] == "" else None)
    # ada resubmits: q01 changed, q02 did not; only her zip is regraded
    write_sheet([_simple("ada", {"q01": "second", "q02": "same"})], out, keep_others=True)
    rows = {(r["student"], r["question"]): r for r in _rows(out / "written" / "sheet.csv")}
    assert rows[("bob", "q01")]["points"] == "1" and rows[("bob", "q01")]["comment"] == "ok"
    assert rows[("ada", "q02")]["points"] == "1" and rows[("ada", "q02")]["flag"] == ""
    assert rows[("ada", "q01")]["points"] == "" and rows[("ada", "q01")]["flag"] == CHANGED
    page = (out / "written" / "q01.html").read_text()
    assert "bob&#x27;s" in page or "bob's" in page  # the other student's answer is still on the page
    assert "second" in page and "first" not in page
    store = json.loads((out / "written" / "answers.json").read_text())
    assert set(store) == {"ada", "bob"} and len(store["ada"]["answers"]["q01"]["sha256"]) == 64
    # a full grade of the same batch keeps every unchanged answer's points too
    write_sheet([_simple("ada", {"q01": "second", "q02": "same"}), _simple("bob", {"q01": "bob's"})], out)
    rows = {(r["student"], r["question"]): r for r in _rows(out / "written" / "sheet.csv")}
    assert rows[("bob", "q01")]["points"] == "1" and rows[("ada", "q02")]["points"] == "1"


def test_frozen_questions_survive_an_edit_of_the_notebooks(tmp_path, monkeypatch):
    root = tmp_path / "kit"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    frozen = freeze(tmp_path / "questions.json", root)
    monkeypatch.setattr("grader.written.QUESTIONS_FILE", frozen)
    for path in (root / "notebooks").glob("*.ipynb"):  # after the release: every question worth 5 points
        path.write_text(path.read_text().replace('"points": 2', '"points": 5'))
    assert {q.points for q in questions(root)} == {5}
    out = tmp_path / "grades"
    out.mkdir()
    _grades_csv(out, ["ada"])
    write_sheet([_simple("ada", {q.qid: "x" for q in QS})], out)
    assert {r["max_points"] for r in _rows(out / "written" / "sheet.csv")} == {"2"}
    frozen.unlink()  # OUT keeps its own copy
    _fill(out / "written" / "sheet.csv", lambda r: r.update(points="2"))
    merge(out)
    assert [q.points for q in graded_questions(out)] == [q.points for q in QS]
    assert next(csv.DictReader(open(out / "final" / "lms.csv")))["written"] == str(TOTAL)


def test_grading_without_the_extension_leaves_its_questions_out(tmp_path, monkeypatch):
    """`make grade WITHOUT=06`: the sheet, the merge and the feedback hold the ten questions of notebooks 01-05
    (20 points), whether the release froze them so or froze notebook 06's too."""
    for frozen in (freeze(tmp_path / "core.json", without=("06",)), freeze(tmp_path / "all.json")):
        monkeypatch.setattr("grader.written.QUESTIONS_FILE", frozen)
        out = tmp_path / frozen.stem
        out.mkdir()
        (out / "feedback").mkdir()
        _grades_csv(out, ["ada"])
        sheet = write_sheet([_simple("ada", {q.qid: "x" for q in QS})], out, without=("06",))
        assert sorted({r["question"] for r in _rows(sheet)}) == sorted(q.qid for q in CORE)
        _fill(sheet, lambda r: r.update(points=r["max_points"]))
        merge(out)
        assert next(csv.DictReader(open(out / "final" / "lms.csv")))["written"] == "20"
        assert "Written: **20 / 20**" in (out / "feedback" / "ada.md").read_text()
        assert [q.qid for q in graded_questions(out)] == [q.qid for q in CORE]


def test_question_11_shows_the_students_grids_one_row_per_digit(tmp_path):
    """Notebook 06 saves its by-digit grids as the run's "digit_grids" figure: the TA sees them beside Q11."""
    notebooks = _handed_in({"q11": "at w = 4 my 1s are all the same bar"})
    cells = [c for c in notebooks["notebooks/06_guidance.ipynb"]["cells"]
             if c["cell_type"] == "code" and '"digit_grids"' in "".join(c["source"])]
    assert len(cells) == 1  # the cell that draws the grids saves them
    cells[0]["outputs"] = [{"output_type": "display_data", "metadata": {},
                            "data": {"image/png": base64.b64encode(_png(60, 40)).decode()}}]
    out = tmp_path / "grades"
    write_sheet([_graded("ada", notebooks)], out)
    page = (out / "written" / "q11.html").read_text()
    assert 'src="run/ada/06_guidance_digit_grids.png"' in page and "their digit grids" in page
    assert Image.open(out / "written" / "run" / "ada" / "06_guidance_digit_grids.png").size == (60, 40)
    assert "digit_grids" not in (out / "written" / "q10.html").read_text()  # notebook 05's question


# bounded: what is kept of a submission, what is decoded of a notebook ---------------------------------------
def test_the_store_keeps_the_frozen_questions_and_a_few_copies(tmp_path):
    """Answers to questions no one asked are not kept, nor more than OTHERS_KEPT other copies of one answer."""
    nbs = _handed_in({"q01": "mine"})
    nb01 = nbs["notebooks/01_data_prep.ipynb"]
    cell = next(c for c in nb01["cells"] if c.get("id") == "q01")
    for k in range(10):  # ten pasted copies of q01's cell, and cells of made-up questions
        nb01["cells"].append({**cell, "id": f"copy{k}", "source": f"{HINT}\n\ncopy {k}"})
        meta = {"nbgrader": {**cell["metadata"]["nbgrader"], "grade_id": f"x{k}"}}
        nb01["cells"].append({**cell, "id": f"x{k}", "metadata": meta, "source": "junk " * 1000})
    g = _graded("ada", nbs)
    assert set(g.answers) == {q.qid for q in QS} and len(g.written["others"]["q01"]) == OTHERS_KEPT
    g.answers["q99"] = "not a frozen question"  # a record from elsewhere: the store still keeps the frozen ones
    write_sheet([g], tmp_path)
    entry = json.loads((tmp_path / "written" / "answers.json").read_text())["ada"]
    assert set(entry["answers"]) == {q.qid for q in QS}
    assert entry["answers"]["q01"]["text"] == "mine" and len(entry["answers"]["q01"]["others"]) == OTHERS_KEPT


def test_a_regraded_row_keeps_points_and_comment_and_recomputes_its_flag(tmp_path):
    """An unchanged answer keeps the TA's points and comment; its flag is the answer's own now (a cell moved back
    is no longer flagged moved; an answer the TA scored after it changed is no longer flagged changed)."""
    out = tmp_path / "grades"
    moved = ["q01: its answer cell was moved (01_data_prep, cell 9, not under the question)"]
    first = _simple("ada", {"q01": "one", "q02": "two"})
    first.written = {"flags": {"q01": moved}}
    write_sheet([first], out)
    assert _rows(out / "written" / "sheet.csv")[0]["flag"] == moved[0]
    _fill(out / "written" / "sheet.csv", lambda r: r.update(points="1", comment="ok") if r["points"] == "" else None)
    write_sheet([_simple("ada", {"q01": "one", "q02": "changed"})], out, keep_others=True)
    rows = {r["question"]: r for r in _rows(out / "written" / "sheet.csv")}
    assert (rows["q01"]["points"], rows["q01"]["comment"], rows["q01"]["flag"]) == ("1", "ok", "")
    assert (rows["q02"]["points"], rows["q02"]["flag"]) == ("", CHANGED)
    write_sheet([_simple("ada", {"q01": "one", "q02": "changed"})], out, keep_others=True)  # not scored yet
    assert {r["question"]: r["flag"] for r in _rows(out / "written" / "sheet.csv")}["q02"] == CHANGED
    _fill(out / "written" / "sheet.csv", lambda r: r.update(points="2", comment="ok now") if not r["points"] else None)
    write_sheet([_simple("ada", {"q01": "one", "q02": "changed"})], out, keep_others=True)
    rows = {r["question"]: r for r in _rows(out / "written" / "sheet.csv")}
    assert (rows["q02"]["points"], rows["q02"]["comment"], rows["q02"]["flag"]) == ("2", "ok now", "")


def test_merge_says_what_to_do_with_an_empty_gradebook(tmp_path):
    out = tmp_path / "grades"
    write_sheet([_simple("ada", {})], out)
    for content in (None, "", "student,1,total,status\n"):
        if content is not None:
            (out / "grades.csv").write_text(content)
        with pytest.raises(MergeError, match=r"grades.csv holds no student \(missing or empty\): grade the "):
            merge(out)


def test_grading_refuses_a_without_the_release_was_not_made_with(tmp_path, monkeypatch):
    """A release made WITHOUT=06 graded without it would score 6a, 6b and the questions of 06 0 for everyone: the
    frozen questions (or the prebuilt kit's RELEASE.json) say how the release was made, and grading refuses
    another WITHOUT, saying which to pass; a prebuilt kit's own word stands when none is given."""
    from grader.release import ReleaseError

    out = tmp_path / "grades"
    monkeypatch.setattr("grader.written.QUESTIONS_FILE", freeze(tmp_path / "core.json", without=("06",)))
    with pytest.raises(ReleaseError, match="made with WITHOUT=06, but this grading has no WITHOUT: grade with "
                                           "WITHOUT=06"):
        release_without((), out)
    assert release_without(("06",), out) == ("06",)
    monkeypatch.setattr("grader.written.QUESTIONS_FILE", freeze(tmp_path / "all.json"))
    with pytest.raises(ReleaseError, match="made with no WITHOUT, but this grading has WITHOUT=06"):
        release_without(("06",), out)
    assert release_without((), out) == ()
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "RELEASE.json").write_text(json.dumps({"without": ["06"]}))
    monkeypatch.setattr("grader.written.QUESTIONS_FILE", tmp_path / "none.json")
    assert release_without((), out, kit) == ("06",)  # Gradescope's bundle: the kit says
    write_sheet([_simple("ada", {})], out, without=("06",))  # OUT's own copy now records it too
    assert json.loads((out / "written" / "questions.json").read_text())["without"] == ["06"]
    (kit / "RELEASE.json").write_text(json.dumps({"without": []}))  # a full kit, to regrade an OUT graded without
    with pytest.raises(ReleaseError, match="questions.json says the students' release was made with WITHOUT=06, "
                                           "but this grading has no WITHOUT"):
        release_without((), out, kit)


def test_the_cli_refuses_a_without_the_release_was_not_made_with(tmp_path):
    import subprocess
    import sys

    kit, subs = tmp_path / "kit", tmp_path / "subs"
    kit.mkdir()
    subs.mkdir()
    (kit / "RELEASE.json").write_text(json.dumps({"without": []}))
    res = subprocess.run([sys.executable, "-m", "grader", "grade", str(subs), "--out", str(tmp_path / "out"),
                          "--release", str(kit), "--without", "06"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "grade with no WITHOUT as the release was made" in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def _image_output(data: bytes) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {"image/png": base64.b64encode(data).decode()}}


def test_a_figure_decodes_one_image_however_many_the_notebook_shows(monkeypatch):
    """A figure is the last image that decodes of the last cells that save it: walked from the end, one image
    decoded when it does, at most IMAGE_TRIES when none does, whatever the number of cells and outputs."""
    import grader.ta_view as ta_view

    decoded = []
    real = ta_view.png
    monkeypatch.setattr(ta_view, "png", lambda data: decoded.append(len(data)) or real(data))
    cell = {"cell_type": "code", "source": 'save(fig, "process_grid")', "metadata": {}, "execution_count": 1,
            "outputs": [_image_output(_png(colour=(0, 0, 200)))] * 200 + [_image_output(_png(colour=(200, 0, 0)))]}
    nb = {"cells": [cell] * 50, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    figure = notebook_run(nb)["figures"]["process_grid"]
    assert len(decoded) == 1 and Image.open(io.BytesIO(figure)).convert("RGB").getpixel((0, 0)) == (200, 0, 0)
    decoded.clear()
    broken = {**cell, "outputs": [_image_output(b"\x89PNG\r\n\x1a\n broken")] * 200}
    assert notebook_run({**nb, "cells": [broken] * 50})["figures"] == {} and len(decoded) == IMAGE_TRIES


def test_the_sweep_table_is_shown_whole_after_what_the_cell_printed_before(tmp_path):
    """Notebook 06's sweep cell prints the classifier's lines, then print_sweep's table (Q11 reads it): the TA sees
    the table's every row, at most PRINTED_CHARS of the end of what the cell printed."""
    import contextlib

    from hw3_utils.conditional import WEIGHTS, print_sweep

    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        print_sweep([{"w": w, "digit_accuracy": 0.1 + w / 5, "classifier_fid": 30 - w, "fid": 40 + w} for w in WEIGHTS])
    before = "".join(f"digits: training the MNIST classifier once here on 60,000 images, epoch {k} ...\n"
                     for k in range(20))
    nbs = _handed_in({"q11": "the sweep"})
    nb06 = nbs["notebooks/06_guidance.ipynb"]
    cell = next(c for c in nb06["cells"] if c["cell_type"] == "code" and "print_sweep(" in "".join(c["source"]))
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": before + table.getvalue()},
                       {"output_type": "stream", "name": "stderr", "text": "100%|#####| 50/50 sampling\n"}]
    [printed] = notebook_run(nb06)["printed"]
    assert printed.endswith(table.getvalue().strip()) and len(printed) <= PRINTED_CHARS + 2
    assert printed.startswith("…\n") and "sampling" not in printed
    write_sheet([_graded("ada", nbs)], tmp_path)
    page = (tmp_path / "written" / "q11.html").read_text()
    assert all(html.escape(line) in page for line in table.getvalue().splitlines())
