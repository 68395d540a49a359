"""Classifier-free guidance in the kit's sampler (issue 41): eq. 6 of Ho & Salimans as a wrapper of the model
contract, every sampler guided, labels that follow their images through the batches, and notebook 06's calls."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import tiny_config

from hw3_utils import DDPM, Config, GraphedModel, build_model, sample
from hw3_utils.sampling import guided

NULL = 10
SHAPE = (1, 4, 4)
COND = Config(in_channels=1, num_classes=10)  # the report's sampler, conditioned


def _stub(x, t, y=None):
    """A conditional noise predictor with a closed form in x_t, t and the label (None: the null label)."""
    y = torch.full((x.shape[0],), NULL) if y is None else y
    lab = y.to(x.dtype).view(-1, 1, 1, 1)
    return 0.3 * x * (1 + 0.05 * lab) + 1e-3 * t.to(x.dtype).view(-1, 1, 1, 1) - 0.02 * lab


def _eq6(y, w):
    """eps-tilde = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null), written out as a plain model(x_t, t)."""
    return lambda x, t: (1 + w) * _stub(x, t, y) - w * _stub(x, t, torch.full_like(y, NULL))


@pytest.mark.parametrize("w", [0.0, 0.5, 4.0])
def test_the_guided_model_is_eq_6_of_ho_and_salimans(w):
    x, t, y = torch.randn(3, *SHAPE), torch.tensor([0, 400, 999]), torch.tensor([0, 7, 9])
    calls = []

    def counted(x, t, y):
        calls.append(y.clone())
        return _stub(x, t, y)

    got = guided(counted, y, w, NULL)(x, t)
    assert torch.allclose(got, _eq6(y, w)(x, t), rtol=1e-6, atol=1e-6)
    # w = 0 is the conditional model itself: one call, with the labels asked for
    assert (len(calls), torch.equal(calls[0], y)) == ((1, True) if w == 0 else (2, True))
    if w:
        assert torch.equal(calls[1], torch.full_like(y, NULL))


@pytest.mark.parametrize("method, steps, clip", [("ddpm", None, False), ("ddpm", 10, True), ("ddim", 10, False),
                                                 ("ddim", 10, True)], ids=["ddpm-all-T", "ddpm-respaced-clipped",
                                                                           "ddim", "ddim-clipped"])
def test_every_sampler_is_guided_as_the_model_of_eq_6_would_sample(method, steps, clip):
    d, y, w = DDPM(50 if steps is None else 1000), torch.tensor([1, 4, 8]), 2.0
    kw = dict(shape=SHAPE, method=method, steps=steps, clip=clip, eta=0.5, progress=False)
    got = sample(_stub, d, COND, n=3, labels=y, guidance=w, generator=torch.Generator().manual_seed(5), **kw)
    want = sample(_eq6(y, w), d, n=3, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.allclose(got, want, atol=1e-5)
    plain = sample(_stub, d, COND, n=3, labels=y, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.allclose(plain, sample(lambda x, t: _stub(x, t, y), d, n=3,
                                        generator=torch.Generator().manual_seed(5), **kw), atol=1e-6)
    assert (got - plain).abs().max() > 1e-3  # guidance moves the samples


def test_labels_follow_their_images_across_batches():
    d, y = DDPM(20), torch.tensor([0, 3, 6, 9])
    kw = dict(shape=SHAPE, method="ddim", eta=1.0, guidance=1.0, progress=False)
    whole = sample(_stub, d, COND, n=4, labels=y, batch_size=2, generator=torch.Generator().manual_seed(3), **kw)
    g = torch.Generator().manual_seed(3)
    parts = [sample(_stub, d, COND, n=2, labels=y[i:i + 2], generator=g, **kw) for i in (0, 2)]
    assert torch.equal(whole, torch.cat(parts))
    one = sample(_stub, d, COND, n=4, labels=3, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(one, sample(_stub, d, COND, n=4, labels=torch.full((4,), 3),
                                   generator=torch.Generator().manual_seed(3), **kw))


@pytest.mark.parametrize("cfg, kw, match", [
    (Config(in_channels=1), dict(labels=3), r"labels need a class-conditional model.*num_classes=0"),
    (COND, dict(guidance=2.0), r"guidance=2.0 needs labels"),
    (COND, dict(labels=[1, 2]), r"labels must be one digit or 3 of them"),
    (COND, dict(labels=[1, 2, 11]), r"integers in \[0, 10\]"),
    (COND, dict(labels=[1.0, 2.0, 3.0]), r"labels must be one digit or 3"),
    (COND, dict(labels=1, guidance=-1.0), r"guidance must be a number >= 0"),
])
def test_a_bad_guided_call_says_what_is_wrong(cfg, kw, match):
    with pytest.raises(ValueError, match=match):
        sample(_stub, DDPM(10), cfg, n=3, shape=SHAPE, progress=False, **kw)


def test_a_kit_released_without_notebook_06_says_so_where_a_conditional_profile_needs_it(monkeypatch, data_dir):
    from hw3_utils import train_model
    from hw3_utils.config import ConfigError

    monkeypatch.setitem(sys.modules, "hw3_utils.guidance", None)  # as `make release WITHOUT=06` leaves the kit
    missing = r"released without notebook 06 \(the class-conditional extension\).*use the cpu or full profile"
    cfg = tiny_config(num_classes=10, epochs=1)
    with pytest.raises(ConfigError, match=missing):  # the UNet's label embedding
        build_model(cfg)(torch.zeros(1, 3, 28, 28), torch.tensor([5]), torch.tensor([3]))
    with pytest.raises(ConfigError, match=missing):  # the training step's label dropout
        train_model(cfg, progress=False)
    with pytest.raises(ConfigError, match=missing):  # the guided prediction of every sampler
        sample(_stub, DDPM(10), COND, n=2, shape=SHAPE, labels=3, guidance=1.0, progress=False)


@pytest.mark.slow
def test_a_conditional_unet_samples_guided_and_its_graphed_form_is_the_same_model():
    cfg = tiny_config(num_classes=10, timesteps=10)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.label_emb.weight.normal_()
        x, t, y = torch.randn(2, 3, 28, 28), torch.tensor([1, 9]), torch.tensor([2, NULL])
        assert torch.equal(GraphedModel(model)(x, t, y), model(x, t, y))
    d = DDPM.from_config(cfg)
    draw = lambda w: sample(model, d, cfg, n=4, labels=[0, 1, 2, 3], guidance=w, progress=False,  # noqa: E731
                            generator=torch.Generator().manual_seed(0))
    a, b = draw(0.0), draw(3.0)
    assert a.shape == (4, 3, 28, 28) and torch.isfinite(b).all() and not torch.equal(a, b)


# notebook 06's calls (hw3_utils/conditional.py) -------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """The cpu-cond-smoke profile's code path at test sizes, trained for one epoch in its own run folder."""
    from hw3_utils import get_config
    from hw3_utils.conditional import train_conditional

    cfg = get_config("cpu-cond-smoke", verbose=False, train_subset=64, epochs=1, sample_steps=5,
                     num_samples=20, sample_batch_size=8, fid_ref_count=20, fid_batch_size=20)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HW3_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        return cfg, train_conditional(cfg, device="cpu", progress=False)


def test_train_conditional_refuses_an_unconditional_profile():
    from hw3_utils import get_config
    from hw3_utils.conditional import train_conditional
    from hw3_utils.config import ConfigError

    with pytest.raises(ConfigError, match="unconditional.*'cpu-cond-smoke'"):
        train_conditional(get_config("cpu-smoke", verbose=False))


@pytest.mark.slow
def test_grids_ask_for_their_digits_with_the_same_noise_at_every_weight(trained):
    from hw3_utils.conditional import digit_grid, draw_guided, guided_samples

    cfg, result = trained
    assert result.run_dir.name == "cpu-cond-smoke" and result.model.label_emb is not None
    seven = guided_samples(result.ema, cfg, digit=7, w=2.0, n=3)
    assert seven.shape == (3, 1, 28, 28) and seven.abs().max() <= 1
    assert torch.equal(seven, draw_guided(result.ema, cfg, [7, 7, 7], 2.0))
    grid = digit_grid(result.ema, cfg, w=2.0, per_digit=2)
    assert grid.shape == (20, 1, 28, 28)
    # batch by batch from seeded generators: the same images whatever else is drawn, so w alone changes them
    labels = torch.arange(10).repeat_interleave(2)
    assert torch.equal(grid, draw_guided(result.ema, cfg, labels, 2.0))
    assert not torch.equal(grid, draw_guided(result.ema, cfg, labels, 0.0))


@pytest.mark.slow
def test_the_sweep_scores_each_weight(trained, tmp_path_factory):
    from hw3_utils import digits
    from hw3_utils.conditional import guidance_sweep, plot_sweep

    cfg, result = trained
    classifier = digits.load_classifier(2000, cache_dir=tmp_path_factory.mktemp("digits_weights"))
    rows = guidance_sweep(result.ema, cfg, weights=(0.0, 2.0), classifier=classifier, progress=False)
    assert [r["w"] for r in rows] == [0.0, 2.0]
    for r in rows:
        assert 0 <= r["digit_accuracy"] <= 1 and r["classifier_fid"] >= 0 and r["fid"] >= 0
    again = guidance_sweep(result.ema, cfg, weights=(2.0,), classifier=classifier, inception=False, progress=False)
    assert again == [{k: v for k, v in rows[1].items() if k != "fid"}]  # the same noise and labels at each w
    fig = plot_sweep(rows)
    assert fig.axes[0].get_ylabel() == "requested-digit accuracy (%)"


def test_by_digit_sorts_a_sweeps_images_into_one_row_per_digit():
    from hw3_utils.conditional import by_digit, sweep_labels

    labels = sweep_labels(25)
    assert labels.tolist() == [k % 10 for k in range(25)]
    images = torch.arange(25.0).view(25, 1, 1, 1).expand(25, 1, 28, 28)  # image k is filled with k
    grid = by_digit(images, per_digit=2)
    assert grid[:, 0, 0, 0].tolist() == [float(k) for d in range(10) for k in (d, d + 10)]
    assert torch.equal(labels[grid[:, 0, 0, 0].long()], torch.arange(10).repeat_interleave(2))  # row d asked for d
    with pytest.raises(ValueError, match="hold 2 of each digit"):
        by_digit(images, per_digit=3)
