import itertools
import json
import types

import pytest
import torch
from conftest import tiny_config

from hw3_utils import CheckpointError, build_model, load_model, load_newest_checkpoint, train_model
from hw3_utils.pipeline import save_previews
from hw3_utils.train import checkpoint_paths, make_optimizer


def params_equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_train_writes_checkpoints_and_history(tmp_path, data_dir, tiny_cfg):
    result = train_model(tiny_cfg, tmp_path / "run", progress=False)
    assert len(result.history) == 2 and result.step == 8
    assert all(v > 0 for v in result.history)
    names = [p.name for p in checkpoint_paths(tmp_path / "run")]
    assert names == ["step_00000008.pt", "step_00000004.pt"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_channels"] == 8
    assert not params_equal(result.model, result.ema)


@pytest.mark.slow
def test_on_epoch_sees_each_epochs_ema_and_changes_nothing(tmp_path, data_dir, tiny_cfg):
    """The hook behind notebook 04's live samples and the CLI's previews: once per epoch, after the checkpoint,
    with the EMA model; drawing samples there leaves the training run as it would be without it."""
    seen = []

    def on_epoch(epoch, ema):
        seen.append((epoch, ema, checkpoint_paths(tmp_path / "with")[0].name))
        save_previews(tmp_path / "with", tiny_cfg)(epoch, ema)

    with_hook = train_model(tiny_cfg, tmp_path / "with", progress=False, on_epoch=on_epoch)
    plain = train_model(tiny_cfg, tmp_path / "plain", progress=False)
    assert [(e, c) for e, _, c in seen] == [(1, "step_00000004.pt"), (2, "step_00000008.pt")]
    assert all(m is with_hook.ema for _, m, _ in seen)
    assert params_equal(with_hook.ema, plain.ema) and params_equal(with_hook.model, plain.model)
    assert with_hook.history == plain.history
    assert sorted(p.name for p in (tmp_path / "with" / "previews").iterdir()) == ["epoch_001.png", "epoch_002.png"]


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, data_dir, tiny_cfg):
    result = train_model(tiny_cfg, tmp_path / "run", progress=False)
    x, t = torch.randn(2, 3, 28, 28), torch.tensor([3, 700])
    for which, net in (("ema", result.ema), ("model", result.model)):
        loaded = load_model(tmp_path / "run", which)
        assert params_equal(loaded, net)
        assert torch.equal(loaded(x, t), net.eval()(x, t))
    path, ckpt = load_newest_checkpoint(tmp_path / "run")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 8 and ckpt["config"]["lr"] == tiny_cfg.lr
    assert {"model", "ema", "optimizer", "rng", "history"} <= set(ckpt)


def test_rerun_resumes_instead_of_starting_over(tmp_path, data_dir, capsys):
    train_model(tiny_config(epochs=1), tmp_path / "run", progress=False)
    result = train_model(tiny_config(epochs=2), tmp_path / "run", progress=False)
    assert "resumed from" in capsys.readouterr().out
    straight = train_model(tiny_config(epochs=2), tmp_path / "other", progress=False)
    assert result.history == straight.history
    assert params_equal(result.model, straight.model) and params_equal(result.ema, straight.ema)


def test_tensor_data_path_trains_on_cpu(tmp_path, data_dir):
    # tensor_data=True on the CPU: data held as one tensor, padded fixed-shape batches, TrainStep
    cfg = tiny_config(tensor_data=True, train_subset=40)  # 40 = 16 + 16 + 8: the last batch is padded
    result = train_model(cfg, tmp_path / "run", progress=False)
    assert len(result.history) == 2 and all(0 < v < 10 for v in result.history)
    assert result.step == 6


def test_load_model_checks_config(tmp_path, data_dir, tiny_cfg):
    train_model(tiny_cfg, tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match=r"model_channels: checkpoint 8, now 16"):
        load_model(tmp_path / "run", cfg=tiny_config(model_channels=16))
    with pytest.raises(CheckpointError, match="no checkpoints in .*missing.*train first"):
        load_model(tmp_path / "missing")  # a run folder that was never created
    with pytest.raises(CheckpointError, match="no checkpoint at .*step_1.pt.*train first"):
        load_model(tmp_path / "step_1.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoints in .*train first"):
        load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="'ema' or 'model'"):
        load_model(tmp_path / "run", which="best")


def test_build_model_from_stored_config(tmp_path, data_dir, tiny_cfg):
    train_model(tiny_cfg, tmp_path / "run", progress=False)
    _, ckpt = load_newest_checkpoint(tmp_path / "run")
    model = load_model(tmp_path / "run")
    assert model.config.to_dict() == ckpt["config"]
    assert type(model) is type(build_model(tiny_cfg))


def test_resume_keeps_this_runs_optimizer_flags(tmp_path, data_dir):
    # a checkpoint written by the GPU fast path (fused, capturable Adam) resumes on the CPU,
    # and the resumed run trains exactly like an uninterrupted CPU run
    run = tmp_path / "run"
    train_model(tiny_config(epochs=1), run, progress=False)
    path, ckpt = load_newest_checkpoint(run)
    for group in ckpt["optimizer"]["param_groups"]:
        group.update(fused=True, capturable=True)
    torch.save(ckpt, path)
    resumed = train_model(tiny_config(epochs=2), run, progress=False)
    straight = train_model(tiny_config(epochs=2), tmp_path / "straight", progress=False)
    assert params_equal(resumed.model, straight.model)


def test_training_uses_fused_adam_which_updates_as_the_default_adam_does(tmp_path, data_dir):
    cfg = tiny_config(lr=1e-3, adam_betas=(0.9, 0.99))
    train_model(cfg, tmp_path / "run", progress=False)
    _, ckpt = load_newest_checkpoint(tmp_path / "run")
    assert all(group["fused"] for group in ckpt["optimizer"]["param_groups"])
    # 20 steps from the same weights with the same gradients: fused and per-parameter Adam agree to rounding.
    # (Given gradients, not a backward pass: a bias whose gradient is only rounding noise, such as a conv's
    # before a GroupNorm that removes it, would random-walk by lr a step in either.) Each step moves a
    # weight by at most about lr = 1e-3, so 1e-5 is 1% of one step.
    torch.manual_seed(0)
    fused = build_model(cfg)
    plain = build_model(cfg)
    plain.load_state_dict(fused.state_dict())
    start = [p.detach().clone() for p in fused.parameters()]
    opt_f, opt_p = make_optimizer(fused, cfg), torch.optim.Adam(plain.parameters(), lr=cfg.lr, betas=cfg.adam_betas)
    assert opt_f.defaults["fused"] and not opt_p.defaults["fused"]
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        for p, q in zip(fused.parameters(), plain.parameters()):
            p.grad = torch.randn(p.shape, generator=g) * 10 ** torch.randint(-3, 2, (), generator=g)
            q.grad = p.grad.clone()
        opt_f.step()
        opt_p.step()
    assert max(float((p - s).abs().max()) for p, s in zip(fused.parameters(), start)) > 1e-2  # they did move
    for p, q in zip(fused.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


def test_a_run_trained_in_nchw_resumes_with_channels_last_weights(tmp_path, data_dir):
    # a cpu run trained before the profile kept its weights in channels_last resumes under it: Adam's moments
    # follow the weights' new layout (fused Adam would otherwise pair each weight with another's moments)
    cfg = dict(groups=1, lr=1e-3)  # one group: no bias whose gradient is only rounding noise, as in the cpu profile
    run = tmp_path / "run"
    train_model(tiny_config(epochs=1, channels_last=False, **cfg), run, progress=False)
    resumed = train_model(tiny_config(epochs=2, channels_last=True, **cfg), run, progress=False)
    straight = train_model(tiny_config(epochs=2, channels_last=False, **cfg), tmp_path / "straight", progress=False)
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert p.is_contiguous(memory_format=torch.channels_last) or p.ndim != 4
        # 8 steps of at most about lr = 1e-3 each; the layouts differ only in float rounding
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


def test_bf16_autocast_applies_on_the_plain_path_too(tmp_path, data_dir):
    fp32 = train_model(tiny_config(epochs=1), tmp_path / "a", progress=False)
    bf16 = train_model(tiny_config(epochs=1, amp_bf16=True), tmp_path / "b", progress=False)
    assert fp32.history != bf16.history
    assert abs(fp32.history[0] - bf16.history[0]) < 0.1 * fp32.history[0]


def test_loss_is_logged_every_log_every_steps_and_survives_resume(tmp_path, data_dir):
    seen = []
    cfg = tiny_config(epochs=1, log_every=2)  # 4 steps per epoch
    result = train_model(cfg, tmp_path / "run", progress=False, on_log=lambda log, hist: seen.append(list(log)))
    assert [s for s, _ in result.loss_log] == [2, 4]
    assert len(seen) == 2 and seen[-1] == result.loss_log
    # the two logged means of an epoch average to the epoch's mean loss
    assert sum(v for _, v in result.loss_log) / 2 == pytest.approx(result.history[0], rel=1e-5)
    _, ckpt = load_newest_checkpoint(tmp_path / "run")
    assert [tuple(e) for e in ckpt["loss_log"]] == result.loss_log
    resumed = train_model(tiny_config(epochs=2, log_every=2), tmp_path / "run", progress=False)
    assert [s for s, _ in resumed.loss_log] == [2, 4, 6, 8] and resumed.loss_log[:2] == result.loss_log


def test_a_checkpoint_without_a_step_log_still_resumes(tmp_path, data_dir):
    run = tmp_path / "run"
    train_model(tiny_config(epochs=1), run, progress=False)
    path, ckpt = load_newest_checkpoint(run)
    del ckpt["loss_log"]  # as written before the step log existed
    torch.save(ckpt, path)
    result = train_model(tiny_config(epochs=2), run, progress=False)
    assert [s for s, _ in result.loss_log] == [5, 6, 7, 8] and len(result.history) == 2


def test_training_seconds_add_up_across_sessions_in_the_checkpoint(tmp_path, data_dir, monkeypatch):
    # a clock that moves 10 s at every reading: training reads it before the first epoch and after each one
    clock = itertools.count(0.0, 10.0)
    monkeypatch.setattr("hw3_utils.train.time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    run = tmp_path / "run"
    first = train_model(tiny_config(epochs=1), run, progress=False)
    assert first.total_seconds == 10.0 and load_newest_checkpoint(run)[1]["seconds"] == 10.0
    resumed = train_model(tiny_config(epochs=2), run, progress=False)
    assert resumed.total_seconds == 20.0 and load_newest_checkpoint(run)[1]["seconds"] == 20.0
    done = train_model(tiny_config(epochs=2), run, progress=False)  # nothing left: this session trained 0 s
    assert done.seconds == 0 and done.total_seconds == 20.0
    path, ckpt = load_newest_checkpoint(run)
    del ckpt["seconds"]  # as written before the checkpoint kept the time
    torch.save(ckpt, path)
    assert train_model(tiny_config(epochs=3), run, progress=False).total_seconds == 10.0  # its own epoch only


def test_newest_checkpoint_reads_the_header_not_the_tensors(tmp_path, data_dir, monkeypatch):
    from hw3_utils import checkpoint_info, newest_checkpoint_info
    from hw3_utils import train as tr
    from hw3_utils.pipeline import samples_folder

    run = tmp_path / "run"
    train_model(tiny_config(epochs=1), run, progress=False)
    calls, real = [], torch.load
    monkeypatch.setattr(tr.torch, "load", lambda *a, **k: calls.append(k.get("mmap", False)) or real(*a, **k))
    path, info = newest_checkpoint_info(run)
    assert info["epoch"] == 1 and info["step"] == 4 and "model" not in info
    assert checkpoint_info(path)["config"]["model_channels"] == 8
    assert samples_folder(run).name == "samples_step_00000004"
    assert calls == [True, True, True]  # mapped, never read whole
    load_model(run)
    assert calls[3:] == [False]  # loading the weights reads the file once


def test_learning_rate_schedule_closed_form():
    from hw3_utils.train import lr_at

    cfg = tiny_config(lr=1e-3, lr_warmup_steps=10, lr_decay="cosine")
    assert lr_at(cfg, 1, 110) == pytest.approx(1e-4) and lr_at(cfg, 10, 110) == pytest.approx(1e-3)
    assert lr_at(cfg, 60, 110) == pytest.approx(5e-4)  # half way through the cosine
    assert lr_at(cfg, 110, 110) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(tiny_config(lr=1e-3), 57, 110) == 1e-3  # the report's constant rate


class _Stop(Exception):
    pass


def test_scheduled_run_resumes_on_the_same_schedule(tmp_path, data_dir):
    # the learning rate is a pure function of the step: a run stopped after epoch 1 and resumed ends
    # with the same weights as one that never stopped
    def cfg():
        return tiny_config(lr=1e-3, lr_warmup_steps=3, lr_decay="cosine", epochs=2, tensor_data=True)

    straight = train_model(cfg(), tmp_path / "a", progress=False)

    def stop(epoch, history):
        if epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train_model(cfg(), tmp_path / "b", progress=False, callback=stop)
    resumed = train_model(cfg(), tmp_path / "b", progress=False)
    assert resumed.history == straight.history
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_ema_update_follows_its_warm_up_then_the_decay(tiny_cfg):
    from hw3_utils.train import ema_update

    model, ema = build_model(tiny_cfg), build_model(tiny_cfg).requires_grad_(False)
    with torch.no_grad():
        for p, e in zip(model.parameters(), ema.parameters()):
            p.fill_(1.0)
            e.zero_()
    ema_update(ema, model, step=1, decay=0.999)  # warm-up: d = (1 + 1) / (10 + 1)
    assert all(torch.allclose(e, torch.full_like(e, 1 - 2 / 11)) for e in ema.parameters())
    ema_update(ema, model, step=100_000, decay=0.999)  # past the warm-up: d = decay
    want = 0.999 * (1 - 2 / 11) + 0.001
    assert all(torch.allclose(e, torch.full_like(e, want)) for e in ema.parameters())


def test_tensor_batches_pad_the_short_last_batch_with_zero_weights():
    from hw3_utils.data import epoch_permutation
    from hw3_utils.train import steps_per_epoch, tensor_batches

    cfg = tiny_config(batch_size=4)
    data = torch.arange(10.0).view(10, 1, 1, 1)  # 10 = 4 + 4 + 2
    labels = torch.arange(10) * 7  # each image's label, to follow it through the shuffle
    got = list(tensor_batches(data, cfg, epoch=3, labels=labels))
    assert len(got) == steps_per_epoch(10, cfg) == 3
    assert all(x.shape == (4, 1, 1, 1) and y.shape == w.shape == (4,) for x, y, w in got)
    assert all(float(w.sum()) == pytest.approx(1.0) for _, _, w in got)
    assert got[-1][2].tolist() == [0.5, 0.5, 0.0, 0.0]
    real = torch.cat([x[w > 0] for x, _, w in got]).flatten()
    assert torch.equal(real, data[epoch_permutation(10, cfg.seed, 3)].flatten())  # each image once, in order
    assert all(torch.equal(y, x.flatten().long() * 7) for x, y, _ in got)  # the labels travel with their images
    assert all(y is None for _, y, _ in tensor_batches(data, cfg, epoch=3))


def test_train_epoch_driven_step_by_step_trains_as_train_model(data_dir):
    """How bench/cpu_ablation.py trains: new_state, tensor_batches, train_epoch with an on_step hook and an lr
    schedule set on the state; the same weights, EMA and losses as train_model on the same config."""
    from hw3_utils.cuda_graphs import TrainStep
    from hw3_utils.diffusion import DDPM
    from hw3_utils.train import new_state, steps_per_epoch, tensor_batches, train_epoch, training_data

    cfg = tiny_config(tensor_data=True, train_subset=40, lr=1e-3, lr_warmup_steps=2, lr_decay="cosine")
    straight = train_model(cfg, None, device="cpu", progress=False)
    state = new_state(cfg, "cpu")
    _, data, _ = training_data(cfg, "cpu")
    n = steps_per_epoch(len(data), cfg)
    state.total_steps = cfg.epochs * n
    step_fn = TrainStep(state.model, DDPM.from_config(cfg), state.optimizer)
    seen = []
    while state.epoch < cfg.epochs:
        losses = train_epoch(state, cfg, step_fn, tensor_batches(data, cfg, state.epoch), n, progress=False,
                             on_step=lambda s: seen.append(s.step))
        state.history.append(float(losses.mean()))
        state.epoch += 1
    assert seen == list(range(1, 7))  # 40 images in batches of 16: 3 steps an epoch
    assert state.history == straight.history and state.loss_log == straight.loss_log
    assert params_equal(state.model, straight.model) and params_equal(state.ema, straight.ema)
