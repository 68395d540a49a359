"""The similarity check: a planted copy (renamed variables, reformatted) is listed with its lines; two honest,
independently written submissions and the correct variants of the registry are not."""

from __future__ import annotations

import re

import pytest
from hostile import write_zip

from grader import REPO, similarity
from grader.extract import safe_extract
from grader.release import solution_regions
from grader.similarity import similar_pairs
from hw3_utils.tasks import TASK_FILES

pytestmark = pytest.mark.slow

# One student's own code for every task (a different style from the kit's solution), by (file, task)
OWN = {
    ("hw3_utils/data.py", "1"): '''\
    scale = lambda img: (img.float() / 127.5 - 1.0).repeat(in_channels, 1, 1)
    return transforms.Compose([transforms.PILToTensor(), transforms.Lambda(scale)])
''',
    ("hw3_utils/unet.py", "2a"): '''\
    n_freq = dim // 2
    exponents = torch.arange(n_freq, dtype=torch.float32, device=t.device) / (n_freq - 1)
    omegas = 10000.0 ** (-exponents)
    angles = t.to(torch.float32).unsqueeze(1) * omegas.unsqueeze(0)
    sines, cosines = torch.sin(angles), torch.cos(angles)
    return torch.cat((sines, cosines), -1)
''',
    ("hw3_utils/unet.py", "2b"): ['''\
        out = F.relu(self.norm1(self.conv1(x)))
        shift = self.time_proj(temb)
        out = out + shift.unsqueeze(-1).unsqueeze(-1)
        out = self.conv2(out)
        return F.relu(self.norm2(out))
''', '''\
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_emb_dim))
        skips = []
        h = x
        for block in (self.down1, self.down2, self.down3):
            h = block(h, emb)
            skips.append(h)
            h = F.max_pool2d(h, kernel_size=2)
        h = self.bottleneck(h, emb)
        for upsample, block in ((self.up1, self.up_block1), (self.up2, self.up_block2), (self.up3, self.up_block3)):
            h = block(torch.cat((upsample(h), skips.pop()), dim=1), emb)
        return self.out(h)
'''],
    ("hw3_utils/diffusion.py", "3"): '''\
        shape = (-1,) + (1,) * (x0.dim() - 1)
        signal = self.sqrt_alpha_bars[t].view(shape)
        spread = self.sqrt_one_minus_alpha_bars[t].view(shape)
        return signal * x0 + spread * noise
''',
    ("hw3_utils/diffusion.py", "4"): '''\
        noisy = self.q_sample(x0, t, noise)
        guess = model(noisy, t).float()
        per_image = ((noise - guess) ** 2).mean(dim=(1, 2, 3))
''',
    ("hw3_utils/diffusion.py", "5a"): '''\
        shape = (-1,) + (1,) * (x_t.dim() - 1)
        predicted_noise = model(x_t, t).float()
        coef = self.betas[t].view(shape) / self.sqrt_one_minus_alpha_bars[t].view(shape)
        mu = (x_t - coef * predicted_noise) / torch.sqrt(self.alphas[t]).view(shape)
        sigma2 = (self.posterior_variance if self.variance == "posterior" else self.betas)[t].view(shape)
        z = torch.randn_like(x_t) if noise is None and generator is None else noise
        if z is None:
            z = torch.randn(x_t.shape, device=x_t.device, dtype=x_t.dtype, generator=generator)
        return torch.where((t > 0).view(shape), mu + torch.sqrt(sigma2) * z, mu)
''',
    ("hw3_utils/pipeline.py", "5b"): '''\
    newest = samples_folder(run)
    mine = fid.folder_stats(newest, device, cfg.fid_batch_size, expected=cfg.num_samples)
    scores = {}
    for split in ("train", "test"):
        scores[split] = fid.compute_fid(mine, fid.reference_npz(cfg, split, device=device))
    return scores
'''}
# The copy: the same code with every name of its own renamed, and reformatted (spacing, one blank line added)
RENAMES = {"scale": "to_range", "n_freq": "half_dim", "exponents": "powers", "omegas": "ws", "angles": "phase",
           "sines": "s_part", "cosines": "c_part", "shift": "t_shift", "out": "feat", "emb": "e", "skips": "saved",
           "block": "blk", "upsample": "up", "signal": "keep", "spread": "mix", "noisy": "xt", "guess": "eps_hat",
           "predicted_noise": "eps_pred", "coef": "c", "mu": "mean_", "sigma2": "var_", "z": "rnd", "newest": "folder_",
           "mine": "gen_stats", "scores": "res"}


def _files(regions: dict) -> dict[str, str]:
    """The solution's task files with these task regions replaced."""
    out, seen = {}, {}
    for rel, task, body in solution_regions():
        if not rel.endswith(".py"):
            continue
        text = out.get(rel, (REPO / rel).read_text())
        own = regions.get((rel, task))
        if isinstance(own, list):  # 2b has two regions in unet.py: Block.forward, then UNet.forward
            k = seen.get((rel, task), 0)
            seen[(rel, task)] = k + 1
            own = own[k]
        out[rel] = text.replace(body, own, 1) if own else text
    # as a student's file: the instructor's markers are not in it
    return {rel: "".join(line for line in text.splitlines(keepends=True) if "### BEGIN SOLUTION" not in line
                         and "### END SOLUTION" not in line) for rel, text in out.items()}


def _copied(regions: dict) -> dict:
    def rename(code: str) -> str:
        for old, new in RENAMES.items():
            code = re.sub(rf"\b{old}\b", new, code)
        return code.replace(" = ", "  =  ").replace("\n", "\n\n", 1)

    return {k: [rename(c) for c in v] if isinstance(v, list) else rename(v) for k, v in regions.items()}


def test_planted_copy_is_found_and_honest_work_is_not(tmp_path, student_release, monkeypatch):
    """A planted copy is listed with its lines, honest work is not; the check extracts the task files alone (the
    grading has extracted the notebooks once already)."""
    kit = student_release
    subs = tmp_path / "subs"
    subs.mkdir()
    notebook = {"notebooks/01_data_prep.ipynb": '{"cells": [], "nbformat": 4, "metadata": {}}'}
    zips = [write_zip(subs / "honest_kit_style.zip", {**_files({}), **notebook}),
            write_zip(subs / "honest_own_style.zip", _files(OWN)),
            write_zip(subs / "copier.zip", {**_files(_copied(OWN)), **notebook})]
    own_style = _files(OWN)["hw3_utils/unet.py"]
    assert "skips.pop()" in own_style and "saved.pop()" in _files(_copied(OWN))["hw3_utils/unet.py"]
    extracted = []

    def recorded(*args, **kwargs):
        ex = safe_extract(*args, **kwargs)
        extracted.extend(ex.files)
        return ex

    monkeypatch.setattr(similarity, "safe_extract", recorded)
    pairs = similar_pairs(zips, kit, tmp_path / "scratch")
    assert extracted and set(extracted) <= set(TASK_FILES)
    assert [(p.a, p.b) for p in pairs] == [("copier", "honest_own_style")], [(p.a, p.b, p.share) for p in pairs]
    p = pairs[0]
    assert p.share > 0.8 and p.tokens > 100
    assert p.lines and all(re.match(r"hw3_utils/\w+\.py: ", x) for x in p.lines)
    assert all("  =  " in x or "return" in x or x.rstrip().endswith(")") for x in p.lines), p.lines  # its own lines
    assert any("keep * x0 + mix * noise" in x for x in p.lines), p.lines
