"""Shared fixtures. Tests read MNIST from $HW3_DATA_DIR and the FID weights from $TORCH_HOME,
exactly as an offline user would (.ci/run sets both); nothing here is skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hw3_utils import Config


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    # every test writes its runs and caches under its own temporary folder
    monkeypatch.setenv("HW3_RUNS_DIR", str(tmp_path / "runs"))
    torch.manual_seed(0)
    yield
    _check_release_untouched()


# the session's student release: its folder and the fingerprint it was built with
_RELEASE: dict = {}


def fingerprint(root: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime_ns, mode) of every file and folder under `root`, by relative path: what a write changes."""
    return {p.relative_to(root).as_posix(): (st.st_size if p.is_file() else 0, st.st_mtime_ns, st.st_mode)
            for p in sorted(root.rglob("*")) for st in [p.lstat()]}


def _check_release_untouched() -> None:
    if _RELEASE and fingerprint(_RELEASE["path"]) != _RELEASE["fingerprint"]:
        now = fingerprint(_RELEASE["path"])
        changed = sorted(k for k in now.keys() | _RELEASE["fingerprint"].keys()
                         if now.get(k) != _RELEASE["fingerprint"].get(k))
        _RELEASE["fingerprint"] = now  # reported once, by the test that wrote
        pytest.fail(f"this test wrote into the shared student release (copy it first): {changed[:10]}")


@pytest.fixture(scope="session")
def student_release(tmp_path_factory) -> Path:
    """The default student kit (`make release REPO_URL=none`), built once per session. Shared: a test that
    changes it (a file, a bytecode cache, a new file) fails; copy it first (shutil.copytree) to modify it."""
    from grader.release import make_release

    kit = make_release(tmp_path_factory.mktemp("student_release") / "release", quiet=True, repo_url="none")
    _RELEASE.update(path=kit, fingerprint=fingerprint(kit))
    return kit


def tiny_config(**overrides) -> Config:
    """A config small enough for a CPU test: width 8, 64 images, batches of 16, T=1000 kept."""
    values = dict(profile="full-smoke", model_channels=8, train_subset=64, batch_size=16, epochs=2,
                  num_samples=8, sample_batch_size=4, fid_ref_count=16, fid_batch_size=16,
                  log_every=1, num_workers=0, tensor_data=False)
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def tiny_cfg() -> Config:
    return tiny_config()


@pytest.fixture(scope="session")
def data_dir():
    d = os.environ.get("HW3_DATA_DIR")
    assert d, "set HW3_DATA_DIR to a folder holding MNIST/raw (docs/students.md, 'Troubleshooting'); .ci/run does"
    return d
