"""Pack a submission: `make submit` (or `python -m hw3_utils.submit [--student NAME]`), or on Colab the
last cell of notebook 05 (`colab_submit`).

The zip holds the task files, the notebooks as run, each run's fid.json and a manifest (checksums,
kit version, profiles, time, versions). It warns, but still packs, when notebooks were saved without
outputs or no fid.json exists yet. On Colab the notebooks the student ran are not the clone's files:
the running one comes from Colab's front end, the others from the student's saved copies in Drive.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import platform
import re
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from . import report
from .answers import answers
from .atomic import atomic_write
from .checks import TASK_FILES
from .config import runs_dir
from .runfolder import fid_json_paths, submitted_fid_name, submitted_profile

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


def collect(kit: Path = KIT, runs: Path | None = None,
            notebooks: dict[str, Path] | None = None) -> tuple[dict[str, Path], list[str]]:
    """{name in the zip: file} and warnings. `notebooks` ({file name: path}) replaces the kit's copies
    of those notebooks (Colab: the ones the student ran)."""
    files: dict[str, Path] = {}
    warnings = []
    for rel in TASK_FILES:
        if (kit / rel).is_file():
            files[rel] = kit / rel
        else:
            warnings.append(f"{rel} is missing")
    found = {nb.name: nb for nb in sorted((kit / "notebooks").glob("*.ipynb"))}
    found.update(notebooks or {})
    if not found:
        warnings.append("no notebooks found in notebooks/")
    for name, nb in sorted(found.items()):
        files[f"notebooks/{name}"] = nb
        if not _executed(nb):
            warnings.append(f"notebooks/{name} has no outputs: run it and save it before submitting")
        try:
            empty = [a.qid for a in answers(nb.read_text(encoding="utf-8"), nb.stem) if not a.text]
        except (OSError, ValueError):
            empty = []
        if empty:
            warnings.append(f"notebooks/{name}: written answer(s) {', '.join(empty)} still empty")
    runs = Path(runs) if runs is not None else runs_dir()
    fids = fid_json_paths(runs)
    for f in fids:
        files[submitted_fid_name(f.parent.name)] = f
    if not fids:
        warnings.append(f"no fid.json in {runs}/<profile>/: run notebook 05 (or `python -m hw3_utils all`) first")
    return files, warnings


def pack(student: str | None = None, out_dir: Path | str = ".", kit: Path = KIT, runs=None,
         notebooks: dict[str, Path] | None = None) -> Path:
    import torch

    student = _student(student)
    files, warnings = collect(Path(kit), runs, notebooks)
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
        "profiles": sorted({p for n in files if (p := submitted_profile(n))}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "files": {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in sorted(files.items())},
    }
    out = Path(out_dir) / f"submission_{student}.zip"

    # the report, from exactly the notebooks and run folder packed here
    html = report.build({n.split("/", 1)[1]: p for n, p in files.items() if n.startswith("notebooks/")},
                        runs=runs, student=student, kit=Path(kit))
    manifest["files"][report.REPORT] = hashlib.sha256(html.encode()).hexdigest()

    def pack(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, path in sorted(files.items()):
                z.write(path, name)
            z.writestr(report.REPORT, html)
            z.writestr("manifest.json", json.dumps(manifest, indent=2))

    atomic_write(out, pack)
    print(f"packed {out} ({out.stat().st_size / 1024:.0f} KiB):")
    for name in sorted(files):
        print(f"  {name}")
    print(f"  {report.REPORT} (built from these notebooks; `make report` writes it beside them to look at)")
    print("  manifest.json")
    for w in warnings:
        print(f"WARNING: {w}")
    return out


# Colab -----------------------------------------------------------------------------------------
DRIVE_NOTEBOOKS = Path("/content/drive/MyDrive/Colab Notebooks")  # where "Save a copy in Drive" puts them
STUDENT_PLACEHOLDER = "your-student-id"


def colab_notebooks(current: str, current_json: dict, scratch: Path, kit: Path,
                    drive: Path) -> tuple[dict[str, Path], list[str]]:
    """The notebooks as the student ran them on Colab: `current` (e.g. "05_sampling_and_fid") from the running
    session (`current_json`, Colab's copy with outputs, written into `scratch`), every other one from the newest
    executed copy in Drive whose name contains it ("Copy of 01_data_prep.ipynb"). Returns ({file name: path}, notes)."""
    out, notes = {}, []
    for nb in sorted((kit / "notebooks").glob("*.ipynb")):
        if nb.stem == current:
            path = scratch / nb.name
            atomic_write(path, json.dumps(current_json, indent=1))
            out[nb.name] = path
            continue
        copies = sorted(drive.glob(f"*{nb.stem}*.ipynb"), key=lambda p: p.stat().st_mtime) if drive.is_dir() else []
        ran = [p for p in copies if _executed(p)]
        if ran:
            out[nb.name] = ran[-1]
            notes.append(f"{nb.name}: your copy {ran[-1].name} in Drive")
        else:
            notes.append(f"{nb.name}: no executed copy in {drive}; run it, File > Save a copy in Drive, and run this "
                         "cell again (the clone's unexecuted copy is packed for now)")
    return out, notes


def colab_submit(student: str, notebook: str, kit: Path = KIT, drive: Path | None = None) -> Path:
    """Notebook 05's last cell on Colab: pack the notebooks as run, the task files and fid.json, and offer
    the zip for download (google.colab.files.download). The zip is also kept in the kit's folder."""
    from google.colab import _message, files  # type: ignore[import-not-found]

    if not student or student == STUDENT_PLACEHOLDER:
        raise ValueError("Set STUDENT in this cell to your student id, then run it again.")
    reply = _message.blocking_request("get_ipynb", request="", timeout_sec=60)
    if not isinstance(reply, dict) or not isinstance(reply.get("ipynb"), dict):
        raise RuntimeError("Colab did not hand over this notebook; save it (File > Save) and run this cell again.")
    with tempfile.TemporaryDirectory() as scratch:
        notebooks, notes = colab_notebooks(notebook, reply["ipynb"], Path(scratch), Path(kit),
                                           Path(drive or DRIVE_NOTEBOOKS))
        for note in notes:
            print(note)
        zpath = pack(student, kit, kit, notebooks=notebooks)
    files.download(str(zpath))
    return zpath


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw3_utils.submit", description="Pack submission_<student>.zip")
    p.add_argument("--student", help="your name or id (default: $USER)")
    p.add_argument("--out", default=".", help="folder for the zip (default: here)")
    args = p.parse_args(argv)
    pack(args.student, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
