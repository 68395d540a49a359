"""Shared fixtures. Tests read MNIST from $HW3_DATA_DIR and the FID weights from $TORCH_HOME,
exactly as an offline user would (.ci/run sets both); nothing here is skipped."""

from __future__ import annotations

import os

import pytest
import torch

from hw3_utils import Config


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    # every test writes its runs and caches under its own temporary folder
    monkeypatch.setenv("HW3_RUNS_DIR", str(tmp_path / "runs"))
    torch.manual_seed(0)


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
