"""hw3_utils.notebook (setup, LiveLossPlot, require_checkpoint) and the two sliders the notebooks show.

The slider tests run twice: in this process (the Python side of the widgets) and in a real
Jupyter kernel driven the way a front end drives it: the test sends the slider's comm an
`update` message, as JupyterLab does when the slider is dragged, and reads the Image and Label
updates the kernel sends back on IOPub.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from hw3_utils import (
    DDPM,
    CheckpointError,
    build_model,
    denoising_slider,
    get_config,
    load_model,
    noising_slider,
)
from hw3_utils.notebook import LiveLossPlot, in_colab, require_checkpoint, setup
from hw3_utils.viz import png_bytes

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# setup ---------------------------------------------------------------------------------------
def test_setup_returns_config_and_device_and_seeds(capsys, monkeypatch):
    monkeypatch.delenv("HW3_PROFILE", raising=False)
    cfg, device = setup("full-smoke", seed=3)
    got = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(got, torch.rand(4))
    assert cfg.profile == "full-smoke" and cfg.model_channels == 16
    assert isinstance(device, torch.device) and device.type in ("cpu", "cuda")
    out = capsys.readouterr().out
    assert "profile 'full-smoke'" in out and f"device {device}" in out
    assert "model_channels=16 (full: 64)" in out  # says how full-smoke differs from the report


def test_setup_reads_profile_from_env_and_takes_overrides(monkeypatch):
    monkeypatch.setenv("HW3_PROFILE", "full-smoke")
    cfg, _ = setup(epochs=2)
    assert cfg.profile == "full-smoke" and cfg.epochs == 2
    cfg, _ = setup("full")
    assert cfg.profile == "full" and cfg.model_channels == 64


def test_setup_full_profile_prints_no_difference(capsys):
    setup("full")
    assert "differs from the report" not in capsys.readouterr().out


def test_setup_rejects_unknown_profile():
    with pytest.raises(ValueError, match="valid profiles"):
        setup("tiny")


def test_setup_on_colab_enables_the_widget_manager(monkeypatch):
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(1))
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.output = output
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert in_colab()
    setup("full-smoke")
    assert calls == [1]


def test_setup_off_colab_does_not_touch_google(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not in_colab()
    setup("full-smoke")
    assert "google.colab" not in sys.modules


# LiveLossPlot --------------------------------------------------------------------------------
def test_live_loss_plot_outside_ipython_closes_its_figures():
    plt.close("all")
    live = LiveLossPlot()
    live(1, [1.2])
    live(2, [1.2, 0.4])
    assert live.calls == 2
    assert plt.get_fignums() == []


def test_live_loss_plot_updates_one_display(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    live = LiveLossPlot()
    for epoch, history in enumerate([[1.0], [1.0, 0.5], [1.0, 0.5, 0.2]], 1):
        live(epoch, history)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    fig = shown[-1][1]
    assert list(fig.axes[0].lines[0].get_ydata()) == [1.0, 0.5, 0.2]
    assert "epoch 3" in fig.axes[0].get_title()


# require_checkpoint --------------------------------------------------------------------------
def test_require_checkpoint_without_a_run_says_to_run_notebook_04(tmp_path):
    cfg = get_config("full-smoke", verbose=False)
    for run in (tmp_path / "missing", tmp_path):  # no folder at all; a folder without checkpoints
        with pytest.raises(CheckpointError, match="04_training.ipynb") as err:
            require_checkpoint(cfg, run)
        assert "HW3_PROFILE=full-smoke" in str(err.value)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        require_checkpoint(cfg, tmp_path)


def test_require_checkpoint_of_a_conditional_profile_names_notebook_06s_training_cell(tmp_path):
    cfg = get_config("cpu-cond-smoke", verbose=False, model_channels=8, epochs=2)
    with pytest.raises(CheckpointError, match=r"training cell of notebooks/06_guidance.ipynb") as err:
        require_checkpoint(cfg, tmp_path)
    assert "04_training" not in str(err.value) and "HW3_PROFILE=cpu-cond-smoke" in str(err.value)
    _fake_checkpoint(tmp_path, cfg, epoch=1, step=3)
    with pytest.warns(UserWarning, match=r"Re-run the training cell of notebooks/06_guidance.ipynb"):
        require_checkpoint(cfg, tmp_path)


def test_require_checkpoint_default_is_the_profiles_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HW3_RUNS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match=str(tmp_path / "full-smoke" / "checkpoints")):
        require_checkpoint(get_config("full-smoke", verbose=False))


def _fake_checkpoint(run: Path, cfg, epoch: int, step: int) -> Path:
    model = build_model(cfg)
    path = run / "checkpoints" / f"step_{step:08d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "ema": model.state_dict(), "config": cfg.to_dict(),
                "epoch": epoch, "step": step, "history": [1.0] * epoch}, path)
    return path


def test_require_checkpoint_finds_the_newest_and_warns_when_unfinished(tmp_path, capsys):
    cfg = get_config("full-smoke", verbose=False, model_channels=8, epochs=2)
    _fake_checkpoint(tmp_path, cfg, epoch=1, step=3)
    with pytest.warns(UserWarning, match="epoch 1 of 2"):
        path = require_checkpoint(cfg, tmp_path)
    assert path.name == "step_00000003.pt"
    newest = _fake_checkpoint(tmp_path, cfg, epoch=2, step=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert require_checkpoint(cfg, tmp_path) == newest
    assert "(epoch 2/2, step 6)" in capsys.readouterr().out
    model = load_model(newest, "ema", cfg=cfg)  # what notebook 05 does next
    assert model.image_shape == cfg.image_shape


# sliders, in this process --------------------------------------------------------------------
def _x0(n=4):
    return torch.rand((n, 3, 28, 28), generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_noising_slider_moves_to_the_chosen_timestep():
    ddpm = DDPM()
    ts = [0, 99, 499, 999]
    box = noising_slider(ddpm, _x0(), ts, nrow=4)
    assert box.labels == [1, 100, 500, 1000]
    assert box.readout.value == "t = 1" and bytes(box.image.value).startswith(PNG_MAGIC)
    seen = {bytes(box.image.value)}
    for k, t in enumerate(ts):
        box.slider.value = k
        assert box.readout.value == f"t = {t + 1}"
        expected = png_bytes(ddpm.q_sample(_x0(), t, torch.randn((4, 3, 28, 28),
                                                                  generator=torch.Generator().manual_seed(0))), 4)
        assert box.image.value == expected
        seen.add(bytes(box.image.value))
    assert len(seen) == len(ts)  # every frame is a different picture
    box.slider.value = 0
    assert box.readout.value == "t = 1"


def test_denoising_slider_moves_to_the_chosen_snapshot():
    frames = torch.rand((5, 3, 3, 28, 28), generator=torch.Generator().manual_seed(1)) * 2 - 1
    labels = [1000, 750, 500, 250, 0]
    box = denoising_slider(frames, labels, nrow=3)
    assert box.slider.max == 4 and box.readout.value.startswith("t = 1000")
    first = bytes(box.image.value)
    for k in (3, 4, 1):
        box.slider.value = k
        assert box.image.value == png_bytes(frames[k], 3) != first
        assert box.readout.value.startswith(f"t = {labels[k]} ")


# sliders, in a real kernel driven like a front end -------------------------------------------
KERNEL_CODE = """
import json, torch
from IPython.display import display
from hw3_utils import DDPM, denoising_slider, noising_slider
x0 = torch.rand((4, 3, 28, 28), generator=torch.Generator().manual_seed(0)) * 2 - 1
boxes = {"noising": noising_slider(DDPM(), x0, [0, 499, 999], nrow=4),
         "denoising": denoising_slider(torch.rand((3, 4, 3, 28, 28)) * 2 - 1, [1000, 500, 0], nrow=4)}
for box in boxes.values():
    display(box)
print(json.dumps({k: {"slider": b.slider.model_id, "image": b.image.model_id, "readout": b.readout.model_id,
                      "labels": b.labels} for k, b in boxes.items()}))
"""


def _collect(kc, msg_id, timeout=60):
    """IOPub messages caused by request msg_id, until the kernel goes idle for it."""
    msgs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs


def _run(kc, code):
    msgs = _collect(kc, kc.execute(code))
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert not errors, errors
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")


@pytest.mark.slow
def test_sliders_in_a_real_kernel_send_the_new_frame_to_the_front_end():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(REPO))
    try:
        ids = json.loads(_run(kc, KERNEL_CODE).strip().splitlines()[-1])
        for name, w in ids.items():
            previous = None
            for k in (2, 1):
                # what JupyterLab sends when the slider is dragged to position k
                msg = kc.session.msg("comm_msg", {"comm_id": w["slider"], "data": {
                    "method": "update", "state": {"value": k}, "buffer_paths": []}})
                kc.shell_channel.send(msg)
                replies = _collect(kc, msg["header"]["msg_id"])
                updates = [m for m in replies if m["msg_type"] == "comm_msg"
                           and m["content"]["data"].get("method") == "update"]
                image = [m for m in updates if m["content"]["comm_id"] == w["image"]]
                readout = [m for m in updates if m["content"]["comm_id"] == w["readout"]]
                assert len(image) == 1 and len(readout) == 1, (name, k, [m["content"] for m in replies])
                assert image[0]["content"]["data"]["buffer_paths"] == [["value"]]
                png = bytes(image[0]["buffers"][0])
                assert png.startswith(PNG_MAGIC) and png != previous
                assert readout[0]["content"]["data"]["state"]["value"].startswith(f"t = {w['labels'][k]}")
                # the kernel-side widget holds what the front end was sent
                state = json.loads(_run(kc, (
                    f"import hashlib, json; b = boxes[{name!r}]; print(json.dumps([b.slider.value, "
                    "b.readout.value, hashlib.sha256(b.image.value).hexdigest()]))")).strip())
                assert state == [k, readout[0]["content"]["data"]["state"]["value"],
                                 hashlib.sha256(png).hexdigest()]
                previous = png
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_live_loss_plot_redraws_within_an_epoch_but_throttled(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj)

    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=False: shown.append(obj) or Handle())
    live = LiveLossPlot(min_seconds=0.0)
    live.on_log([(1, 1.2)], [])
    live.on_log([(1, 1.2), (2, 0.9)], [])
    assert len(shown) == 2  # moved before the epoch ended
    fig = shown[-1]
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2] and "step 2" in fig.axes[0].get_title()
    live(1, [1.05])  # epoch 1 ends at step 2: its mean is drawn there
    epoch_dots = [ln for ln in shown[-1].axes[0].lines if ln.get_label() == "epoch mean"]
    assert list(epoch_dots[0].get_xdata()) == [2.0] and list(epoch_dots[0].get_ydata()) == [1.05]
    slow = LiveLossPlot(min_seconds=3600)
    slow.on_log([(1, 1.0)], [])
    slow.on_log([(1, 1.0), (2, 0.5)], [])
    assert slow.calls == 1  # at most one redraw per min_seconds during an epoch
    slow(1, [0.75])
    assert slow.calls == 2  # the end of an epoch always redraws


def test_plot_loss_draws_steps_smoothed_and_epoch_means():
    from hw3_utils.viz import plot_loss, smooth

    log = [(s, 1.0 / s) for s in range(1, 33)]
    fig = plot_loss([0.3, 0.05], log)
    labels = [ln.get_label() for ln in fig.axes[0].lines]
    assert labels[1:] == ["smoothed", "epoch mean"] and len(fig.axes[0].lines[0].get_xdata()) == 32
    assert list(fig.axes[0].lines[2].get_xdata()) == [16.0, 32.0]
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected: no ramp from 0
    plt.close("all")


@pytest.mark.slow
def test_live_samples_draw_the_same_noise_after_each_epoch(monkeypatch, tiny_cfg):
    """Notebook 04's digits while it trains: one display redrawn after each epoch, from the same noise (so the
    same 16 samples change only as the weights do), the weights left alone."""
    import IPython.display
    import torch

    from hw3_utils import build_model
    from hw3_utils.notebook import LiveSamples
    from hw3_utils.pipeline import PREVIEW_SAMPLES, preview_samples

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=False: shown.append(("display", obj))
                        or Handle())
    cfg = tiny_cfg
    model = build_model(cfg, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    samples = LiveSamples(cfg)
    samples(1, model)
    samples(2, model)
    assert [kind for kind, _ in shown] == ["display", "update"] and samples.calls == 2
    assert "after epoch 2 of" in shown[-1][1].axes[0].get_title()
    a, b = preview_samples(model, cfg), preview_samples(model, cfg)
    assert a.shape == (PREVIEW_SAMPLES, *cfg.image_shape) and torch.equal(a, b) and a.abs().max() <= 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# notebook 06: the guidance widget, the conditional previews; notebook 05: the classifier's histogram ----------
def test_guidance_widget_draws_each_pair_once_and_shows_the_chosen_one():
    from hw3_utils.viz import guidance_widget

    def picture(digit, w):  # a picture that names its pair: digit d at weight w is filled with (d + w) / 10 - 1
        return torch.full((3, 1, 28, 28), (digit + w) / 10 - 1)

    calls = []
    box = guidance_widget(lambda d, w: calls.append((d, w)) or picture(d, w), weights=(0, 0.5, 2), digit=7, w=2,
                          nrow=3)
    assert box.readout.value == "digit 7, w = 2" and box.image.value == png_bytes(picture(7, 2.0), 3)
    assert box.buttons.options == tuple(str(d) for d in range(10))
    assert box.slider.options == (("0", 0.0), ("0.5", 0.5), ("2", 2.0))
    for widget, value, shown in ((box.buttons, "3", (3, 2.0)), (box.slider, 0.5, (3, 0.5)),
                                 (box.buttons, "7", (7, 0.5)), (box.slider, 2.0, (7, 2.0)),
                                 (box.buttons, "3", (3, 2.0))):
        widget.value = value
        assert box.readout.value == f"digit {shown[0]}, w = {shown[1]:g}"
        assert box.image.value == png_bytes(picture(*shown), 3)
    assert calls == [(7, 2.0), (3, 2.0), (3, 0.5), (7, 0.5)]  # each pair drawn once, on its first choice
    assert set(box.pictures) == set(calls)


def test_a_conditional_run_previews_and_explores_the_digits_asked_for(monkeypatch):
    import IPython.display
    from conftest import tiny_config

    from hw3_utils.conditional import guidance_explorer, preview_digits, preview_guided
    from hw3_utils.notebook import LiveSamples

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=False: shown.append(obj))
    cfg = tiny_config(num_classes=10)
    model = build_model(cfg, "cpu")
    with torch.no_grad():
        model.label_emb.weight.normal_()  # so that the label matters
    LiveSamples(cfg)(1, model)
    assert "asked for 0-9" in shown[0].axes[0].get_title()
    digits = preview_digits(model, cfg)
    assert digits.shape == (20, *cfg.image_shape) and digits.abs().max() <= 1
    assert torch.equal(digits, preview_guided(model, cfg, torch.arange(10).repeat(2), 2.0))  # 0-9 twice, w = 2
    box = guidance_explorer(model, cfg, n=2)
    assert box.readout.value == "digit 0, w = 2"
    box.buttons.value = "5"
    assert box.image.value == png_bytes(preview_guided(model, cfg, torch.full((2,), 5), 2.0), 8)
    assert box.image.value != box.pictures[(0, 2.0)]
    plt.close("all")


def test_the_class_histogram_plot_shows_each_digits_share():
    from hw3_utils.digits import ClassHistogram
    from hw3_utils.viz import plot_class_histogram

    counts = torch.tensor([5, 0, 10, 5, 5, 5, 5, 5, 5, 5]).numpy()
    fig = plot_class_histogram(ClassHistogram(counts))
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights == pytest.approx([100 * c / 50 for c in counts]) and "50 images" in fig.axes[0].get_title()
    plt.close("all")
