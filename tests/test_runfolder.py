"""The run folder's contract: one fid.json writer, whose records the grader's check accepts, and a check
that names what is wrong with a record that does not fit its profile."""

from __future__ import annotations

import math

import pytest

from grader.extract import fid_mismatch
from hw3_utils import PROFILES, get_config
from hw3_utils.runfolder import (
    FID_KEYS,
    FIGURES,
    fid_problem,
    figure_path,
    read_fid_json,
    sampler_name,
    samples_dir,
    write_fid_json,
)

TABLE = {"fid_vs_mnist_train": 24.2, "fid_vs_mnist_test": 23.9, "fid_floor_test_vs_train": 8.9,
         "floor_images": 1000, "num_samples": 1000, "reference_images": {"train": 60000, "test": 10000},
         "samples": "runs/cpu/samples_step_00004690", "report": {"vs MNIST .npz": 5.77}}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_one_writer_makes_records_the_grader_accepts(profile, tmp_path):
    cfg = get_config(profile, verbose=False)
    path = write_fid_json(tmp_path / profile, cfg, TABLE, "cpu", train_seconds=1.0)
    record = read_fid_json(path)
    assert path.name == "fid.json" and record["profile"] == profile
    assert record["num_samples"] == cfg.num_samples and record["sampler"] == sampler_name(cfg)
    assert all(math.isfinite(record[k]) for k in FID_KEYS) and record["floor_images"] == 1000
    assert record["device_type"] == "cpu" and record["torch"] and record["date"] and record["train_seconds"] == 1.0
    assert fid_problem(record) is None and fid_mismatch(path) is None


def test_the_check_names_what_does_not_fit(tmp_path):
    cfg = get_config("cpu", verbose=False)
    good = read_fid_json(write_fid_json(tmp_path, cfg, TABLE, "cpu"))
    cases = {
        "no known profile": {**good, "profile": "smoke"},
        "33 samples, but the cpu profile draws 1,000": {**good, "num_samples": 33},
        "fid_vs_mnist_train is 'nan'": {**good, "fid_vs_mnist_train": float("nan")},
        "fid_vs_mnist_test is 'None'": {k: v for k, v in good.items() if k != "fid_vs_mnist_test"},
        "fid_floor_test_vs_train is '-1.0'": {**good, "fid_floor_test_vs_train": -1.0},
        "fid_vs_mnist_train is 'True'": {**good, "fid_vs_mnist_train": True},
        "not the cpu profile's": {**good, "sampler": "DDIM, 10 steps"},
    }
    for words, record in cases.items():
        assert words in (fid_problem(record) or ""), (words, fid_problem(record))
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert "not readable" in fid_mismatch(tmp_path / "bad.json")
    (tmp_path / "worse.json").write_text("{not json")
    assert "not readable" in fid_mismatch(tmp_path / "worse.json")


def test_the_writer_refuses_a_table_without_the_fids(tmp_path):
    with pytest.raises(ValueError, match="fid_floor_test_vs_train"):
        write_fid_json(tmp_path, get_config("cpu", verbose=False),
                       {k: v for k, v in TABLE.items() if k != "fid_floor_test_vs_train"}, "cpu")
    assert not (tmp_path / "fid.json").exists()


def test_layout_names(tmp_path):
    assert [figure_path(tmp_path, f).name for f in FIGURES] == ["loss_curve.png", "process_grid.png",
                                                                 "samples_grid.png"]
    with pytest.raises(ValueError, match="unknown figure"):
        figure_path(tmp_path, "loss")
    assert samples_dir(tmp_path, tmp_path / "checkpoints" / "step_00000032.pt") == tmp_path / "samples_step_00000032"
