"""grader/render.py: what a submission wrote is one escaped line; records are made safe once, typed by kind."""

from __future__ import annotations

import re

from grader.render import Graded, Kind, failed, passed, untrusted
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
