"""bench/: the fast path's padded training step is exact, and every bench script runs end to end on the CPU
in a tiny config and reports well-formed, positive, finite numbers (benchmarks assert nothing themselves)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from hw3_utils import DDPM, Config, TrainStep, build_model, sample

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
TINY = ["model_channels=8"]


def run_script(args, tmp_path, timeout=240, prelude=None, env=None):
    """Run a bench script with this interpreter from the repo root; return its stdout (fail with its output).
    `env`: variables to set on top of this process's."""
    cmd = [sys.executable, *(["-c", prelude] if prelude else []), *map(str, args)]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# the fast path's padded batch -------------------------------------------------------------------------
def test_padded_trainstep_loss_and_grads_equal_the_unpadded_batch():
    cfg = Config(model_channels=8, profile="full-smoke")
    ddpm = DDPM.from_config(cfg)
    B, real = 8, 5
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand((real, *cfg.image_shape), generator=g) * 2 - 1
    t = torch.randint(0, cfg.timesteps, (real,), generator=g)
    noise = torch.randn(x0.shape, generator=g)

    # as hw3_utils.train pads a short last batch: repeat an image, weights 1/real for real rows, 0 for padding
    pad = B - real
    x0_p = torch.cat([x0, x0[:1].expand(pad, -1, -1, -1)])
    t_p = torch.cat([t, torch.randint(0, cfg.timesteps, (pad,), generator=g)])
    noise_p = torch.cat([noise, torch.randn((pad, *cfg.image_shape), generator=g)])
    weights = torch.cat([torch.full((real,), 1.0 / real), torch.zeros(pad)])

    padded, plain = build_model(cfg, "cpu"), build_model(cfg, "cpu")
    step = TrainStep(padded, ddpm, torch.optim.SGD(padded.parameters(), lr=0.0))  # lr 0: grads stay, weights don't
    loss_p = step(x0_p, t_p, noise_p, weights)

    loss = F.mse_loss(plain(ddpm.q_sample(x0, t, noise), t), noise)
    loss.backward()
    assert abs(loss_p.item() - loss.item()) <= 1e-6 * max(1.0, loss.item())
    for (name, a), b in zip(padded.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


# the bench scripts, tiny, on the CPU --------------------------------------------------------------------
@pytest.mark.slow
def test_train_speed_reports_each_path(tmp_path, data_dir):
    out = tmp_path / "train_speed.json"
    text = run_script([BENCH / "train_speed.py", "--device", "cpu", "--steps", "2", "--warmup", "1", "--repeats", "2",
                       "--bf16", "--extras", "--json", out,
                       "--set", *TINY, "train_subset=24", "batch_size=16", "num_workers=0"], tmp_path)
    for label in ("(a) report loop", "(b) kit default", "(c) kit + bf16", "(d) kit + channels_last",
                  "(e) kit + bf16 + channels_last", "(b') hw3_utils.train", "projected"):
        assert label in text
    rec = json.loads(out.read_text())
    assert rec["device_type"] == "cpu" and rec["steps_per_epoch"] == 2 and rec["epochs"] == 50
    assert set(rec["results"]) == {"report", "kit", "kit_bf16", "kit_cl", "kit_cl_bf16", "train_epoch"}
    assert rec["failed"] == {}
    for row in rec["results"].values():
        assert all(positive(row[k]) for k in ("ms_median", "ms_min", "ms_max", "projected_s", "speedup_vs_report"))
        assert row["ms_min"] <= row["ms_median"] <= row["ms_max"]
        assert math.isfinite(row["final_loss"])
    assert rec["results"]["report"]["speedup_vs_report"] == 1.0


@pytest.mark.slow
def test_sample_speed_projects_ancestral_and_measures_ddim(tmp_path):
    out = tmp_path / "sample_speed.json"
    text = run_script([BENCH / "sample_speed.py", "--device", "cpu", "--num-images", "8", "--batch-sizes", "4", "8",
                       "--modes", "eager", "graph-cl", "--steps", "2", "--warmup", "1", "--repeats", "1",
                       "--ddim-steps", "2", "4", "--ddim-measure", "4", "--json", out, "--set", *TINY], tmp_path)
    assert "(projected)" in text and "measured end to end" in text
    rec = json.loads(out.read_text())
    assert rec["num_images"] == 8 and rec["timesteps"] == 1000
    rows = {(r["mode"], r["batch_size"]) for r in rec["ancestral"]}
    assert rows == {(m, b) for m in ("eager", "graph-cl") for b in (4, 8)} and rec["failed"] == {}
    for r in rec["ancestral"]:
        assert all(positive(r[k]) for k in ("ms_median", "projected_s", "images_per_s"))
        assert r["batches"] == 8 // r["batch_size"]
    assert {(r["mode"], r["steps"], r["measured"]) for r in rec["ddim"]} == {
        (m, s, s == 4) for m in ("eager", "graph-cl") for s in (2, 4)}
    assert all(positive(r["seconds"]) for r in rec["ddim"])


EVAL_SET = [*TINY, "train_subset=32", "epochs=1", "batch_size=16", "num_workers=0", "timesteps=10",
            "num_samples=8",
            "sample_batch_size=8", "fid_ref_count=8", "fid_batch_size=8"]


@pytest.mark.slow
def test_evaluate_writes_rows_and_resumes(tmp_path, data_dir):
    run = tmp_path / "run"
    args = [BENCH / "evaluate.py", "--profile", "full-smoke", "--device", "cpu", "--out", run, "--no-progress",
            "--grid", tmp_path / "grid.png", "--set", *EVAL_SET, "--variants"]
    text = run_script([*args, "ema", "ddim2", "floor"], tmp_path)
    rec = json.loads((run / "eval" / "eval.json").read_text())
    md = (run / "eval" / "eval.md").read_text()
    assert [r["variant"] for r in rec["rows"]] == ["ema", "ddim2", "floor"]
    assert rec["train"]["trained_now"] and rec["train"]["epochs"] == 1 and rec["train"]["steps"] == 2
    for r in rec["rows"]:
        assert positive(r["fid"]) and positive(r["fid_s"]), r
    ema, ddim, floor = rec["rows"]
    assert ema["steps"] == 10 and ema["method"] == "ddpm" and ema["target"] == 3.0 and "meets_target" in ema
    assert ddim["steps"] == 2 and ddim["method"] == "ddim"
    assert floor["method"] == "real" and floor["sample_s"] is None
    assert Path(ema["folder"]).name == "samples_step_00000002"  # where notebook 05 looks
    assert len(list(Path(ema["folder"]).glob("*.png"))) == 8 and (tmp_path / "grid.png").exists()
    for needle in ("device:", "torch", "date (UTC)", "profile: full-smoke", "float16", "| ema |", "| floor |"):
        assert needle in md, needle
    assert "FID" in text

    run_script([*args, "floor"], tmp_path)  # resumes: already trained, statistics cached
    rec = json.loads((run / "eval" / "eval.json").read_text())
    assert not rec["train"]["trained_now"] and rec["train"]["epochs"] == 1
    assert [r["variant"] for r in rec["rows"]] == ["floor"] and positive(rec["rows"][0]["fid"])


@pytest.mark.slow
def test_gpu_run_script_runs_its_check_stage_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "STAGES": "check", "PYTHON": sys.executable, "BUDGET_S": "200",
           "CHECK_ARGS": "--device cpu --checks graphed_model --set model_channels=8"}
    proc = subprocess.run(["bash", str(BENCH / "gpu_run.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUMMARY" in proc.stdout and "PASS" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["check.json", "log.txt"]
    assert "END check rc=0" in (out / "log.txt").read_text()
    rec = json.loads((out / "check.json").read_text())  # bench/gpu_check.py, run by the script
    assert rec["device_type"] == "cpu" and len(rec["rows"]) == 2 and all(r["ok"] for r in rec["rows"])


def test_fid_speed_prints_both_methods(tmp_path):
    out = run_script([BENCH / "fid_speed.py", "--dims", "64", "--repeats", "1", "--json", tmp_path / "f.json"],
                     tmp_path)
    rec = json.loads((tmp_path / "f.json").read_text())
    assert [r["case"] for r in rec["rows"]] == ["full rank", "rank-deficient"]
    for r in rec["rows"]:
        assert positive(r["pytorch_fid_s"]) and positive(r["eigh_s"]) and r["rel_diff"] < 1e-3
    assert "speed-up" in out and "pytorch-fid (sqrtm)" in out


QUALITY_SET = [*TINY, "train_subset=64", "epochs=1", "batch_size=32", "lr_warmup_steps=1", "num_samples=8",
               "sample_batch_size=8", "sample_steps=5", "fid_ref_count=8", "fid_batch_size=8", "log_every=1"]


@pytest.mark.slow
def test_cpu_quality_reports_times_fids_and_floor_and_fails_above_the_bound(tmp_path, data_dir):
    args = [BENCH / "cpu_quality.py", "--device", "cpu", "--json", tmp_path / "q.json", "--grids", tmp_path / "g",
            "--set", *QUALITY_SET]
    out = run_script([*args, "--out", tmp_path / "run", "--max-fid", "1000"], tmp_path)
    rec = json.loads((tmp_path / "q.json").read_text())
    assert rec["profile"] == "cpu" and rec["num_samples"] == 8 and rec["floor_images"] == 8
    for k in ("train_seconds", "sample_seconds", "fid_seconds", "fid_vs_mnist_train", "fid_vs_mnist_test",
              "fid_floor_test_vs_train"):
        assert positive(rec[k]), k
    assert "x0-hat clipped" in rec["sampler"] and "5 respaced steps" in rec["sampler"]
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["loss_curve_cpu.png", "process_grid_cpu.png",
                                                                  "samples_grid_cpu.png"]
    assert "floor" in out and "ok: FID vs MNIST train" in out
    # an untrained model (noise) scores hundreds: the bound catches it
    cmd = [sys.executable, BENCH / "cpu_quality.py", "--device", "cpu", "--max-fid", "1", "--set", *QUALITY_SET]
    proc = subprocess.run(list(map(str, cmd)), cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 1 and "FAIL: FID vs MNIST train" in proc.stdout


def test_cpu_speed_prints_every_path(tmp_path):
    out = run_script([BENCH / "cpu_speed.py", "--steps", "1", "--warmup", "0", "--repeats", "1", "--no-compile",
                      "--kit-compile", "--json", tmp_path / "s.json",
                      "--set", *TINY, "train_subset=256", "sample_batch_size=16"], tmp_path)
    rec = json.loads((tmp_path / "s.json").read_text())
    names = [r[0] for r in rec["rows"]]
    assert names[:5] == ["dataloader (PIL workers), NCHW", "tensor data, NCHW", "tensor data, channels_last",
                         "tensor data, channels_last, 1 thread", "tensor data, channels_last, bf16 autocast"]
    kit = [r[0].split("), ", 1)[1] for r in rec["rows"][5:10]]
    assert kit == ["NCHW, Adam default (per parameter)", "NCHW, Adam foreach", "NCHW, Adam fused",
                   "channels_last, Adam fused (the cpu profile)",
                   "channels_last, Adam fused, torch.compile (not the kit's)"]
    assert rec["rows"][5][3].startswith("(1.00x the first; opt.step() alone ")
    assert rec["rows"][9][3].endswith(" s to compile)") and "compile" not in rec["rows"][8][3]
    assert [r[0].rsplit(", ", 1)[1] for r in rec["rows"][-2:]] == ["NCHW", "channels_last"]
    assert all(float(r[1]) > 0 for r in rec["rows"]) and "s/epoch" in out


def test_grade_speed_prints_both_ways(tmp_path):
    scratch = tmp_path / "scratch"  # the bench's temporary files, which it must remove
    scratch.mkdir()
    out = run_script([BENCH / "grade_speed.py", "--count", "3", "--jobs", "1", "2", "--repeats", "1",
                      "--json", tmp_path / "g.json"], tmp_path, env={"TMPDIR": str(scratch)})
    assert not list(scratch.iterdir())
    rec = json.loads((tmp_path / "g.json").read_text())
    assert [b["jobs"] for b in rec["batches"]] == [1, 2] and rec["count"] == 3 and rec["cpu"]
    assert all(b["per_submission"] > 0 for b in rec["batches"])
    assert len(rec["fixed_costs_s"]) == 4 and "| jobs | batch s | s / submission |" in out


ABLATION_SET = [*TINY, "train_subset=64", "batch_size=16", "sample_steps=5", "sample_batch_size=8",
                "fid_batch_size=8", "lr_warmup_steps=1"]


@pytest.mark.slow
def test_cpu_ablation_trains_each_arm_for_the_budget_then_resumes(tmp_path, data_dir):
    out = tmp_path / "a.json"
    args = [BENCH / "cpu_ablation.py", "--budget", "0.5", "--samples", "8", "--ref-count", "8", "--json", out,
            "--arms", "base", "cosine", "minsnr5", "--seeds", "0", "--evals", "profile", "ddim3e0.5@raw",
            "--save", tmp_path / "saved", "--set", *ABLATION_SET]
    text = run_script(args, tmp_path)
    rows = json.loads(out.read_text())["rows"]
    saved = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert saved == sorted(f"{a}_s0_0.5s{x}" for a in ("base", "cosine", "minsnr5")
                           for x in (".pt", "_profile.png", "_ddim3e0.5@raw.png"))
    assert all(positive(r["mean_err_T"]) for r in rows)
    assert [(r["arm"], r["eval"]) for r in rows] == [(a, e) for a in ("base", "cosine", "minsnr5")
                                                     for e in ("profile", "ddim3e0.5@raw")]
    for r in rows:
        assert positive(r["fid"]) and positive(r["ms_per_step"]) and r["steps"] >= 1 and r["samples"] == 8
        assert r["overrides"]["model_channels"] == 8 and r["ema"] in (0.999, "raw")
    assert rows[2]["extras"] == {"schedule": "cosine"} and rows[4]["extras"] == {"min_snr": 5.0}
    assert "| base" in text and "FID per seed" in text
    run_script(args, tmp_path)  # every (arm, seed, evaluation) is in the file: nothing is trained again
    assert len(json.loads(out.read_text())["rows"]) == 6


def test_cpu_ablation_evaluates_samplers_on_a_trained_run(tmp_path, data_dir):
    from hw3_utils import get_config, train_model

    run = tmp_path / "run"
    cfg = get_config("cpu-smoke", verbose=False, model_channels=8, train_subset=32, epochs=1, batch_size=16)
    train_model(cfg, run, device="cpu", progress=False)
    out = tmp_path / "a.json"
    run_script([BENCH / "cpu_ablation.py", "--from-run", run, "--samples", "8", "--ref-count", "8", "--json", out,
                "--evals", "ddpm4", "ddim4", "ddpm4@raw"], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["arm"], r["eval"], r["steps"]) for r in rows] == [("run:run", "ddpm4", 2), ("run:run", "ddim4", 2),
                                                                 ("run:run", "ddpm4@raw", 2)]
    assert [r["ema"] for r in rows] == [cfg.ema_decay, cfg.ema_decay, "raw"]
    assert all(positive(r["fid"]) and positive(r["sample_s"]) for r in rows)


def test_inception_speed_folded_features_match_eager(tmp_path, data_dir):
    run_script([BENCH / "inception_speed.py", "--images", "4", "--batch-size", "2", "--ref-count", "8",
                "--variants", "eager", "folded-cl", "--json", tmp_path / "i.json"], tmp_path)
    eager, folded = json.loads((tmp_path / "i.json").read_text())["rows"]
    assert eager["max_rel_feature_diff"] == 0 and positive(eager["images_per_s"]) and positive(folded["images_per_s"])
    # the acceptance of issue 26: features within 1e-5 relative, FID within 0.01
    assert folded["max_rel_feature_diff"] < 1e-5 and abs(folded["fid_vs_train"] - eager["fid_vs_train"]) < 0.01


def test_omp_spin_times_each_wait_setting_in_its_own_process(tmp_path):
    out = run_script([BENCH / "omp_spin.py", "--settings", "passive", "kit", "--conditions", "alone", "busy",
                      "--steps", "1", "--repeats", "1", "--json", tmp_path / "o.json"], tmp_path)
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [(r["condition"], r["setting"]) for r in rows] == [("alone", "passive"), ("alone", "kit"),
                                                              ("busy", "passive"), ("busy", "kit")]
    # each child got its own setting, and with none given, the kit's own spin count
    assert [(r["OMP_WAIT_POLICY"], r["GOMP_SPINCOUNT"]) for r in rows[:2]] == [("PASSIVE", None), (None, "10000")]
    assert not any(r["torch_loaded_first"] for r in rows)  # so libgomp read the setting when torch loaded it
    assert all(positive(r[k]) for r in rows for k in ("train_ms", "preview_ms", "sample_ms"))
    assert "| busy      | kit" in out and "(by hw3_utils)" in out


def test_mean_slope_closed_forms():
    # eps-hat = x_t follows x_t's mean exactly (slope 1), a zero or constant prediction is blind to it (slope 0)
    sys.path.insert(0, str(BENCH))
    import cpu_ablation

    ddpm, x0 = DDPM(), torch.rand(256, 1, 28, 28) * 2 - 1
    assert cpu_ablation.mean_slope(lambda x, t: x, ddpm, x0) == pytest.approx(1.0, abs=1e-5)
    assert cpu_ablation.mean_slope(lambda x, t: torch.full_like(x, 0.3), ddpm, x0) == pytest.approx(0.0, abs=1e-5)
    assert cpu_ablation.mean_slope(lambda x, t: 0.5 * x, ddpm, x0) == pytest.approx(0.5, abs=1e-5)


def test_cpu_ablation_draw_b_suffix_samples_with_sigma_squared_beta():
    # ddpm<K>b is Algorithm 2 on K respaced steps with sigma_t^2 = beta_t: the same draws as the kit's sampler on
    # a DDPM built with variance="beta", and not the posterior's (whose last step adds no noise either way)
    sys.path.insert(0, str(BENCH))
    import cpu_ablation

    from hw3_utils import get_config

    cfg = get_config("cpu-smoke", verbose=False, timesteps=20, sample_steps=4)
    net = lambda x, t: 0.1 * x  # noqa: E731 (any eps-predictor will do: the test is about the sampler's variance)
    ddpm = DDPM.from_config(cfg)
    got = cpu_ablation.draw(net, ddpm, cfg, "ddpm4b", 6, 3)
    want = sample(net, DDPM(cfg.timesteps, cfg.beta_start, cfg.beta_end, "beta"), cfg, n=6, steps=4, batch_size=3,
                  generator=torch.Generator().manual_seed(10_000 + cfg.seed), progress=False)
    assert torch.equal(got, want)
    posterior = cpu_ablation.draw(net, ddpm, cfg, "ddpm4", 6, 3)
    assert (got - posterior).abs().max() > 1e-3
    assert ddpm.variance == "posterior"  # the run's own DDPM is left as it was


def test_mean_screen_tracks_each_setting_and_stops_early(tmp_path, data_dir):
    out = tmp_path / "s.json"
    text = run_script([BENCH / "mean_screen.py", "--sets", "groups=8,model_channels=8,train_subset=256",
                       "groups=1,model_channels=8,train_subset=256", "--seeds", "0", "--stop", "3",
                       "--track", "1", "3", "--json", out], tmp_path)
    record = json.loads(out.read_text())
    assert [(r["setting"].split(",")[0], r["step"]) for r in record["rows"]] == [
        ("groups=8", 1), ("groups=8", 3), ("groups=1", 1), ("groups=1", 3)]
    assert all(math.isfinite(r["slope"]) and positive(r["mean_err_T"]) for r in record["rows"])
    # stopped after 3 steps of a schedule that spans the profile's 5 epochs of 256 images (4 full batches each)
    assert [r["steps"] for r in record["runs"]] == [3, 3] and all(positive(r["train_s"]) for r in record["runs"])
    assert "| groups=1,model_channels=8,train_subset=256 | 0 | 3 |" in text


@pytest.mark.slow
def test_fid_sample_count_first_block_is_notebook_05s_fid_and_resumes(tmp_path, data_dir):
    from hw3_utils import draw_samples, get_config, load_model, make_sampler, train_model
    from hw3_utils.pipeline import fid_table, samples_folder

    run = tmp_path / "run"
    cfg = get_config("cpu-smoke", verbose=False, model_channels=8, train_subset=32, epochs=1, batch_size=16,
                     num_samples=8, sample_batch_size=4, fid_ref_count=8, fid_batch_size=8, sample_steps=4)
    train_model(cfg, run, device="cpu", progress=False)
    # notebook 05's samples and FID table (pipeline.run_all's calls)
    draw_samples(make_sampler(load_model(run, "ema", "cpu"), cfg, progress=False), cfg, samples_folder(run),
                 device="cpu", progress=False)
    table = fid_table(run, cfg, "cpu")
    args = [BENCH / "fid_sample_count.py", "--run", run, "--samples", "16", "--device", "cpu", "--no-progress",
            "--json", tmp_path / "c.json"]
    out = run_script(args, tmp_path)
    rec = json.loads((tmp_path / "c.json").read_text())
    assert rec["block"] == 8 and len(rec["model_fid_blocks"]) == 2 and not rec["cached"]
    # the first block is the notebook's 8 samples (same seeds and batches), so the same FID; the real row is its floor
    assert rec["model_fid_blocks"][0] == pytest.approx(table["fid_vs_mnist_train"], rel=1e-6)
    assert rec["real_fid_block"] == pytest.approx(table["fid_floor_test_vs_train"], rel=1e-6)
    assert all(positive(x) for x in (*rec["model_fid_blocks"], rec["model_fid_all"], rec["real_fid_all_test"]))
    assert "estimate" in out and "| this run (cpu-smoke)" in out
    run_script(args, tmp_path)  # the features are kept: no sampling or Inception again, the same numbers
    again = json.loads((tmp_path / "c.json").read_text())
    assert again["cached"] and again["model_fid_all"] == rec["model_fid_all"]


@pytest.mark.slow
def test_cpu_ablation_epochs_trains_exactly_the_arms_epochs(tmp_path, data_dir):
    out = tmp_path / "e.json"
    own_batch = [s for s in ABLATION_SET if not s.startswith("batch_size=")]  # each arm keeps its own batch size
    args = [BENCH / "cpu_ablation.py", "--epochs", "2", "--samples", "8", "--ref-count", "8", "--json", out,
            "--arms", "base", "b16", "--seeds", "0", "--evals", "ddpm5", "--set", *own_batch]
    text = run_script(args, tmp_path)
    rows = json.loads(out.read_text())["rows"]
    # 64 images: 2 epochs of 2 batches of 32 (the profile's batch), of 4 batches of 16 (b16's)
    assert [(r["arm"], r["steps"], r["budget_s"], r["fixed_epochs"]) for r in rows] == [("base", 4, None, 2),
                                                                                      ("b16", 8, None, 2)]
    assert all(r["epochs"] == 2 and positive(r["fid"]) for r in rows) and "| 2 epochs" in text
    run_script(args, tmp_path)  # resumes: nothing trained again
    assert len(json.loads(out.read_text())["rows"]) == 2
