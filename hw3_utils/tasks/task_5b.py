"""Task 5b: score_run, the FID of the newest checkpoint's samples against the MNIST train and test sets.

Checked with a cheap FID backend passed to `score_run` (mean and covariance of 4x4-pooled grey
pixels instead of Inception features): the same formula, on a run folder the check builds with
two checkpoints and their sample folders, in milliseconds and without the Inception weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from .base import Task, Tolerance

FILE = "hw3_utils/pipeline.py"


def inputs(spec: dict) -> dict:
    g = torch.Generator().manual_seed(spec["seed"])
    n, m = spec["samples"], spec["refs"]

    def imgs(k, lo, hi):
        grey = torch.randint(lo, hi, (k, 28, 28), generator=g, dtype=torch.int64).to(torch.uint8)
        return grey[..., None].expand(-1, -1, -1, 3).contiguous()

    return {"old": imgs(n, 0, 256), "new": imgs(n, 40, 200), "ref_train": imgs(m, 0, 180),
            "ref_test": imgs(m, 60, 256)}


def cheap_stats(arr) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in for Inception statistics: mean and covariance of 4x4-pooled grey pixels (49-d)."""
    x = torch.as_tensor(np.asarray(arr)).double()  # (N, 28, 28, 3)
    feats = torch.nn.functional.avg_pool2d(x.mean(-1)[:, None], 4).flatten(1).numpy()
    return feats.mean(0), np.cov(feats, rowvar=False)


class CheapFID:
    """The part of `hw3_utils.fid` that score_run may use, on cheap statistics of the case's images."""

    _SAME = ("SPLITS", "FIDError", "check_folder", "png_files", "load_stats", "save_stats", "frechet_distance",
             "reference_count")

    def __init__(self, case: dict, refdir: Path):
        self.case, self.refdir = case, Path(refdir)

    def __getattr__(self, name):
        from hw3_utils import fid

        if name in self._SAME:
            return getattr(fid, name)
        usable = ("folder_stats", "reference_npz", "reference_stats", "stats_of", "compute_fid") + self._SAME
        raise AttributeError(f"the FID backend of the check has no {name!r}: score_run can use {', '.join(usable)}")

    def folder_stats(self, folder, device=None, batch_size=50, expected=None, progress=True):
        from PIL import Image

        files = self.check_folder(folder, expected)
        return cheap_stats(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))

    def reference_npz(self, cfg, split="train", device=None, data_root=None, cache_dir=None, progress=True):
        if split not in self.SPLITS:
            raise self.FIDError(f"split must be 'train' or 'test', got {split!r}")
        path = self.refdir / f"mnist_{split}.npz"
        if not path.exists():
            mu, sigma = cheap_stats(self.case[f"ref_{split}"])
            np.savez(path, mu=mu, sigma=sigma)
        return path

    def reference_stats(self, cfg, cache_dir=None, data_root=None, device=None, split="train", progress=True):
        return self.refdir / f"mnist_{split}", self.reference_npz(cfg, split)

    def stats_of(self, source, device=None, batch_size=50, expected=None, progress=True):
        if isinstance(source, tuple):
            return source
        if str(source).endswith(".npz"):
            return self.load_stats(source)
        return self.folder_stats(source, device, batch_size, expected)

    def compute_fid(self, a, b, device=None, batch_size=50, progress=True) -> float:
        return self.frechet_distance(*self.stats_of(a), *self.stats_of(b))


def _write_pngs(arr: torch.Tensor, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, a in enumerate(arr.numpy()):
        Image.fromarray(a, "RGB").save(folder / f"{k:05d}.png")


def run(case: dict) -> dict:
    from hw3_utils import pipeline
    from hw3_utils.config import get_config
    from hw3_utils.runfolder import checkpoint_dir, checkpoint_path, samples_dir

    cfg = get_config("full-smoke", verbose=False, num_samples=case["new"].shape[0])
    with tempfile.TemporaryDirectory(prefix="hw3check-") as tmp:
        run_dir, refdir = Path(tmp) / "run", Path(tmp) / "refs"
        checkpoint_dir(run_dir).mkdir(parents=True)
        refdir.mkdir()
        for epoch, (step, arr) in enumerate(((10, case["old"]), (20, case["new"])), start=1):
            ckpt = checkpoint_path(run_dir, step)
            torch.save({"model": {}, "ema": {}, "config": cfg.to_dict(), "epoch": epoch, "step": step}, ckpt)
            _write_pngs(arr, samples_dir(run_dir, ckpt))
        scores = pipeline.score_run(run_dir, cfg, device=None, backend=CheapFID(case, refdir))
    if not isinstance(scores, dict) or not {"train", "test"} <= set(scores):
        raise TypeError(f"score_run should return a dict with keys 'train' and 'test', got {scores!r:.200}")
    return {"fid": torch.tensor([float(scores["train"]), float(scores["test"])], dtype=torch.float64)}


def explain(case: dict, got: dict, expected: dict) -> list[str]:
    return ["the FIDs differ: are you scoring the samples of the newest checkpoint, with the `fid` backend "
            "that score_run is given?"]


HIDDEN: list[dict] = []
MISTAKES: tuple = ()
VARIANTS: tuple = ()
reference = None

### BEGIN HIDDEN TESTS
from .base import mistake, variant  # noqa: E402 (the student kit has no patches)

HIDDEN = [dict(seed=611, samples=5, refs=7)]


def reference(case: dict) -> dict:  # noqa: F811 (the student kit has reference = None)
    return run(case)  # float64 already: the solution's score_run on the cheap backend


_BODY = ("    stats = fid.folder_stats(folder, device, cfg.fid_batch_size, expected=cfg.num_samples)\n"
         "    return {split: fid.compute_fid(stats, fid.reference_npz(cfg, split, device=device))\n"
         "            for split in (\"train\", \"test\")}\n")
MISTAKES = (
    mistake("oldest-samples", FILE,
            "folder = samples_folder(run)", 'folder = sorted(Path(run).glob("samples_*"))[0]',
            "the FID is computed on an older samples folder: score the samples of the newest checkpoint"),
)
VARIANTS = (
    variant("newest-checkpoint-name", FILE, ("folder = samples_folder(run)",
            "path, _ = newest_checkpoint_info(run)\n    folder = Path(run) / f\"samples_{path.stem}\""),
            "the folder named from newest_checkpoint_info instead of samples_folder"),
    variant("frechet-of-loaded-stats", FILE, (_BODY,
            "    mu, sigma = fid.folder_stats(folder, device, cfg.fid_batch_size, expected=cfg.num_samples)\n"
            "    scores = {}\n"
            "    for split in fid.SPLITS:\n"
            "        ref_mu, ref_sigma = fid.load_stats(fid.reference_npz(cfg, split, device=device))\n"
            "        scores[split] = fid.frechet_distance(mu, sigma, ref_mu, ref_sigma)\n"
            "    return scores\n"),
            "load the reference statistics and call frechet_distance, in a loop"),
    variant("compute-fid-of-folder", FILE, (_BODY,
            "    train = fid.compute_fid(folder, fid.reference_npz(cfg, \"train\"))\n"
            "    test = fid.compute_fid(folder, fid.reference_npz(cfg, \"test\"))\n"
            "    return dict(train=train, test=test)\n"),
            "compute_fid straight from the folder, once per split"),
)
### END HIDDEN TESTS

TASK = Task(
    id="5b", name="score_run", title="FID of the generated folder", points=10, file=FILE,
    functions=(("hw3_utils.pipeline", "score_run"),), notebook="05_sampling_and_fid",
    hint="Compute the statistics of the samples of the run's newest checkpoint (`samples_folder`) and their "
         "FID against the train and test references (`fid.reference_npz`), with the `fid` backend.",
    outputs={"fid": torch.float64},
    # float64 throughout; what varies between machines is the eigendecomposition of covariances
    # of rank 5 or less (the reason below says by how much). A wrong folder moves the FID by 10% or more.
    tolerance=Tolerance(1e-3, 1e-3, "FIDs of about 1e3 in float64; eigendecompositions of rank-deficient "
                        "covariances differ by about 1e-5 relatively between CPUs; a wrong folder is 10% or more off"),
    public=[dict(seed=601, samples=6, refs=8)],
    hidden=HIDDEN, inputs=inputs, run=run, reference=reference, explain=explain,
    near_miss="which statistics are compared: the samples' against each split's reference .npz",
    mistakes=MISTAKES, variants=VARIANTS,
)
