"""Files that are either complete or absent: write to a temporary name beside the target, then rename.

A kill (or a full disk) mid-write leaves at most a `*.tmp` file, never a truncated file under the
final name; readers skip or remove the `.tmp` leftovers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path, data: bytes | str | Callable, durable: bool = False, suffix: str = ".tmp") -> Path:
    """Write `data` (bytes, str, or a function that writes to a binary file object) to `path` atomically.

    durable=True also fsyncs the file and its folder, so the rename survives a power cut
    (checkpoints). `suffix` names the temporary file (numpy's savez wants names ending in .npz).
    """
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):
        fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path
