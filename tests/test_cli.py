"""The headless path: python -m hw3_utils train|sample, and its argument errors."""

import subprocess
import sys

import pytest

TINY = ["--set", "model_channels=8", "train_subset=32", "batch_size=16", "epochs=1", "num_samples=4",
        "sample_batch_size=4", "num_workers=0"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "hw3_utils", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_train_then_sample(tmp_path, data_dir):
    out = tmp_path / "run"
    r = cli("train", "--profile", "smoke", "--out", str(out), "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    assert "profile 'smoke' (chosen by argument)" in r.stdout and "trained to epoch 1" in r.stdout
    assert (out / "checkpoints" / "step_00000002.pt").exists() and (out / "config.json").exists()
    r = cli("sample", "--profile", "smoke", "--out", str(out), "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "samples_step_00000002").glob("*.png")) == [
        f"{i:05d}.png" for i in range(4)]


def test_bad_arguments_are_explained():
    r = cli("train", "--profile", "huge")
    assert r.returncode == 2 and "unknown profile 'huge'" in r.stderr and "'smoke'" in r.stderr
    r = cli("train", "--profile", "smoke", "--set", "epoch=3")
    assert r.returncode == 2 and "unknown config key(s) ['epoch']" in r.stderr
    r = cli("train", "--profile", "smoke", "--set", "epochs")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
