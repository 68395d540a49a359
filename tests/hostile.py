"""Hostile submissions and what each must get: shared by the root batch (tests/test_grader.py) and the
batch graded as an unprivileged user (tests/test_grader_unprivileged.py, through tests/grade_driver.py).

`build(subs, out)` writes the zips; EXPECT says, per student, which tasks must get 0 (every other task
gets full marks) and which words its feedback must hold. Every name the hostile code leaves on the
machine starts with LEFTOVER, so a test can check that nothing survived the batch.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from grader import REPO
from grader.sandbox import SHARED_TMP
from hw3_utils.tasks import TASK_FILES, TASKS

ALL = set(TASKS)
LEFTOVER = "hw3_hostile_"


def solution(rel: str) -> str:
    return (REPO / rel).read_text()


def write_zip(path: Path, members: dict[str, str | bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            z.writestr(info, target)
    return path


def patch_size(path: Path, member: str, size: int) -> None:
    """Rewrite a member's declared uncompressed size (local header and central directory)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, name_len_at, name_at, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        pos = data.find(sig)
        while pos >= 0:
            n = struct.unpack_from("<H", data, pos + name_len_at)[0]
            if bytes(data[pos + name_at:pos + name_at + n]) == name:
                struct.pack_into("<I", data, pos + size_at, size)
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def files(**over) -> dict[str, str]:
    out = {rel: solution(rel) for rel in TASK_FILES}
    out.update({f"hw3_utils/{k}.py": v for k, v in over.items()})
    return {k: v for k, v in out.items() if v is not None}


def at_import(code: str) -> dict[str, str]:
    """The solution, with `code` run when hw3_utils.data is imported."""
    return files(data=solution("hw3_utils/data.py") + "\n" + code)


# What resource-hungry code does; every write is wrapped so that the code goes on to its tasks.
_FILL = f"""
import os as _os
def _fill(folder, total=2_400 * 1024**2, chunk=b"x" * (8 * 1024**2)):
    n = 0
    try:
        with open(_os.path.join(folder, "{LEFTOVER}fill"), "wb") as f:
            while n < total:
                f.write(chunk)
                n += len(chunk)
    except OSError:
        pass
"""
DISKFILL = _FILL + """
for _d in ["/tmp", "/var/tmp", _os.environ.get("HOME", "/tmp"), _os.getcwd(), _os.path.dirname(__file__)]:
    _fill(_d)
"""
SHMFILL = _FILL + '_fill("/dev/shm")\n'
MANYFILES = f"""
import os as _os
for _d in ["/tmp", _os.environ.get("HOME", "/tmp")]:
    try:
        for _i in range(60_000):
            open(_os.path.join(_d, "{LEFTOVER}many_%d" % _i), "w").close()
    except OSError:
        pass
"""
FLOOD = 'import sys as _sys\nfor _i in range(150):\n    _sys.stdout.write("x" * (1024**2) + "\\n")\n' \
        '_sys.stderr.write("y" * (4 * 1024**2))\n'
# a daemon: double fork and setsid, then it keeps writing and never exits
DAEMON = f"""
import os as _os, time as _time
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        while True:
            for _d in {list(SHARED_TMP)!r}:
                try:
                    open(_os.path.join(_d, "{LEFTOVER}daemon"), "a").write("alive\\n")
                except OSError:
                    pass
            _time.sleep(0.2)
    _os._exit(0)
"""
LEAK_WRITE = f"""
for _d in {list(SHARED_TMP)!r}:
    try:
        open(_d + "/{LEFTOVER}secret", "w").write("the answers")
    except OSError:
        pass
"""
# graded right after h_leak_a (possibly at the same time): fails every task if it can read what h_leak_a left
LEAK_READ = f"""
import os as _os, time as _time
for _ in range(40):
    for _d in {list(SHARED_TMP)!r}:
        if _os.path.exists(_d + "/{LEFTOVER}secret"):
            raise RuntimeError("read another submission's file in " + _d)
    _time.sleep(0.2)
"""

# student -> (tasks that get 0, words its feedback holds)
EXPECT: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "h_loop": ({"3"}, ("time limit exceeded",)),
    "h_exit_import": (ALL, ("could not be imported", "exit code 3")),
    "h_raise_import": (ALL, ("RuntimeError: boom at import (hw3_utils/unet.py:",)),
    "h_syntax": (ALL, ("SyntaxError", "hw3_utils/data.py:")),
    "h_missing": ({"5b"}, ()),
    "h_paths": (set(), ("rejected '../evil.py'", "rejected '/tmp/hw3_abs_evil.py': absolute path", "backslash",
                        "ignored 'notes.txt'")),
    "h_symlink": ({"1"}, ("symbolic link",)),
    "h_bigdecl": ({"2a", "2b"}, ("declares 2,000,000,000 bytes",)),
    "h_bomb": ({"3", "4", "5a"}, ("rejected 'hw3_utils/diffusion.py'",)),
    "h_membomb": ({"5a"}, ()),
    "h_writer": ({"3", "4", "5a"}, ()),  # its diffusion.py is the stub: reading the solution failed
    "h_notazip": (ALL, ("rejected: not a zip file",)),
    "h_diskfill": (set(), ()),
    "h_shmfill": (set(), ()),
    # it used up the sandbox's files: its own task 5b cannot make its temporary folder, and says why
    "h_manyfiles": ({"5b"}, ("No space left on device",)),
    "h_flood": (set(), ("your code printed more than 1 MB; remove the print calls inside loops",)),
    "h_daemon": (set(), ()),
    "h_leak_a": (set(), ()),
    "h_leak_b": (set(), ()),
    "zz_solution": (set(), ("100 / 100",)),  # graded after all the others (in sorted order)
}


def build(subs: Path, out: Path, stub: dict[str, str]) -> None:
    """Write every submission of EXPECT into `subs`; `out` is where the grades go (h_writer aims at it)."""
    diff = solution("hw3_utils/diffusion.py")
    loop = diff.replace("        ### BEGIN SOLUTION 3\n", "        ### BEGIN SOLUTION 3\n        while True:\n"
                        "            pass\n")
    write_zip(subs / "zz_solution.zip", files())
    write_zip(subs / "h_loop.zip", files(diffusion=loop))
    write_zip(subs / "h_exit_import.zip", files(diffusion=diff + "\nimport os\nos._exit(3)\n"))
    write_zip(subs / "h_raise_import.zip", files(unet=solution("hw3_utils/unet.py")
                                                 + "\nraise RuntimeError('boom at import')\n"))
    write_zip(subs / "h_syntax.zip", files(data=solution("hw3_utils/data.py") + "\ndef broken(:\n    pass\n"))
    write_zip(subs / "h_missing.zip", files(pipeline=None))
    write_zip(subs / "h_paths.zip", {**files(), "../evil.py": "print('evil')\n", "/tmp/hw3_abs_evil.py": "x\n",
                                     "hw3_utils\\evil.py": "x\n", "notes.txt": "hello\n"})
    write_zip(subs / "h_symlink.zip", files(data=None), symlinks={"hw3_utils/data.py": str(REPO / "hw3_utils/data.py")})
    write_zip(subs / "h_bigdecl.zip", files())
    patch_size(subs / "h_bigdecl.zip", "hw3_utils/unet.py", 2_000_000_000)
    write_zip(subs / "h_bomb.zip", files(diffusion=diff + "#" * (3 * 1024 * 1024) + "\n"))
    patch_size(subs / "h_bomb.zip", "hw3_utils/diffusion.py", 1000)
    hog = diff.replace("        ### BEGIN SOLUTION 5a\n", "        ### BEGIN SOLUTION 5a\n"
                       "        _hog = torch.ones(50 * 1024**3, dtype=torch.uint8)\n")
    write_zip(subs / "h_membomb.zip", files(diffusion=hog))
    evil_row = "h_writer,10,10,20,15,15,20,10,100,graded\n"
    writer = solution("hw3_utils/data.py") + f"""
import os as _os
for _p in [{str(out / 'grades.csv')!r}, {str(out / 'feedback' / 'zz_solution.md')!r}, {str(out / 'score.txt')!r},
           {str(REPO / 'hw3_utils' / 'zz_evil.py')!r}, {str(subs / 'zz_evil.zip')!r}]:
    try:
        _os.makedirs(_os.path.dirname(_p), exist_ok=True)
        with open(_p, "w") as _f:
            _f.write({evil_row!r})
    except Exception:
        pass
"""
    reader = stub["hw3_utils/diffusion.py"] + f"""
try:  # the solution's DDPM, read from the instructor's kit
    exec(open({str(REPO / 'hw3_utils' / 'diffusion.py')!r}).read().replace("from .config", "from hw3_utils.config"))
except Exception:
    pass
try:  # or from another student's zip
    import zipfile as _z
    exec(_z.ZipFile({str(subs / 'zz_solution.zip')!r}).read("hw3_utils/diffusion.py").decode())
except Exception:
    pass
"""
    write_zip(subs / "h_writer.zip", files(data=writer, diffusion=reader))
    (subs / "h_notazip.zip").write_text("this is not a zip\n")
    for name, code in (("h_diskfill", DISKFILL), ("h_shmfill", SHMFILL), ("h_manyfiles", MANYFILES),
                       ("h_flood", FLOOD), ("h_daemon", DAEMON), ("h_leak_a", LEAK_WRITE), ("h_leak_b", LEAK_READ)):
        write_zip(subs / f"{name}.zip", at_import(code))


def leftovers() -> list[str]:
    """What hostile code left on this machine: files in the shared temporary folders, live runner processes."""
    found = [str(p) for d in SHARED_TMP if Path(d).is_dir() for p in Path(d).glob(f"{LEFTOVER}*")]
    found += [str(p) for p in Path("/tmp").glob("hw3_abs_evil*")]
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        # a run started as a new process, or forked by the fork server (the zygote is closed after its batch)
        if proc.name.isdigit() and (b"hw3_utils.checks\0--run" in cmd or b"grader/zygote.py" in cmd):
            shown = cmd.replace(b"\0", b" ")[:120].decode(errors="replace")
            found.append(f"process {proc.name}: {shown}")
    return found


def check(points: dict[str, dict[str, int]], feedback: dict[str, str]) -> list[str]:
    """What differs from EXPECT: one line per problem (empty when all is as expected)."""
    problems = []
    for student, (zero, words) in EXPECT.items():
        if student not in points:
            problems.append(f"{student}: not graded")
            continue
        want = {t: 0 if t in zero else task.points for t, task in TASKS.items()}
        if points[student] != want:
            problems.append(f"{student}: {points[student]} != {want}")
        problems += [f"{student}: feedback lacks {w!r}" for w in words if w not in feedback[student]]
    return problems
