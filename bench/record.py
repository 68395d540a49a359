"""One record format for every bench: written by `write_record`, read by `python -m bench report`.

A record, bench/results/<bench>/<name>.json, is one JSON object:

  bench    the bench's name, as `python -m bench NAME` runs it
  commit   `git rev-parse HEAD` of the tree measured, with "-dirty" when tracked files had changes
           ($BENCH_COMMIT in a copy without git, else null)
  argv     the bench's arguments (null where nobody wrote them down)
  config   what the run was: profile, overrides, options; free text under "note"
  machine  `hw3_utils.runfolder.environment(device)`: the CPU model or GPU name, torch threads, cores,
           torch and Python versions, the date (UTC)
  rows     what it measured: [{"name": str, field: number, ...}, ...], a number being an int, a float,
           a bool, or null (not measured)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent
KEYS = ("bench", "commit", "argv", "config", "machine", "rows")


def git_commit(repo: Path = REPO) -> str | None:
    """HEAD's hash, + "-dirty" when a tracked file differs from it. Where the tree has no git checkout (a copy
    on the GPU machine), $BENCH_COMMIT as the caller gave it, else None."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BENCH_COMMIT") or None
    return head + ("-dirty" if dirty else "")


def clean_rows(rows) -> list[dict]:
    """The rows as a record keeps them: each a dict with a str "name" and numbers; NaN and infinities become
    None (not measured). Raises ValueError naming the row and field that is neither."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str) or not row["name"]:
            raise ValueError(f"row {i} needs a non-empty str 'name': {row!r:.200}")
        clean = {}
        for key, value in row.items():
            if key != "name" and not (value is None or isinstance(value, (bool, int, float))):
                raise ValueError(f"row {i} ({row['name']}): {key}={value!r:.80} is not a number; put it in the "
                                 "row's name or in the record's config")
            bad = isinstance(value, float) and not math.isfinite(value)
            clean[str(key)] = None if bad else value
        out.append(clean)
    return out


def check_record(rec) -> list[str]:
    """What is wrong with a record (empty when nothing is): its keys, types and rows."""
    if not isinstance(rec, dict) or tuple(rec) != KEYS:
        return [f"keys must be {KEYS}, in that order: {list(rec) if isinstance(rec, dict) else type(rec)}"]
    problems = [f"{k} must be {t.__name__}" for k, t in (("bench", str), ("config", dict), ("machine", dict),
                                                         ("rows", list)) if not isinstance(rec[k], t)]
    if rec["commit"] is not None and not isinstance(rec["commit"], str):
        problems.append("commit must be a str or null")
    if rec["argv"] is not None and not (isinstance(rec["argv"], list) and all(isinstance(a, str) for a in rec["argv"])):
        problems.append("argv must be a list of str or null")
    if isinstance(rec["rows"], list):
        try:
            if clean_rows(rec["rows"]) != rec["rows"]:
                problems.append("rows hold NaN or infinity (write null)")
        except ValueError as err:
            problems.append(str(err))
    return problems


def record_path(bench: str, name: str) -> Path:
    return RESULTS / bench / f"{name}.json"


def write_record(bench: str, rows, config: dict, argv, name: str | None = None, path=None, device="cpu",
                 machine: dict | None = None, repo: Path = REPO) -> Path:
    """Write one record (see the module's docstring) and return its path.

    path: where (a bench's --json); else bench/results/<bench>/<name>.json, name defaulting to the date.
    machine: fields added to `environment(device)` (a load average, say). repo: the tree measured, whose
    commit the record names (another checkout where a bench runs one, as student_walk's --kit)."""
    from hw3_utils.atomic import atomic_write  # here, not at the top: the report reads records without torch
    from hw3_utils.runfolder import environment

    env = {**environment(device), **(machine or {})}
    rec = {"bench": bench, "commit": git_commit(Path(repo)), "argv": None if argv is None else [str(a) for a in argv],
           "config": config, "machine": env, "rows": clean_rows(rows)}
    path = Path(path) if path else record_path(bench, name or env["date"].replace(":", "-"))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(rec, indent=2, allow_nan=False, default=str) + "\n")
    print(f"wrote {path}")
    return path


def read_record(path) -> dict:
    rec = json.loads(Path(path).read_text())
    problems = check_record(rec)
    if problems:
        raise ValueError(f"{path} is not a bench record: {'; '.join(problems)}")
    return rec


def read_records(root: Path = RESULTS) -> list[tuple[Path, dict]]:
    """Every record under `root` (<bench>/<name>.json), by bench, then name."""
    return [(p, read_record(p)) for p in sorted(root.glob("*/*.json"), key=lambda p: (p.parent.name, p.stem))]
