"""The headless path: python -m hw3_utils train|sample, and its argument errors."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test starts Python and torch in a subprocess

TINY = ["--set", "model_channels=8", "train_subset=32", "batch_size=16", "epochs=1", "num_samples=4",
        "sample_batch_size=4", "num_workers=0"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "hw3_utils", *args], capture_output=True, text=True)


def test_train_then_sample(tmp_path, data_dir):
    out = tmp_path / "run"
    r = cli("train", "--profile", "full-smoke", "--out", str(out), "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    assert "profile 'full-smoke' (chosen by argument)" in r.stdout and "trained to epoch 1" in r.stdout
    assert (out / "checkpoints" / "step_00000002.pt").exists() and (out / "config.json").exists()
    assert [p.name for p in (out / "previews").iterdir()] == ["epoch_001.png"]  # digits while it trains
    r = cli("sample", "--profile", "full-smoke", "--out", str(out), "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "samples_step_00000002").glob("*.png")) == [
        f"{i:05d}.png" for i in range(4)]


def test_bad_arguments_are_explained():
    r = cli("train", "--profile", "huge")
    assert r.returncode == 2 and "unknown profile 'huge'" in r.stderr and "'cpu-smoke'" in r.stderr
    r = cli("train", "--profile", "full-smoke", "--set", "epoch=3")
    assert r.returncode == 2 and "unknown config key(s) ['epoch']" in r.stderr
    r = cli("train", "--profile", "full-smoke", "--set", "epochs")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr


ONE_LINE_ERRORS = [  # (arguments, the line on stderr); every one exits 2 without a traceback
    (["train", "--set", "epochs=abc"], "error: epochs='abc' is not allowed: epochs must be an integer >= 1"),
    (["train", "--set", "lr=-1"], "error: lr=-1 is not allowed: lr must be a number in (0, 1]"),
    (["train", "--set", "batch_size=0"], "error: batch_size=0 is not allowed"),
    (["train", "--set", "timesteps=1"], "error: timesteps=1 is not allowed"),
    (["sample", "--set", "num_samples=0"], "error: num_samples=0 is not allowed"),
    (["train", "--set", "variance=foo"], "error: variance='foo' is not allowed"),
    (["train", "--set", "channel_mult=[1]"], "error: channel_mult=[1] is not allowed"),
]


@pytest.mark.parametrize("args,line", ONE_LINE_ERRORS, ids=[" ".join(a) for a, _ in ONE_LINE_ERRORS])
def test_bad_values_print_one_line_and_exit_2(args, line):
    r = cli(*args, "--profile", "full-smoke")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.strip().startswith(line)
    assert "Traceback" not in r.stderr


def test_sample_before_training_is_one_line(tmp_path):
    r = cli("sample", "--profile", "full-smoke", "--out", str(tmp_path / "never_trained"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: no checkpoints in {tmp_path / 'never_trained' / 'checkpoints'}; "
                                "train first (notebook 04)")


def test_debug_shows_the_traceback():
    r = cli("train", "--profile", "full-smoke", "--set", "lr=-1", "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr and "ConfigError: lr=-1 is not allowed" in r.stderr


def test_fid_writes_train_test_and_floor(tmp_path, data_dir):
    out = tmp_path / "run"
    tiny = [*TINY, "fid_ref_count=8", "fid_batch_size=8", "timesteps=20"]
    for command in ("train", "sample"):
        assert cli(command, "--profile", "full-smoke", "--out", str(out), "--no-progress", *tiny).returncode == 0
    r = cli("fid", "--profile", "full-smoke", "--out", str(out), "--no-progress", *tiny)
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / "fid.json").read_text())
    for key in ("fid_vs_mnist_train", "fid_vs_mnist_test", "fid_floor_test_vs_train"):
        assert rec[key] > 0, key
    assert rec["reference_images"] == {"train": 8, "test": 8} and rec["samples"].endswith("samples_step_00000002")
    assert "FID note: with 4 images" in r.stdout and "floor: MNIST test vs train" in r.stdout
    assert "report, vs MNIST .npz" in r.stdout
    assert "Warning" not in r.stderr and "singular" not in r.stderr
