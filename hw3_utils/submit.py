"""Pack a submission: `make submit` (or `python -m hw3_utils.submit [--student NAME]`).

The zip holds the task files, the notebooks as saved, each run's fid.json and a manifest
(checksums, kit version, profiles, time, versions). It warns, but still packs, when notebooks
were saved without outputs or no fid.json exists yet.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import platform
import re
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from .atomic import atomic_write
from .checks import TASK_FILES
from .config import runs_dir

KIT = Path(__file__).resolve().parent.parent


def _student(name: str | None) -> str:
    if not name:
        try:
            name = getpass.getuser()
        except Exception:
            name = "student"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "student"


def _executed(path: Path) -> bool:
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return False
    return any(c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count")) for c in cells)


def collect(kit: Path = KIT, runs: Path | None = None) -> tuple[dict[str, Path], list[str]]:
    """{name in the zip: file} and warnings."""
    files: dict[str, Path] = {}
    warnings = []
    for rel in TASK_FILES:
        if (kit / rel).is_file():
            files[rel] = kit / rel
        else:
            warnings.append(f"{rel} is missing")
    notebooks = sorted((kit / "notebooks").glob("*.ipynb"))
    if not notebooks:
        warnings.append("no notebooks found in notebooks/")
    for nb in notebooks:
        files[f"notebooks/{nb.name}"] = nb
        if not _executed(nb):
            warnings.append(f"notebooks/{nb.name} has no outputs: run it and save it before submitting")
    runs = Path(runs) if runs is not None else runs_dir()
    fids = sorted(runs.glob("*/fid.json")) if runs.is_dir() else []
    for f in fids:
        files[f"runs/{f.parent.name}/fid.json"] = f
    if not fids:
        warnings.append(f"no fid.json in {runs}/<profile>/: run notebook 05 (or `python -m hw3_utils all`) first")
    return files, warnings


def pack(student: str | None = None, out_dir: Path | str = ".", kit: Path = KIT, runs=None) -> Path:
    import torch

    student = _student(student)
    files, warnings = collect(Path(kit), runs)
    release = Path(kit) / "RELEASE.json"
    version = None
    if release.is_file():
        try:
            info = json.loads(release.read_text())
            version = f"{info.get('version')} ({info.get('source_commit') or 'unknown commit'})"
        except ValueError:
            version = "unreadable RELEASE.json"
    manifest = {
        "student": student,
        "kit_version": version,
        "profiles": sorted({n.split("/")[1] for n in files if n.startswith("runs/")}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "files": {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in sorted(files.items())},
    }
    out = Path(out_dir) / f"submission_{student}.zip"

    def pack(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, path in sorted(files.items()):
                z.write(path, name)
            z.writestr("manifest.json", json.dumps(manifest, indent=2))

    atomic_write(out, pack)
    print(f"packed {out} ({out.stat().st_size / 1024:.0f} KiB):")
    for name in sorted(files):
        print(f"  {name}")
    print("  manifest.json")
    for w in warnings:
        print(f"WARNING: {w}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw3_utils.submit", description="Pack submission_<student>.zip")
    p.add_argument("--student", help="your name or id (default: $USER)")
    p.add_argument("--out", default=".", help="folder for the zip (default: here)")
    args = p.parse_args(argv)
    pack(args.student, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
