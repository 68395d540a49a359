"""The learning gate's folder (`make quality`, marker `quality`): the repository's root on the path, for the
record writer the gate shares with the benches (bench/record.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
