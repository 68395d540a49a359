"""Gradescope: `python -m grader gradescope-bundle autograder.zip` and the bundle's run_autograder.

The bundle carries the student kit (stubs), this grader (without patches.py, which patches the
solution) and the reference (the solution's outputs on the public and hidden cases, as tensors):
no solution source. run_autograder reads $AUTOGRADER_ROOT/submission/ (one zip, or loose files
mapped by name) and writes $AUTOGRADER_ROOT/results/results.json in Gradescope's format. A bundle built with
`written=` (`make gradescope WRITTEN=OUT/final/gradescope_written.json`, which `make merge` writes) adds each
student's written points and the TA's comments as tests, shown once the grades are published: rerun the
autograder on every submission to post them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from hw3_utils.atomic import atomic_write
from hw3_utils.runfolder import FID_JSON, submitted_fid_name

from . import REPO

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once while building the autograder image (Ubuntu, as root).
# PYTHON: the interpreter to install into (default python3). TORCH_INDEX: where torch comes from (default
# PyTorch's CPU-only index, far smaller than PyPI's CUDA build); TORCH_INDEX= uses pip's configured index.
set -euo pipefail
PY="${{PYTHON:-python3}}"
if ! command -v unshare >/dev/null || ! "$PY" -m pip --version >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip util-linux >/dev/null
fi
export PIP_BREAK_SYSTEM_PACKAGES=1  # Ubuntu 24.04's system Python; the image is Gradescope's alone
TORCH_INDEX="${{TORCH_INDEX-https://download.pytorch.org/whl/cpu}}"
PIP="$PY -m pip install --no-cache-dir"
$PIP ${{TORCH_INDEX:+--index-url "$TORCH_INDEX"}} {torch}
$PIP {rest}
"""
# What grading needs of pyproject.toml's dependencies (not JupyterLab), pinned as constraints.txt pins them.
NOT_FOR_GRADING = ("jupyterlab",)


def setup_sh() -> str:
    """setup.sh with the kit's dependencies: pyproject.toml's ranges, constraints.txt's pins where it has one."""
    import re

    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+

        deps = tomllib.loads(text)["project"]["dependencies"]
    except ImportError:
        block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
        deps = re.findall(r'"([^"]+)"', block)
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    name = lambda d: re.match(r"[A-Za-z0-9_.-]+", d).group(0)  # noqa: E731
    spec = [f"{name(d)}=={pins[name(d)]}" if name(d) in pins else d for d in deps if name(d) not in NOT_FOR_GRADING]
    torch = [d for d in spec if name(d) in ("torch", "torchvision")]
    rest = [d for d in spec if d not in torch]
    return SETUP_SH.format(torch=" ".join(f'"{d}"' for d in torch), rest=" ".join(f'"{d}"' for d in rest))


RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope's entry point. AUTOGRADER_ROOT (default /autograder) holds submission/ and results/;
# PYTHON (default python3) is the interpreter with the kit's dependencies.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$SRC"
export PYTHONPATH="$SRC/release:$SRC"
exec "${PYTHON:-python3}" -m grader.gradescope run --root "$ROOT" --source "$SRC"
"""

BUNDLE_GRADER_FILES = ("__init__.py", "__main__.py", "batch.py", "extract.py", "runner.py", "render.py",
                       "gradescope.py", "reference.py", "release.py", "summary.py", "sandbox.py", "zygote.py",
                       "nobody.py", "host.py", "written.py", "similarity.py", "ta_view.py")
WRITTEN_JSON = "written.json"  # in the bundle: {student id: [Gradescope tests of the written half]}


def written_tests(qs: dict, pts: dict) -> list[dict]:
    """The written half as Gradescope tests: `qs` {qid: written.Question}, `pts` {qid: (points, TA's comment)};
    names and comments made safe (render.untrusted), visible once the grades are published."""
    from .render import untrusted

    return [{"name": f"Written {qid}: {untrusted(q.title, 200)}", "score": pts[qid][0], "max_score": q.points,
             "output": untrusted(pts[qid][1]), "output_format": "md", "visibility": "after_published"}
            for qid, q in qs.items()]


def build_bundle(out: Path, written: Path | None = None, without=()) -> Path:
    """autograder.zip at `out`: the student release (without the optional extensions `without`, as `make release
    WITHOUT=...`), the grader, and the reference for the release's own tasks."""
    from .extract import kit_tasks
    from .reference import build_reference, save_reference
    from .release import make_release

    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="hw3-bundle-") as tmp:
        root = Path(tmp) / "bundle"
        make_release(root / "release", quiet=True, repo_url="none", without=without)
        (root / "grader").mkdir()
        for name in BUNDLE_GRADER_FILES:
            shutil.copyfile(REPO / "grader" / name, root / "grader" / name)
        (root / "reference").mkdir()
        save_reference(build_reference(kit_tasks(root / "release")), root / "reference" / "reference.pt")
        if written:
            shutil.copyfile(written, root / WRITTEN_JSON)
        (root / "setup.sh").write_text(setup_sh())
        (root / "run_autograder").write_text(RUN_AUTOGRADER)

        def pack(f):
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                for p in sorted(root.rglob("*")):
                    if p.is_file() and "__pycache__" not in p.parts:
                        info = zipfile.ZipInfo.from_file(p, p.relative_to(root).as_posix())
                        if p.name in ("setup.sh", "run_autograder"):
                            info.external_attr = (0o100755 & 0xFFFF) << 16
                        info.compress_type = zipfile.ZIP_DEFLATED
                        z.writestr(info, p.read_bytes())

        atomic_write(out, pack)
    return out


def _collect_submission(sub: Path, dest: Path) -> Path:
    """One zip to grade: the submitted zip, or a zip of the loose files mapped to their kit paths."""
    from .extract import CAPS, allowed, task_files

    files = [p for p in sorted(sub.rglob("*")) if p.is_file() and not p.is_symlink()] if sub.is_dir() else []
    zips = [p for p in files if p.suffix == ".zip"]
    if len(zips) == 1:
        return zips[0]
    by_name = {Path(f).name: f for f in task_files()}
    out = dest / "submission.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            rel = p.relative_to(sub).as_posix()
            if not allowed(rel):
                if p.name in by_name:
                    rel = by_name[p.name]
                elif p.suffix == ".ipynb":
                    rel = f"notebooks/{p.name}"
                elif p.name == "manifest.json":
                    rel = "manifest.json"
                elif p.name == FID_JSON:
                    rel = submitted_fid_name(p.parent.name if p.parent != sub else "submitted")
            if allowed(rel) and p.stat().st_size <= CAPS.get(Path(rel).suffix, 0):
                z.write(p, rel)
    return out


def run(root: Path, source: Path, task_timeout: float = 60.0) -> dict:
    import hw3_utils

    from .batch import grade_batch_detailed

    root, source = Path(root), Path(source)
    kit = Path(hw3_utils.__file__).resolve().parent
    if kit != (source / "release" / "hw3_utils").resolve():
        raise RuntimeError(f"the autograder must import the bundled student kit, not {kit}")
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    student, header = submitter(root / "submission_metadata.json")
    with tempfile.TemporaryDirectory(prefix="hw3-gs-") as tmp:
        subs = Path(tmp) / "subs"
        subs.mkdir()
        zpath = _collect_submission(root / "submission", Path(tmp))
        shutil.copyfile(zpath, subs / f"{student}.zip")
        rows = grade_batch_detailed(subs, Path(tmp) / "out", task_timeout=task_timeout,
                                    release_dir=source / "release", reference=source / "reference" / "reference.pt",
                                    extra_hidden=[root / "submission", results_dir, root / "submission_metadata.json"])
    result = rows[0].gradescope(header)
    if (source / WRITTEN_JSON).is_file():
        result["tests"] += json.loads((source / WRITTEN_JSON).read_text(encoding="utf-8")).get(student, [])
    atomic_write(results_dir / "results.json", json.dumps(result, indent=2))
    return result


METADATA_BYTES = 1024 * 1024  # submission_metadata.json: Gradescope's, holding fields a student typed


def submitter(path: Path) -> tuple[str, str]:
    """(student id, a line for the output) from Gradescope's submission_metadata.json: the submitter's student
    id (else email, else name), the submission time, and how late it was against the due dates. Read as a
    handed-in file (hw3_utils.student_files): one it cannot use gives ("submission", "")."""
    from datetime import datetime

    from hw3_utils.student_files import Unreadable, load_json

    from .render import safe_name, untrusted

    try:
        meta = load_json(path, METADATA_BYTES)
    except Unreadable:
        return "submission", ""
    users = meta.get("users")
    user = users[0] if isinstance(users, list) and users and isinstance(users[0], dict) else {}
    text = {k: str(user[k]) for k in ("sid", "email", "name") if isinstance(user.get(k), (str, int))}
    who = text.get("sid") or text.get("email", "").split("@")[0] or text.get("name") or "submission"
    assignment = meta.get("assignment") if isinstance(meta.get("assignment"), dict) else {}

    def when(key, source):
        try:
            return datetime.fromisoformat(str(source.get(key)))
        except (TypeError, ValueError):
            return None

    created = when("created_at", meta)
    due, late_due = when("due_date", assignment), when("late_due_date", assignment)
    line = f"Submitted by {untrusted(text.get('name') or who, 80)} ({untrusted(who, 40)})"
    if created:
        line += f" at {created.isoformat(timespec='minutes')}"
        try:  # a due date with a time zone and a submission time without one do not compare
            late = [d for d in (due, late_due) if d and created > d]
        except TypeError:
            late = []
        if due in late:
            hours = (created - due).total_seconds() / 3600
            line += f", **{hours:.1f} h after the due date**" + (
                " and after the late due date" if late_due in late else "")
    return safe_name(who), line + ".\n\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.gradescope")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--root", default="/autograder")
    r.add_argument("--source", default=str(REPO))
    r.add_argument("--task-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    res = run(Path(args.root), Path(args.source), args.task_timeout)
    print(f"score {sum(t['score'] for t in res['tests'])} (shown after the due date)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
