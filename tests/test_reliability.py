"""Issue 4: interruption never loses work, and bad input gets a clear message."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from hw3_utils import CheckpointError, NonFiniteLossError, load_checkpoint, load_newest_checkpoint, train_model
from hw3_utils import train as tr
from hw3_utils.fid import FIDError, check_folder, count_complete, generate_samples

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "train_driver.py"


def run_driver(run_dir, tensor_data, mode="", kill_on=None, conditional=False):
    """Start the driver; with kill_on, SIGKILL it as soon as it prints that line. Returns its output."""
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(run_dir), str(int(tensor_data)), mode,
                             *(["cond"] if conditional else [])],
                            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if kill_on is not None and line.strip() == kill_on:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    out = "\n".join(lines)
    if kill_on is None:
        assert proc.returncode == 0, out
    else:
        assert proc.returncode == -signal.SIGKILL, f"driver was not killed at {kill_on!r}:\n{out}"
    return out


def final_state(run_dir):
    _, ckpt = load_newest_checkpoint(run_dir)
    return ckpt


def assert_bitwise_equal(a, b):
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    for key in ("model", "ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[k][name], sb[k][name]), f"optimizer {k}.{name} differs"
    assert a["history"] == b["history"]
    assert torch.equal(a["rng"]["train"], b["rng"]["train"])


@pytest.mark.slow
@pytest.mark.parametrize("tensor_data", [False, True], ids=["dataloader", "tensor-data"])
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path, data_dir, tensor_data):
    run_driver(tmp_path / "straight", tensor_data)
    # 64 images / batch 16 = 4 steps per epoch: step 6 is the middle of epoch 2
    out = run_driver(tmp_path / "killed", tensor_data, "slow-steps", kill_on="STEP 6")
    assert "DONE" not in out
    assert [p.name for p in tr.checkpoint_paths(tmp_path / "killed")] == ["step_00000004.pt"]
    out = run_driver(tmp_path / "killed", tensor_data)
    assert "resumed from" in out and "epoch 1/3" in out
    assert_bitwise_equal(final_state(tmp_path / "straight"), final_state(tmp_path / "killed"))


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint(tmp_path, data_dir):
    run_driver(tmp_path / "straight", False)
    run_driver(tmp_path / "killed", False, "slow-fsync", kill_on="FSYNC")
    ckpts = tmp_path / "killed" / "checkpoints"
    assert (ckpts / "step_00000008.pt.tmp").exists()  # the interrupted write
    assert not (ckpts / "step_00000008.pt").exists()  # never appears under its final name
    out = run_driver(tmp_path / "killed", False)
    assert "resumed from" in out and "step_00000004.pt" in out
    assert not list(ckpts.glob("*.tmp"))
    assert_bitwise_equal(final_state(tmp_path / "straight"), final_state(tmp_path / "killed"))


def test_truncated_checkpoint_names_file_and_resume_falls_back(tmp_path, data_dir):
    run = tmp_path / "run"
    train_model(tiny_config(epochs=2), run, progress=False)
    newest = tr.checkpoint_paths(run)[0]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{newest.name} is truncated or corrupt.*Delete it"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        path, ckpt = load_newest_checkpoint(run)
    assert path.name == "step_00000004.pt" and ckpt["epoch"] == 1
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        result = train_model(tiny_config(epochs=2), run, progress=False)
    assert len(result.history) == 2 and result.step == 8


def test_all_checkpoints_corrupt_is_an_error_not_a_silent_restart(tmp_path, data_dir):
    run = tmp_path / "run"
    train_model(tiny_config(epochs=1), run, progress=False)
    for p in tr.checkpoint_paths(run):
        p.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="none of the 1 checkpoints"):
        train_model(tiny_config(epochs=2), run, progress=False)


def test_non_finite_loss_stops_with_step_and_hint_keeping_checkpoint(tmp_path, data_dir, monkeypatch):
    run = tmp_path / "run"
    train_model(tiny_config(epochs=1, tensor_data=True), run, progress=False)
    real = tr.load_tensor

    def poisoned(*a, **k):
        x = real(*a, **k)
        x[:] = float("nan")
        return x

    monkeypatch.setattr(tr, "load_tensor", poisoned)
    with pytest.raises(NonFiniteLossError) as err:
        train_model(tiny_config(epochs=2, tensor_data=True), run, progress=False)
    msg = str(err.value)
    assert "loss became nan at step 5 (epoch 2, batch 1)" in msg
    assert "lower learning rate" in msg and "bf16" in msg and "last good checkpoint" in msg
    path, ckpt = load_newest_checkpoint(run)
    assert path.name == "step_00000004.pt" and ckpt["epoch"] == 1


def test_resume_with_a_different_config_lists_the_differences(tmp_path, data_dir):
    train_model(tiny_config(epochs=1), tmp_path / "run", progress=False)
    expected = r"(?s)different config:.*lr: checkpoint 0.0002, now 0.001.*new run folder"
    with pytest.raises(CheckpointError, match=expected):
        train_model(tiny_config(epochs=2, lr=1e-3), tmp_path / "run", progress=False)


def test_raising_epochs_continues_a_finished_run_on_the_longer_schedule(tmp_path, data_dir):
    """What notebook 04 tells a student who wants sharper digits: setup(epochs=10) after a finished run of 5."""
    schedule = dict(lr_warmup_steps=1, lr_decay="cosine", tensor_data=True)  # the cpu profile's kind of run
    first = train_model(tiny_config(epochs=1, **schedule), tmp_path / "run", progress=False)
    before = final_state(tmp_path / "run")
    # at its last step the 1-epoch schedule has decayed to 0; the 2-epoch one resumes part-way down its cosine
    assert tr.lr_at(tiny_config(epochs=1, **schedule), first.step, first.step) == 0.0
    cfg2 = tiny_config(epochs=2, **schedule)
    assert tr.lr_at(cfg2, first.step + 1, 2 * first.step) > 0.25 * cfg2.lr
    longer = train_model(cfg2, tmp_path / "run", progress=False)
    after = final_state(tmp_path / "run")
    assert len(longer.history) == 2 and longer.history[0] == first.history[0]
    assert after["epoch"] == 2 and after["step"] == 2 * before["step"]
    moved = [n for n, w in after["model"].items() if not torch.equal(w, before["model"][n])]
    assert len(moved) == len(after["model"]), "the continued epoch must train every weight (lr > 0)"


def fake_sampler(calls):
    def sampler(n, generator):
        calls.append(n)
        return torch.rand(n, 3, 28, 28, generator=generator) * 2 - 1
    return sampler


def test_sample_pngs_resume_without_redoing_finished_files(tmp_path):
    calls = []
    generate_samples(fake_sampler(calls), tmp_path / "whole", 10, 4, seed=1, progress=False)
    assert calls == [4, 4, 2]

    calls.clear()
    broken = fake_sampler(calls)

    def interrupted(n, generator):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return broken(n, generator)

    with pytest.raises(KeyboardInterrupt):
        generate_samples(interrupted, tmp_path / "resumed", 10, 4, seed=1, progress=False)
    assert count_complete(tmp_path / "resumed") == 8
    with pytest.raises(FIDError, match="holds 8 PNGs but 10 were expected"):
        check_folder(tmp_path / "resumed", expected=10)
    (tmp_path / "resumed" / "00008.png.tmp").write_bytes(b"half")  # a kill mid-write leaves this
    with pytest.raises(FIDError, match="half-written"):
        check_folder(tmp_path / "resumed")
    calls.clear()
    generate_samples(fake_sampler(calls), tmp_path / "resumed", 10, 4, seed=1, progress=False)
    assert calls == [2]  # only the missing batch
    for a, b in zip(sorted((tmp_path / "whole").iterdir()), sorted((tmp_path / "resumed").iterdir())):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert len(check_folder(tmp_path / "resumed", expected=10)) == 10


def test_draw_samples_takes_count_batches_and_seeds_from_the_config(tmp_path):
    from hw3_utils import draw_samples, get_config

    cfg = get_config("cpu-smoke", verbose=False, num_samples=6, sample_batch_size=3, seed=2)
    calls = []
    draw_samples(fake_sampler(calls), cfg, tmp_path / "run", progress=False)
    assert calls == [3, 3]
    same = tmp_path / "direct"
    generate_samples(fake_sampler([]), same, 6, 3, seed=2, progress=False)
    # a draw of 12 (fid_sample_count's) begins with the 6 a run draws (notebook 05's): same batches, same seeds
    draw_samples(fake_sampler([]), cfg, tmp_path / "more", 12, progress=False)
    files = [sorted(f.iterdir()) for f in (tmp_path / "run", same, tmp_path / "more")]
    assert [len(f) for f in files] == [6, 6, 12]
    for a, b, c in zip(*files):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    other = tmp_path / "seed3"
    draw_samples(fake_sampler([]), get_config("cpu-smoke", verbose=False, num_samples=6, sample_batch_size=3, seed=3),
                 other, progress=False)
    assert (other / "00000.png").read_bytes() != files[0][0].read_bytes()


def test_fid_refuses_a_corrupt_png(tmp_path):
    generate_samples(fake_sampler([]), tmp_path / "s", 4, 4, progress=False)
    (tmp_path / "s" / "00002.png").write_bytes((tmp_path / "s" / "00002.png").read_bytes()[:40])
    with pytest.raises(FIDError, match="00002.png is not a readable image"):
        check_folder(tmp_path / "s")


def test_checkpoint_write_failure_keeps_previous(tmp_path, data_dir, monkeypatch):
    run = tmp_path / "run"
    train_model(tiny_config(epochs=1), run, progress=False)

    def disk_full(obj, f, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tr.torch, "save", disk_full)
    with pytest.raises(OSError, match=r"(?s)could not write checkpoint.*previous checkpoints.*are kept"):
        train_model(tiny_config(epochs=2), run, progress=False)
    monkeypatch.undo()
    assert [p.name for p in tr.checkpoint_paths(run)] == ["step_00000004.pt"]
    assert not list((run / "checkpoints").glob("*.tmp"))
