"""The class-conditional model (issue 41): the UNet's label embedding, label dropout in training on both data paths,
its profiles and run folders, checkpoints that refuse the other kind of model, and a resume that stays bit-exact."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from test_reliability import assert_bitwise_equal, final_state, run_driver

from hw3_utils import CheckpointError, build_model, get_config, load_model, run_dir, train_model
from hw3_utils import train as tr
from hw3_utils.guidance import drop_labels
from hw3_utils.unet import count_parameters, sinusoidal_embedding

NULL = 10


def cond_config(**overrides):
    return tiny_config(**{"num_classes": 10, **overrides})


def test_the_unconditional_model_is_the_reports_and_the_conditional_one_only_adds_the_label_table():
    plain, cond = build_model(tiny_config()), build_model(cond_config())
    assert plain.label_emb is None and not any("label" in k for k in plain.state_dict())
    extra = {k: v for k, v in cond.state_dict().items() if k not in plain.state_dict()}
    assert list(extra) == ["label_emb.weight"] and extra["label_emb.weight"].shape == (NULL + 1, cond.time_emb_dim)
    # the same initial draws for every other weight: a conditional run starts where the unconditional one does
    assert all(torch.equal(v, cond.state_dict()[k]) for k, v in plain.state_dict().items())
    assert count_parameters(cond) - count_parameters(plain) == (NULL + 1) * cond.time_emb_dim
    x, t = torch.randn(3, 3, 28, 28), torch.tensor([0, 500, 999])
    with torch.no_grad():  # the table starts at zero: the same prediction whatever the label
        assert torch.equal(cond(x, t, torch.tensor([1, 7, NULL])), plain(x, t))


def test_the_label_moves_the_prediction_and_no_label_is_the_null_label():
    model = build_model(cond_config()).eval()
    with torch.no_grad():
        model.label_emb.weight.normal_()
        x, t = torch.randn(2, 3, 28, 28), torch.tensor([10, 900])
        a, b = model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([8, 8]))
        assert (a - b).abs().max() > 1e-3
        assert torch.equal(model(x, t), model(x, t, torch.full((2,), NULL)))
        temb = model.time_mlp(sinusoidal_embedding(t, model.time_emb_dim))
        assert torch.equal(model.embedding(t, torch.tensor([3, NULL])),
                           temb + model.label_emb.weight[torch.tensor([3, NULL])])


def test_an_unconditional_unet_refuses_labels():
    with pytest.raises(ValueError, match=r"unconditional \(num_classes=0\).*conditional profile"):
        build_model(tiny_config())(torch.randn(2, 3, 28, 28), torch.tensor([1, 2]), torch.tensor([1, 2]))


@pytest.mark.parametrize("y, match", [
    (torch.tensor([1, 11]), r"labels must lie in \[0, 10\]"),
    (torch.tensor([-1, 0]), r"labels must lie in \[0, 10\]"),
    (torch.tensor([1.0, 2.0]), r"labels y of shape \(2,\), one integer per image"),
    (torch.tensor([1, 2, 3]), r"labels y of shape \(2,\)"),
])
def test_a_conditional_unet_names_what_is_wrong_with_its_labels(y, match):
    with pytest.raises(ValueError, match=match):
        build_model(cond_config())(torch.randn(2, 3, 28, 28), torch.tensor([1, 2]), y)


def test_label_dropout_replaces_the_share_p_by_the_null_label():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, NULL, (200_000,), generator=g)
    for p in (0.0, 0.1, 0.5):
        out = drop_labels(y, p, NULL, generator=torch.Generator().manual_seed(1))
        dropped = out == NULL
        assert out.dtype == torch.long and torch.equal(out[~dropped], y[~dropped])
        assert abs(float(dropped.double().mean()) - p) < 0.005  # 4.5 standard errors at 200,000 draws
    u = torch.tensor([0.05, 0.5, 0.95])
    assert drop_labels(torch.tensor([4, 5, 6]), 0.5, NULL, u=u).tolist() == [NULL, 5, 6]


def test_both_data_paths_carry_each_image_with_its_label(data_dir):
    from hw3_utils.data import load_mnist

    cfg = cond_config(train_subset=40)
    dataset, data, labels = tr.training_data(cfg, "cpu")
    targets = load_mnist().targets[:40]
    assert torch.equal(labels, targets)
    fast = list(tr.tensor_batches(data, cfg, epoch=1, labels=labels))
    plain = list(tr.loader_batches(dataset, cfg, epoch=1, device="cpu"))
    assert len(fast) == len(plain) == tr.steps_per_epoch(40, cfg)
    for (xf, yf, w), (xp, yp, _) in zip(fast, plain):
        real = int((w > 0).sum())
        assert torch.equal(xf[:real], xp) and torch.equal(yf[:real], yp)


def test_a_conditional_step_trains_on_the_dropped_labels_drawn_after_t_and_eps():
    cfg = cond_config(label_dropout=0.5)
    state = tr.new_state(cfg, "cpu")
    seen = []
    step_fn = lambda x0, t, noise, weights, y: seen.append((t, noise, y)) or torch.zeros(())  # noqa: E731
    x0, y = torch.randn(16, 3, 28, 28), torch.arange(16) % 10
    mirror = torch.Generator().manual_seed(cfg.seed)
    tr.train_step(state, cfg, step_fn, x0, None, y)
    t, noise, labels = seen[0]
    assert torch.equal(t, torch.randint(0, cfg.timesteps, (16,), generator=mirror))
    assert torch.equal(noise, torch.randn(x0.shape, generator=mirror))
    assert torch.equal(labels, drop_labels(y, 0.5, NULL, u=torch.rand(16, generator=mirror)))
    assert 0 < int((labels == NULL).sum()) < 16 and torch.equal(state.gen.get_state(), mirror.get_state())
    with pytest.raises(ValueError, match="conditional.*needs its labels"):
        tr.train_step(state, cfg, step_fn, x0, None, None)


def test_an_unconditional_step_draws_only_t_and_eps_and_passes_no_labels():
    cfg = tiny_config()
    state, seen = tr.new_state(cfg, "cpu"), []
    step_fn = lambda x0, t, noise, weights, y: seen.append(y) or torch.zeros(())  # noqa: E731
    tr.train_step(state, cfg, step_fn, torch.randn(4, 3, 28, 28), None, torch.arange(4))
    mirror = torch.Generator().manual_seed(cfg.seed)
    torch.randint(0, cfg.timesteps, (4,), generator=mirror)
    torch.randn(4, 3, 28, 28, generator=mirror)
    assert seen == [None] and torch.equal(state.gen.get_state(), mirror.get_state())


def test_conditional_profiles_train_in_their_own_run_folders():
    for base in ("cpu", "full", "cpu-smoke", "full-smoke"):
        cond = base.replace("-smoke", "") + "-cond" + ("-smoke" if base.endswith("-smoke") else "")
        plain_cfg, cond_cfg = get_config(base, verbose=False), get_config(cond, verbose=False)
        assert run_dir(cfg=cond_cfg).name == cond and run_dir(cfg=cond_cfg) != run_dir(cfg=plain_cfg)


def test_a_checkpoint_refuses_the_other_kind_of_model(tmp_path, data_dir):
    plain_run, cond_run = tmp_path / "plain", tmp_path / "cond"
    train_model(tiny_config(epochs=1), plain_run, progress=False)
    result = train_model(cond_config(epochs=1, label_dropout=0.3), cond_run, progress=False)
    assert float(result.model.label_emb.weight.detach().abs().sum()) > 0  # the labels reached the table
    with pytest.raises(CheckpointError, match=r"(?s)num_classes: checkpoint 0, now 10.*an unconditional model.*"
                                              r"class-conditional one.*run folder of its own profile"):
        load_model(plain_run, cfg=cond_config())
    with pytest.raises(CheckpointError, match=r"num_classes: checkpoint 10, now 0"):
        load_model(cond_run, cfg=tiny_config())
    with pytest.raises(CheckpointError, match="num_classes"):  # a resume of the other kind
        train_model(cond_config(epochs=2), plain_run, progress=False)
    assert load_model(cond_run, cfg=cond_config()).label_emb is not None
    ckpt = torch.load(tr.checkpoint_paths(cond_run)[0], weights_only=True)
    ckpt["config"]["num_classes"] = 0  # weights of one kind under the config of the other
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="do not fit a model of its config"):
        load_model(tmp_path / "edited.pt")


@pytest.mark.slow
@pytest.mark.parametrize("tensor_data", [False, True], ids=["dataloader", "tensor-data"])
def test_sigkill_mid_epoch_then_resume_of_a_conditional_run_is_bitwise_identical(tmp_path, data_dir, tensor_data):
    run_driver(tmp_path / "straight", tensor_data, conditional=True)
    out = run_driver(tmp_path / "killed", tensor_data, "slow-steps", kill_on="STEP 6", conditional=True)
    assert "DONE" not in out
    out = run_driver(tmp_path / "killed", tensor_data, conditional=True)
    assert "resumed from" in out and "epoch 1/3" in out
    straight, killed = final_state(tmp_path / "straight"), final_state(tmp_path / "killed")
    assert_bitwise_equal(straight, killed)
    assert straight["config"]["num_classes"] == 10 and "label_emb.weight" in straight["model"]
