"""grader/render.py: what a submission wrote is one escaped line; records are made safe once, typed by kind."""

from __future__ import annotations

import json
import re

from grader.render import HASH_CHARS, NAME_CHARS, Graded, Kind, failed, passed, safe_name, student_ids, untrusted
from hw3_utils.tasks import TASKS


def test_untrusted_text_is_one_inert_line():
    nasty = ("line1\n| fake | 100 |\r\n## heading\t<!-- hide <script>x</script> & [a](javascript:b) `code` *bold* "
             "~strike~ back\\slash \x1b[31mred\x1b[0m \x1b]0;title\x07 bell\x07 nul\x00 del\x7f \u202eevil \u2028sep")
    out = untrusted(nasty)
    assert "\n" not in out and "\r" not in out and "\t" not in out
    assert not re.search(r"[\x00-\x1f\x7f\u202e\u2028]", out)  # control characters and bidi overrides gone
    assert "<" not in out and ">" not in out and "&lt;!--" in out and "&lt;script&gt;" in out
    assert "&amp;" in out and "\\[a\\](javascript:b)" in out and "\\`code\\`" in out and "\\*bold\\*" in out
    assert "\\~strike\\~" in out and "back\\\\slash" in out and "\\| fake \\| 100 \\|" in out
    assert "red" in out and "31m" not in out and "title" not in out
    assert untrusted("hw3_utils/data.py:12 (t = 999)") == "hw3_utils/data.py:12 (t = 999)"  # plain text stays


def test_untrusted_cuts_long_text():
    assert untrusted("x" * 5000, 100) == "x" * 99 + "…"


def test_graded_record_is_escaped_once_and_typed():
    tasks = {t: passed(task.points) for t, task in TASKS.items()}
    tasks["1"] = failed(Kind.ERROR, "RuntimeError: a\n| b |")
    g = Graded("../evil name\n", "graded", tasks, notes=["kit version: v1\n## x"], flags=["Task 1 crash <b>"])
    assert g.student == ".._evil_name_" and g.tasks["1"].message == "FAIL: RuntimeError: a \\| b \\|"
    assert g.notes == ["kit version: v1 ## x"] and g.flags == ["Task 1 crash &lt;b&gt;"]
    md = g.markdown()
    assert len([ln for ln in md.splitlines() if ln.startswith("| Task ")]) == len(TASKS)
    assert g.tasks["1"].kind is Kind.ERROR and not Kind.ERROR.needs_look and Kind.TIMEOUT.needs_look
    gs = g.gradescope()
    assert gs["output_format"] == "md" and all(t["output_format"] == "md" for t in gs["tests"])
    assert g.total == sum(task.points for task in TASKS.values()) - TASKS["1"].points


def test_zips_whose_names_give_one_id_are_told_apart_and_flagged(tmp_path):
    """`a b.zip` and `a_b.zip`, or two long names cut alike, would be one student (one feedback file, one store
    entry, two rows of grades.csv with one id): each gets a short hash of its own name, and a flag."""
    from grader.written import write_sheet

    long_a, long_b = "x" * NAME_CHARS + "_alice", "x" * NAME_CHARS + "_bob"
    ids, flags = student_ids(["a b", "a_b", "ada", long_a, long_b])
    assert ids["ada"] == "ada" and "ada" not in flags
    assert len(set(ids.values())) == 5 and set(flags) == {"a b", "a_b", long_a, long_b}
    for name in ("a b", "a_b", long_a, long_b):
        assert ids[name] == safe_name(ids[name]) and len(ids[name]) <= NAME_CHARS
        assert ids[name].startswith(safe_name(name)[:NAME_CHARS - HASH_CHARS - 1])
    assert "'a_b'" in flags["a b"] and ids["a b"] in flags["a b"]
    # a regrade of one of them alone keeps the id the full batch gave it, and the flag
    again, flagged = student_ids(["a b"], taken=set(ids.values()))
    assert again == {"a b": ids["a b"]} and "an earlier grading's" in flagged["a b"]
    records = []
    for name in ("a b", "a_b"):
        g = Graded(name, "graded", {t: passed(task.points) for t, task in TASKS.items()}, answers={"q01": name})
        g.identify(ids[name], flags[name])
        assert g.student == ids[name] and g.flags[-1] == untrusted(flags[name], 200)
        assert any(f"graded as {ids[name]}" in n for n in g.notes) and "a_b'" not in g.markdown()
        records.append(g)
    write_sheet(records, tmp_path)
    store = json.loads((tmp_path / "written" / "answers.json").read_text())
    assert {s: e["answers"]["q01"]["text"] for s, e in store.items()} == {ids["a b"]: "a b", ids["a_b"]: "a_b"}
