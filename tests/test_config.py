import dataclasses
import re
from pathlib import Path

import pytest
import tomllib
import yaml

from hw3_utils import PROFILES, Config, config_diff, get_config, resolve_profile
from hw3_utils.config import MODEL_FIELDS, base_profile, conditional_profile

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_reports_recipe():
    c = Config()
    assert (c.batch_size, c.epochs, c.lr, c.adam_betas) == (128, 50, 2e-4, (0.9, 0.999))
    assert (c.timesteps, c.beta_start, c.beta_end) == (1000, 1e-4, 2e-2)
    assert (c.in_channels, c.model_channels, c.time_emb_dim, c.image_size) == (3, 64, 256, 28)
    assert c.num_samples == 10_000 and c.train_subset is None and c.fid_ref_count is None


def test_full_profile_is_exactly_the_defaults():
    assert get_config("full", verbose=False) == Config(profile="full")


SIZES = {"train_subset", "model_channels", "epochs", "num_samples", "sample_batch_size", "fid_ref_count",
         "fid_batch_size", "classifier_images", "log_every", "lr_warmup_steps", "profile"}


@pytest.mark.parametrize("base", ["full", "cpu", "full-cond", "cpu-cond"])
def test_smoke_twin_changes_sizes_only(base):
    """`<base>-smoke` is `<base>` with sizes shrunk: every switch that picks a code path is kept."""
    smoke, real = get_config(f"{base}-smoke", verbose=False), get_config(base, verbose=False)
    changed = {f.name for f in dataclasses.fields(Config) if getattr(smoke, f.name) != getattr(real, f.name)}
    assert changed <= SIZES
    for name in ("in_channels", "sampler", "sample_steps", "clip_denoised", "lr_decay", "variance",
                 "tensor_data", "cuda_graphs", "amp_bf16", "channels_last", "timesteps", "num_classes",
                 "label_dropout"):
        assert getattr(smoke, name) == getattr(real, name), name
    assert smoke.train_subset == 2048 and smoke.num_samples == 10 and smoke.epochs == 2
    assert base_profile(smoke.profile) == base


def test_smoke_twin_keeps_the_share_of_warm_up():
    cpu, smoke = get_config("cpu", verbose=False), get_config("cpu-smoke", verbose=False)
    steps = lambda c: c.epochs * -(-(c.train_subset or 60_000) // c.batch_size)  # noqa: E731
    assert cpu.lr_warmup_steps > 0 and 1 <= smoke.lr_warmup_steps < steps(smoke)
    assert abs(smoke.lr_warmup_steps / steps(smoke) - cpu.lr_warmup_steps / steps(cpu)) < 0.02
    assert get_config("full-smoke", verbose=False).lr_warmup_steps == 0  # no warm-up stays none


def test_cpu_profile_keeps_the_recipe_family():
    # the report's schedule, objective, architecture family and evaluation protocol; only sizes,
    # optimiser settings and the sampler's options change (docs/decisions/)
    cpu, full = get_config("cpu", verbose=False), Config()
    for name in ("timesteps", "beta_start", "beta_end", "variance", "channel_mult", "bottleneck_mult",
                 "time_emb_dim", "image_size", "sampler", "fid_ref_count"):
        assert getattr(cpu, name) == getattr(full, name), name
    assert cpu.in_channels == 1 and cpu.clip_denoised and cpu.sample_steps < cpu.timesteps
    assert cpu.lr_decay == "cosine" and cpu.num_samples >= 1000


@pytest.mark.parametrize("base", ["full", "cpu"])
def test_conditional_twin_is_its_profile_with_labels(base):
    """`<base>-cond` trains the same recipe, conditioned on the digit: only the conditioning fields differ."""
    cond, plain = get_config(f"{base}-cond", verbose=False), get_config(base, verbose=False)
    assert config_diff(plain, cond) == {"num_classes": (0, 10), "profile": (base, f"{base}-cond")}
    assert 0 < cond.label_dropout < 1 and plain.num_classes == 0
    assert conditional_profile(base, verbose=False) == f"{base}-cond"
    assert conditional_profile(f"{base}-smoke", verbose=False) == f"{base}-cond-smoke"
    assert conditional_profile(f"{base}-cond", verbose=False) == f"{base}-cond"


def test_conditional_twin_follows_the_chosen_profile(monkeypatch):
    monkeypatch.setenv("HW3_PROFILE", "cpu-smoke")
    assert conditional_profile(verbose=False) == "cpu-cond-smoke"


def test_configs_written_before_conditioning_load_as_unconditional():
    old = {k: v for k, v in Config().to_dict().items() if k not in ("num_classes", "label_dropout")}
    assert Config.from_dict(old).num_classes == 0 and "num_classes" in MODEL_FIELDS


def test_old_checkpoint_configs_with_fast_still_load():
    old = {k: v for k, v in Config().to_dict().items() if k not in ("tensor_data", "cuda_graphs")}
    c = Config.from_dict({**old, "fast": True})
    assert c.tensor_data is True and c.cuda_graphs is True


def test_profile_from_env_and_auto(monkeypatch, capsys):
    monkeypatch.setenv("HW3_PROFILE", "full")
    assert resolve_profile() == "full"
    assert "HW3_PROFILE" in capsys.readouterr().out
    monkeypatch.delenv("HW3_PROFILE")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_profile() == "cpu"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert resolve_profile() == "full"
    assert "CUDA" in capsys.readouterr().out


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'fast'.*\['cpu', 'cpu-cond', 'cpu-cond-smoke', "
                                         r"'cpu-smoke', 'full', 'full-cond', 'full-cond-smoke', 'full-smoke'\]"):
        get_config("fast")


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\]; valid keys are: .*'epochs'"):
        get_config("full-smoke", verbose=False, epoch=3)
    with pytest.raises(ValueError, match="unknown config key"):
        Config.from_dict({**Config().to_dict(), "lr_schedule": 0.1})


def test_bad_values_are_explained():
    with pytest.raises(ValueError, match="variance must be 'posterior' or 'beta'"):
        Config(variance="learned")
    with pytest.raises(ValueError, match="divisible by groups=8"):
        Config(model_channels=12)


BAD_VALUES = [  # (field, value, what the one-line message must say)
    ("epochs", "abc", "epochs='abc' is not allowed: epochs must be an integer >= 1"),
    ("epochs", 0, "epochs=0 is not allowed"),
    ("epochs", 2.5, "epochs=2.5 is not allowed: epochs must be an integer"),
    ("lr", -1, "lr=-1 is not allowed: lr must be a number in (0, 1]"),
    ("lr", "fast", "lr='fast' is not allowed"),
    ("batch_size", 0, "batch_size=0 is not allowed: batch_size must be an integer >= 1"),
    ("batch_size", True, "batch_size=True is not allowed"),
    ("timesteps", 1, "timesteps=1 is not allowed: timesteps must be an integer >= 2"),
    ("num_samples", 0, "num_samples=0 is not allowed: num_samples must be an integer >= 1"),
    ("variance", "foo", "variance='foo' is not allowed: variance must be 'posterior' or 'beta'"),
    ("channel_mult", [1], "channel_mult=[1] is not allowed: channel_mult must be three integers >= 1"),
    ("beta_start", 0, "beta_start=0 is not allowed: beta_start must be a number in (0, 1)"),
    ("beta_end", 1e-5, "beta_end=1e-05 is not allowed: it must be at least beta_start=0.0001"),
    ("adam_betas", [0.9], "adam_betas=[0.9] is not allowed: adam_betas must be two numbers in [0, 1)"),
    ("ema_decay", 1.0, "ema_decay=1.0 is not allowed: ema_decay must be a number in [0, 1)"),
    ("tensor_data", "yes", "tensor_data='yes' is not allowed: tensor_data must be true, false or null"),
    ("cuda_graphs", 1, "cuda_graphs=1 is not allowed"),
    ("lr_warmup_steps", -1, "lr_warmup_steps=-1 is not allowed"),
    ("lr_decay", "linear", "lr_decay='linear' is not allowed: lr_decay must be 'none' or 'cosine'"),
    ("sampler", "euler", "sampler='euler' is not allowed: sampler must be 'ddpm' or 'ddim'"),
    ("sample_steps", 0, "sample_steps=0 is not allowed"),
    ("clip_denoised", "yes", "clip_denoised='yes' is not allowed"),
    ("amp_bf16", None, "amp_bf16=None is not allowed: amp_bf16 must be true or false"),
    ("in_channels", 2, "in_channels=2 is not allowed: in_channels must be 1 or 3"),
    ("image_size", 32, "image_size=32 is not allowed: image_size must be 28"),
    ("train_subset", 0, "train_subset=0 is not allowed: train_subset must be null (all 60,000) or an integer >= 1"),
    ("fid_ref_count", 1, "fid_ref_count=1 is not allowed"),
    ("time_emb_dim", 255, "time_emb_dim=255 is not allowed: time_emb_dim must be an even integer >= 4"),
    ("log_every", 0, "log_every=0 is not allowed"),
    ("num_workers", -1, "num_workers=-1 is not allowed"),
    ("num_classes", 5, "num_classes=5 is not allowed: num_classes must be 0 (unconditional) or 10"),
    ("label_dropout", 1.0, "label_dropout=1.0 is not allowed: label_dropout must be a number in [0, 1)"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_each_bad_value_gets_one_line_naming_field_value_and_rule(field, value, message):
    from hw3_utils.config import ConfigError

    with pytest.raises(ConfigError) as err:
        get_config("full-smoke", verbose=False, **{field: value})
    text = str(err.value)
    assert message in text and "\n" not in text
    assert isinstance(err.value, ValueError)  # callers that catch ValueError keep working


def test_setup_overrides_are_checked_the_same_way():
    from hw3_utils.config import ConfigError
    from hw3_utils.notebook import setup

    with pytest.raises(ConfigError, match="epochs='ten' is not allowed"):
        setup("full-smoke", epochs="ten")


def test_json_round_trip(tmp_path):
    c = get_config("full-smoke", verbose=False, epochs=3)
    c.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == c
    assert set(MODEL_FIELDS) <= set(c.to_dict())
    assert set(PROFILES) == {"full", "cpu", "full-smoke", "cpu-smoke", "full-cond", "cpu-cond", "full-cond-smoke",
                             "cpu-cond-smoke"}


def _names(reqs):
    return {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(py["dependencies"]) | _names(py["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {d for d in dep["pip"] if not d.startswith("-e")}
        else:
            conda.add(dep)
    conda_names = _names(conda) - {"python", "pip"}
    conda_names = {"torch" if n == "pytorch" else n for n in conda_names}
    assert conda_names | _names(pip) == wanted
    # same lower bounds in both files
    bounds = {n: r for r in py["dependencies"] + py["optional-dependencies"]["dev"] for n in _names([r])}
    for dep in list(conda) + list(pip):
        name = next(iter(_names([dep])))
        name = "torch" if name == "pytorch" else name
        if name in bounds:
            assert dep.split(">=")[-1] == bounds[name].split(">=")[-1], (dep, bounds[name])


def test_parse_overrides_reads_json_values():
    from hw3_utils.config import parse_overrides

    assert parse_overrides(["epochs=5", "cuda_graphs=null", "variance=beta", "channel_mult=[1,2,2]", "lr=1e-4"]) == {
        "epochs": 5, "cuda_graphs": None, "variance": "beta", "channel_mult": [1, 2, 2], "lr": 1e-4}
    with pytest.raises(ValueError, match="--set expects KEY=VALUE, got 'epochs'"):
        parse_overrides(["epochs"])


@pytest.mark.slow
@pytest.mark.parametrize("given, expected", [
    ({}, ("10000", None)),  # nothing set: the kit's spin count (hw3_utils.OMP_SPIN_COUNT)
    ({"OMP_WAIT_POLICY": "PASSIVE"}, (None, "PASSIVE")),  # the user's policy is kept, no spin count added
    ({"GOMP_SPINCOUNT": "5"}, ("5", None)),
])
def test_openmp_wait_setting_is_set_on_import_unless_the_user_chose_one(given, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import os, hw3_utils; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), "
            "hw3_utils._openmp.TORCH_LOADED_FIRST)")
    out = subprocess.run([sys.executable, "-c", code], env={**env, **given}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert tuple(None if v == "None" else v for v in out[:2]) == expected
    assert out[2] == "False"  # hw3_utils loads torch itself, after the setting
