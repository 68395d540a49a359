"""Does the model still learn? The cpu profile trained from scratch, its FID beside the floor and a bound.

`make quality` (CI runs it after `make test`) runs the gate: `pipeline.run_all` on the `cpu` profile in a
fresh run folder (train, process grid, cfg.num_samples samples, FID vs MNIST train and test), a table of
its times and FIDs beside the floor, its record (bench/record.py's format), and a failure when the FID vs
MNIST train is above BOUND x the FID the recipe scored when it landed (LANDED's record). Noise scores 300
or more, so the gate catches a model that stopped learning, not a slower one.

It scores against the FID cache of the runs folder the caller set ($HW3_RUNS_DIR/fid_cache, where .ci/run
links MNIST's statistics; else runs/fid_cache): without the statistics, Inception first runs over all 70,000
MNIST images (hours). $HW3_QUALITY_JSON: where to write the record; $HW3_QUALITY_GRIDS: a folder to copy the
run's figures into as <name>_<profile>.png (the README's images come from there).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from bench import _common as C
from bench.record import REPO, read_record, write_record
from hw3_utils import get_config, pick_device
from hw3_utils.pipeline import run_all
from hw3_utils.runfolder import FIGURES, checkpoint_paths, figure_path

# the walk whose notebook 05 scored, to the digit, what make quality scored when the cpu recipe landed
LANDED = Path("bench/results/student_walk/channels_last_epyc_2026-12-03.json")
BOUND = 1.5  # x the landed FID: a run above it has stopped learning what it learned then
CALLER_RUNS = os.environ.get("HW3_RUNS_DIR")  # read before the fixtures point it at a test's own folder


def landed_fid() -> float:
    """The FID vs MNIST train of LANDED's notebook 05."""
    rows = read_record(REPO / LANDED)["rows"]
    return next(r["fid_vs_mnist_train"] for r in rows if r["name"] == "notebook 05's FID")


def learning_gate(cfg, out: Path, device, max_fid: float, record=None, grids=None) -> tuple[bool, dict]:
    """Train `cfg` from scratch in `out` (empty) as `python -m hw3_utils all` does, print its table, write its
    record to `record` and its figures to `grids` when given; (FID vs MNIST train <= max_fid, run_all's record)."""
    if checkpoint_paths(out):
        raise ValueError(f"{out} already holds checkpoints: the gate trains from scratch; give it an empty folder")
    t0 = time.perf_counter()
    rec = run_all(cfg, out, device=device, progress=False)
    rec["total_seconds"] = round(time.perf_counter() - t0, 1)
    if grids:
        Path(grids).mkdir(parents=True, exist_ok=True)
        for name in FIGURES:
            shutil.copyfile(figure_path(out, name), Path(grids) / f"{name}_{cfg.profile}.png")
    fid, passed = rec["fid_vs_mnist_train"], rec["fid_vs_mnist_train"] <= max_fid
    n, refs = rec["num_samples"], rec["reference_images"]
    print(f"\n{rec['device']}, torch {rec['torch']}, profile {cfg.profile}, {rec['date']}")
    print(C.table([
        ["training", C.fmt_s(rec["train_seconds"]), f"{cfg.epochs} epochs, batch {cfg.batch_size}, "
                                                    f"width {cfg.model_channels}"],
        ["sampling", C.fmt_s(rec["sample_seconds"]), f"{n:,} samples, {rec['sampler']}"],
        ["scoring", C.fmt_s(rec["fid_seconds"]), "Inception over the samples (+ any reference not yet cached)"],
        ["FID vs MNIST train", f"{fid:.2f}", f"{n:,} samples vs {refs['train']:,} images"],
        ["FID vs MNIST test", f"{rec['fid_vs_mnist_test']:.2f}", f"{n:,} samples vs {refs['test']:,} images"],
        ["floor", f"{rec['fid_floor_test_vs_train']:.2f}",
         f"{rec['floor_images']:,} real test images vs the training set"],
    ], ["what", "value", "how"]))
    print(f"{'ok' if passed else 'FAIL'}: FID vs MNIST train {fid:.2f} {'<=' if passed else 'is above'} {max_fid:g}")
    if record:
        keys = ("train_seconds", "sample_seconds", "fid_seconds", "total_seconds", "fid_vs_mnist_train",
                "fid_vs_mnist_test", "fid_floor_test_vs_train", "final_loss", "num_samples", "floor_images")
        config = {"profile": cfg.profile, "sampler": rec["sampler"], "reference_images": refs, "max_fid": max_fid,
                  "landed": LANDED.as_posix()}
        write_record("quality", [{"name": cfg.profile, **{k: rec[k] for k in keys}, "passed": passed}], config,
                     ["python", "-m", "pytest", *sys.argv[1:]], path=record, device=device)
    return passed, rec


@pytest.mark.quality
def test_the_cpu_profile_still_learns(tmp_path, monkeypatch):
    if CALLER_RUNS:
        monkeypatch.setenv("HW3_RUNS_DIR", CALLER_RUNS)
    else:
        monkeypatch.delenv("HW3_RUNS_DIR")
    max_fid = BOUND * landed_fid()
    passed, rec = learning_gate(get_config("cpu", verbose=False), tmp_path / "run", pick_device(None), max_fid,
                                os.environ.get("HW3_QUALITY_JSON"), os.environ.get("HW3_QUALITY_GRIDS"))
    assert passed, (f"FID vs MNIST train {rec['fid_vs_mnist_train']:.2f} is above {max_fid:.2f} ({BOUND} x the "
                    f"{landed_fid():.2f} of {LANDED}): training no longer learns what it did")


# the gate itself, at test sizes: the same profile and code path, sizes shrunk
TINY = dict(model_channels=8, train_subset=64, epochs=1, batch_size=32, lr_warmup_steps=1, num_samples=8,
            sample_batch_size=8, sample_steps=5, fid_ref_count=8, fid_batch_size=8, log_every=1)


@pytest.mark.slow
def test_the_gate_reports_times_fids_and_floor_and_catches_an_untrained_model(tmp_path, data_dir, capsys):
    cfg = get_config("cpu", verbose=False, **TINY)
    passed, rec = learning_gate(cfg, tmp_path / "run", "cpu", 1000.0, tmp_path / "q.json", tmp_path / "grids")
    out = capsys.readouterr().out
    record = read_record(tmp_path / "q.json")
    (row,) = record["rows"]
    assert passed and row["passed"] and record["bench"] == "quality" and record["config"]["profile"] == "cpu"
    assert row["num_samples"] == row["floor_images"] == 8 and row["fid_vs_mnist_train"] == rec["fid_vs_mnist_train"]
    for k in ("train_seconds", "sample_seconds", "fid_seconds", "fid_vs_mnist_train", "fid_vs_mnist_test",
              "fid_floor_test_vs_train"):
        assert math.isfinite(row[k]) and row[k] > 0, k
    assert "x0-hat clipped" in record["config"]["sampler"] and "5 respaced steps" in record["config"]["sampler"]
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == ["loss_curve_cpu.png", "process_grid_cpu.png",
                                                                      "samples_grid_cpu.png"]
    assert "floor" in out and "ok: FID vs MNIST train" in out
    with pytest.raises(ValueError, match="already holds checkpoints"):
        learning_gate(cfg, tmp_path / "run", "cpu", 1000.0)
    # two steps from a random start, the model draws noise, which scores far above 1: the bound catches it
    passed, rec = learning_gate(cfg, tmp_path / "noise", "cpu", 1.0)
    assert not passed and rec["fid_vs_mnist_train"] > 1.0 and "FAIL: FID vs MNIST train" in capsys.readouterr().out


def test_the_bound_reads_the_landed_recipes_fid_from_its_record():
    fid = landed_fid()
    assert isinstance(fid, float) and 0 < fid < 300  # a trained model's FID-1k; noise scores 300 or more
