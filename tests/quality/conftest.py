"""The learning gate's folder (`make quality`): its marker, and the repository's root on the path, for the
record writer the gate shares with the benches (bench/record.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "quality: trains the cpu profile at its real size (make quality, not make unit)")
