"""Reading a submission zip: an allowlist of members extracted safely, and notes on what was handed in.

The allowlist: the task files, the kit's own notebooks (notebooks/<name>.ipynb of the release), runs/*/fid.json,
manifest.json and report.html. Unsafe paths, links, duplicates, notebooks the kit has not, and oversized members
(declared and while streaming, each against its own cap and all of them against MAX_TOTAL_BYTES) are refused
member by member; a file that is not a zip, or too large, or with too many members, is refused whole.
"""

from __future__ import annotations

import hashlib
import re
import stat
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hw3_utils.runfolder import SUBMITTED_FID_RE
from hw3_utils.student_files import JSON_BYTES, NOTEBOOK_BYTES, Unreadable, load_json, load_notebook

MiB = 1024 * 1024
CAPS = {".py": 2 * MiB, ".ipynb": NOTEBOOK_BYTES, ".json": JSON_BYTES, ".html": 20 * MiB}
REPORT = "report.html"  # hw3_utils.report.REPORT: the student's report, read by a person, never run
MAX_MEMBERS = 200
MAX_ZIP_BYTES = 200 * MiB
MAX_TOTAL_BYTES = 64 * MiB  # every member of one zip, decompressed: a few notebooks with figures, a report
EXTRACT_ORDER = (".py", ".json", ".ipynb", ".html")  # extracted in this order, so what passes the total is the last
NOTEBOOK_RE = re.compile(r"^notebooks/[A-Za-z0-9_.-]+\.ipynb$")
FID_RE = SUBMITTED_FID_RE  # runs/<profile>/fid.json


def kit_tasks(kit: Path | None = None):
    """The tasks: those of the kit this process imports (hw3_utils.checks.TASKS); with `kit`, a student release
    (`make release`), only those its own registry holds (its hw3_utils/tasks/task_<id>.py modules), so that a
    release without an optional extension is graded on the tasks it has."""
    from hw3_utils.checks import TASKS

    if kit is None:
        return TASKS
    held = {p.stem.removeprefix("task_") for p in (Path(kit) / "hw3_utils" / "tasks").glob("task_*.py")}
    return {tid: t for tid, t in TASKS.items() if tid in held}


def task_files(tasks: dict | None = None) -> list[str]:
    """The student files of `tasks` (default: every task of `kit_tasks()`)."""
    return sorted({t.file for t in (kit_tasks() if tasks is None else tasks).values()})


def kit_notebooks(kit: Path | None = None) -> set[str]:
    """The notebooks a submission may hold, as zip names (notebooks/01_data_prep.ipynb): those of the release `kit`
    (default: the kit this process imports, whose notebooks/ sits beside its hw3_utils/)."""
    import hw3_utils

    root = Path(kit) if kit is not None else Path(hw3_utils.__file__).resolve().parent.parent
    return {f"notebooks/{p.name}" for p in (root / "notebooks").glob("*.ipynb")}


def allowlist(kit: Path | None = None) -> set[str]:
    """Every name a submission's member may have but runs/<profile>/fid.json (FID_RE): the task files, the
    notebooks of the release `kit` (default: of the kit this process imports), manifest.json and the report."""
    return set(task_files(kit_tasks(kit))) | kit_notebooks(kit) | {"manifest.json", REPORT}


def allowed(name: str, names: set[str] | None = None) -> bool:
    """Whether a member named `name` is extracted: in `names` (default: `allowlist()`), or a run's fid.json."""
    return name in (allowlist() if names is None else names) or bool(FID_RE.match(name))


@dataclass
class Extracted:
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fatal: str | None = None
    refused: int = 0  # members refused (unsafe, a link, oversized, damaged, not the kit's): worth a human look
    size: int = 0  # bytes extracted, of MAX_TOTAL_BYTES
    foreign: list[str] = field(default_factory=list)  # notebooks the kit has not: one note for all of them

    def cap(self, name: str) -> tuple[int, str]:
        """The most bytes member `name` may still decompress to (its own cap, or what is left of the total), and
        how to name that cap in a note."""
        own, left = CAPS[Path(name).suffix], MAX_TOTAL_BYTES - self.size
        if own <= left:
            return own, f"the {own:,}-byte cap"
        return left, f"the {left:,} bytes left of the {MAX_TOTAL_BYTES // MiB} MiB one submission's files may hold"

    def refuse(self, name: str, why: str) -> None:
        self.refused += 1
        self.notes.append(f"rejected {name!r}: {why}")


def _unsafe(name: str) -> str | None:
    if not name or "\\" in name or "\0" in name:
        return "backslash or NUL in the path"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in the path"
    return None


def _open_zip(zpath: Path, res: Extracted) -> zipfile.ZipFile | None:
    """The zip, opened; None, with `res.fatal` saying why, for a file too large, not a zip, or unreadable."""
    try:
        if zpath.stat().st_size > MAX_ZIP_BYTES:
            res.fatal = f"the file is larger than {MAX_ZIP_BYTES // MiB} MiB"
            return None
        if not zipfile.is_zipfile(zpath):
            res.fatal = "not a zip file"
            return None
        return zipfile.ZipFile(zpath)
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        res.fatal = f"bad zip file ({type(err).__name__})"
        return None


def _skipped(info: zipfile.ZipInfo, dups: set[str], res: Extracted, names: set[str]) -> bool:
    """True for a member not to extract (noted or refused in `res`): a duplicate, an unsafe path, a link, a
    folder, a file no submission holds (refused: a notebook not in `names`, the allowlist), anything but a
    regular file, a declared size over its cap."""
    name = info.filename
    if name in dups:
        return True
    why = _unsafe(name)
    if why:
        res.refuse(name, why)
        return True
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        res.refuse(name, "a symbolic link")
        return True
    if name.endswith("/") or info.is_dir():
        return True
    if not allowed(name, names):
        if name.endswith(".ipynb"):
            res.refused += 1
            res.foreign.append(name)
        else:
            res.notes.append(f"ignored {name!r}: not part of a submission")
        return True
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # many zippers store permission bits only
        res.refuse(name, "not a regular file")
        return True
    cap, what = res.cap(name)
    if info.file_size > cap:
        res.refuse(name, f"declares {info.file_size:,} bytes, over {what}")
        return True
    return False


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, res: Extracted) -> bool:
    """Write one member to `target`, stopping at its cap and checking its declared size and checksum; False
    (refused in `res`, nothing left at `target`) where it fails."""
    name, (cap, what) = info.filename, res.cap(info.filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    total, crc, ok = 0, 0, True
    try:
        with zf.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(64 * 1024):
                total += len(chunk)
                if total > cap:
                    ok = False
                    res.refuse(name, f"more than {cap:,} bytes when decompressed, over {what} "
                                     f"(it declares {info.file_size:,})")
                    break
                crc = zlib.crc32(chunk, crc)
                out.write(chunk)
        # zipfile stops at the declared size: a member that lies about it fails the checksum
        if ok and (total != info.file_size or crc != info.CRC):
            ok = False
            res.refuse(name, "its content does not match its declared size and "
                             "checksum (a damaged or manipulated zip)")
    except Exception as err:  # CRC errors, unsupported compression, truncated data
        ok = False
        res.refuse(name, f"cannot be read ({type(err).__name__})")
    if not ok:
        target.unlink(missing_ok=True)
    else:
        res.size += total
    return ok


def _rank(info: zipfile.ZipInfo) -> int:
    suffix = Path(info.filename).suffix
    return EXTRACT_ORDER.index(suffix) if suffix in EXTRACT_ORDER else len(EXTRACT_ORDER)


def safe_extract(zpath: Path, dest: Path, kit: Path | None = None, only: set[str] | None = None) -> Extracted:
    """Extract the allowlisted members of a zip into `dest`; everything else is reported, not written. `kit`: the
    release whose tasks and notebooks a submission may hold (default: the kit this process imports); `only`:
    extract just the members of these names, saying nothing of the others (the similarity check's task files).
    The code first (EXTRACT_ORDER): a submission over MAX_TOTAL_BYTES loses its largest kinds of file."""
    res = Extracted()
    zf = _open_zip(zpath, res)
    if zf is None:
        return res
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            res.fatal = f"too many members ({len(infos)} > {MAX_MEMBERS})"
            return res
        infos = sorted((i for i in infos if only is None or i.filename in only), key=_rank)
        counts = Counter(i.filename for i in infos)
        dups = {n for n, k in counts.items() if k > 1}
        for n in sorted(dups):
            res.refuse(n, "it occurs more than once in the zip")
        names = allowlist(kit)
        for info in infos:
            if not _skipped(info, dups, res, names) and _extract_member(zf, info, dest / info.filename, res):
                res.files[info.filename] = dest / info.filename
    if res.foreign:
        more = len(res.foreign) - 3
        shown = ", ".join(repr(n) for n in res.foreign[:3]) + (f" and {more} more" if more > 0 else "")
        res.notes.append(f"rejected {shown}: not one of the kit's notebooks (submit the kit's notebooks under their "
                         "own names)")
    return res


# notes on notebooks, fid.json, manifest: every file read through hw3_utils.student_files -----------------
def read_notebooks(files: dict[str, Path]) -> dict[str, dict | Unreadable]:
    """Each submitted notebook, read once (hw3_utils.student_files.load_notebook): its checked JSON, or the
    `Unreadable` error that says why it cannot be used."""
    out: dict[str, dict | Unreadable] = {}
    for name in sorted(files):
        if NOTEBOOK_RE.match(name):
            try:
                out[name] = load_notebook(files[name])
            except Unreadable as err:
                out[name] = err
    return out


def notebook_cells(nb: dict | Unreadable) -> tuple[int, int] | None:
    """(code cells that have run, code cells) of a checked notebook; None when it is unreadable."""
    if isinstance(nb, Unreadable):
        return None
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    return sum(1 for c in cells if c.get("outputs") or c.get("execution_count")), len(cells)


def notebook_note(name: str, nb: dict | Unreadable) -> str:
    cells = notebook_cells(nb)
    if cells is None:
        return f"{name}: not a readable notebook ({nb})"
    ran, total = cells
    return f"{name}: " + ("not executed" if ran == 0 else f"executed ({ran} of {total} code cells have run)")


def fid_note(name: str, path: Path) -> str:
    try:
        rec = load_json(path)
    except Unreadable as err:
        return f"{name}: not readable ({err})"
    vals = {k: rec.get(k) for k in ("fid_vs_mnist_train", "fid_vs_mnist_test", "num_samples", "profile")}
    shown = ", ".join(f"{k} = {v:.2f}" if isinstance(v, float) else f"{k} = {str(v)[:80]}"
                      for k, v in vals.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool))
    return f"{name}: {shown or 'no FID values'}"


def fid_mismatch(path: Path) -> str | None:
    """Why a submitted fid.json does not fit the profile it names (None when it does): the kit's own
    check (hw3_utils.runfolder.fid_problem), so what notebook 05 writes is what passes here."""
    from hw3_utils.runfolder import fid_problem

    try:
        return fid_problem(load_json(path))
    except Unreadable as err:
        return f"fid.json is not readable ({err})"
    except Exception as err:  # fid_problem on a record of odd types: the file's fault, not the batch's
        return f"fid.json is not readable ({type(err).__name__})"


def manifest_notes(files: dict[str, Path]) -> list[str]:
    if "manifest.json" not in files:
        return ["no manifest.json (was the zip made with `make submit`?)"]
    try:
        man = load_json(files["manifest.json"])
    except Unreadable as err:
        return [f"manifest.json is not readable ({err})"]
    sums = man.get("files", {})
    notes = []
    for name, path in files.items():
        if name == "manifest.json" or not isinstance(sums, dict) or name not in sums:
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != sums[name]:
            notes.append(f"{name}: differs from its checksum in manifest.json")
    kit = man.get("kit_version")
    if kit:
        notes.append(f"kit version (manifest): {str(kit)[:40]}")
    return notes


def unreadable(files: dict[str, Path], notebooks: dict[str, dict | Unreadable]) -> list[str]:
    """The submitted notebooks, fid.json and manifest.json that cannot be read: worth a human look."""
    bad = [n for n, nb in notebooks.items() if isinstance(nb, Unreadable)]
    for name in sorted(files):
        if FID_RE.match(name) or name == "manifest.json":
            try:
                load_json(files[name])
            except Unreadable:
                bad.append(name)
    return bad
