"""FID, the metric: PNGs as the report saves them, pytorch-fid's Inception features and statistics, Frechet distance.

Images are saved the way the report evaluates them: 28x28 RGB PNGs, [-1, 1] mapped to
0..255. In-memory images go through the same uint8 quantisation, so FID of a tensor equals
FID of the PNG folder written from it. Inception weights come from pytorch-fid's usual cache,
$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth (downloaded on first use).

The network, its preprocessing and the statistics (mean and covariance of the 2048-d pool3
features) are pytorch-fid's; only the matrix square root is done differently: the trace
Tr sqrt(S1 S2) comes from a symmetric eigendecomposition instead of scipy's `sqrtm`, which is
faster on a CPU and agrees with pytorch-fid (tests/test_fid.py). MNIST's reference statistics are
computed here (`reference_stats`) only when `fid_refs` (their cache, download and time budget) has none.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import fid_refs
from .atomic import atomic_write
from .config import stream_seed
from .data import forking_is_safe, load_mnist, load_tensor, subset
from .fid_refs import MNIST_SIZES, SPLITS, reference_count  # noqa: F401 (task 5b's `fid` offers reference_count)

FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
DIMS = 2048


class FIDError(ValueError):
    """Inputs that FID cannot be computed from."""


class FIDWeightsError(FileNotFoundError):
    """The Inception weights are neither cached nor downloadable."""


# images <-> PNG --------------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float in [-1, 1] -> (B, H, W, 3) uint8, as the report saves samples.

    (x + 1) / 2 to [0, 1], then round to 0..255; grayscale (C=1) is repeated to RGB.
    """
    x = images.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    x = x.mul(255).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous()


def save_pngs(images: torch.Tensor, folder, start: int = 0, skip_existing: bool = False) -> list[Path]:
    """Write images as folder/{start:05d}.png, ... atomically (temp file + rename).

    images: (B, C, H, W) float in [-1, 1]. A kill mid-write leaves at most a *.tmp file,
    never a truncated PNG under a final name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    arr = to_uint8(images).numpy()
    for k, a in enumerate(arr):
        path = folder / f"{start + k:05d}.png"
        paths.append(path)
        if skip_existing and path.exists():
            continue
        atomic_write(path, lambda f, a=a: Image.fromarray(a, "RGB").save(f, format="PNG"))
    return paths


def png_files(folder) -> list[Path]:
    return sorted(Path(folder).glob("*.png"))


def load_pngs(folder, n: int | None = None) -> torch.Tensor:
    """The first n PNGs of a folder as (n, 3, H, W) float in [-1, 1] (inverse of `save_pngs`)."""
    files = png_files(folder)[:n]
    if not files:
        raise FIDError(f"{folder} holds no PNG images")
    arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def count_complete(folder) -> int:
    """Number of consecutive PNGs 00000.png, 00001.png, ... present (the resume point)."""
    folder = Path(folder)
    k = 0
    while (folder / f"{k:05d}.png").exists():
        k += 1
    return k


def export_pngs(dataset, folder, n: int | None = None) -> Path:
    """Write the first n images of an MNIST dataset as 28x28 RGB PNGs (00000.png, ...), for FID.

    Skips files already present, so an interrupted export completes on a re-run.
    """
    folder = Path(folder)
    n = len(dataset) if n is None else min(n, len(dataset))
    save_pngs(load_tensor(subset(dataset, n)), folder, start=0, skip_existing=True)
    return folder


@torch.no_grad()
def generate_samples(sampler, folder, n: int, batch_size: int, seed: int = 0,
                     device=None, progress: bool = True) -> Path:
    """Fill `folder` with n sample PNGs, batch by batch; a re-run after a kill finishes the folder.

    sampler(n, generator) -> (n, C, H, W) images in [-1, 1]. Batch b is drawn from a generator
    seeded by (seed, b), so a resumed folder is identical to one written in a single run.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob("*.tmp"):
        tmp.unlink()
    done = count_complete(folder)
    first = done // batch_size  # redo a partly written batch: same seed, same images
    batches = range(first, (n + batch_size - 1) // batch_size)
    for b in tqdm(batches, desc=f"samples -> {folder}", disable=not progress or not len(batches)):
        gen = torch.Generator(device or "cpu").manual_seed(stream_seed(seed, b))
        count = min(batch_size, n - b * batch_size)
        save_pngs(sampler(count, gen), folder, start=b * batch_size)
    return folder


def check_folder(folder, expected: int | None = None) -> list[Path]:
    """The PNGs of a folder, after checking there are enough, all readable and of one size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FIDError(f"{folder} is not a folder of images")
    files = png_files(folder)
    if leftovers := sorted(folder.glob("*.tmp")):
        raise FIDError(f"{folder} holds {len(leftovers)} half-written file(s) such as {leftovers[0].name}: "
                       "re-run the sample generation to finish the folder")
    if not files:
        raise FIDError(f"{folder} holds no PNG images; generate samples or export MNIST first")
    if len(files) < 2:
        raise FIDError(f"FID needs at least 2 images, {folder} has {len(files)}")
    if expected is not None and len(files) != expected:
        raise FIDError(f"{folder} holds {len(files)} PNGs but {expected} were expected; "
                       "re-run the sample generation to complete it (finished files are kept)")
    sizes = {}
    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
                sizes.setdefault(im.size, f)
        except Exception as err:
            raise FIDError(f"{f} is not a readable image ({err}); delete it and re-run the sample "
                           "generation") from err
    if len(sizes) > 1:
        raise FIDError(f"{folder} mixes image sizes {sorted(sizes)} (e.g. {list(sizes.values())[:2]}); "
                       "FID needs one size")
    return files


# Inception -----------------------------------------------------------------------------------
def weights_path() -> Path:
    """Where pytorch-fid looks for its Inception weights: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS


_MODELS: dict[str, torch.nn.Module] = {}


def inception(device=None) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3, 2048-d) on `device`, eval mode, batch norms folded; cached per device."""
    from pytorch_fid.inception import InceptionV3

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = str(device)
    if key not in _MODELS:
        cached = weights_path().exists()
        try:
            model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[DIMS]])
        except Exception as err:
            if cached:
                raise
            raise FIDWeightsError(
                f"FID Inception weights not found at {weights_path()} and the download failed "
                f"({type(err).__name__}). Put {FID_WEIGHTS} in {weights_path().parent} "
                f"(TORCH_HOME is now {os.environ.get('TORCH_HOME', '~/.cache/torch (default)')}), "
                "or run once with internet access."
            ) from err
        # batch norms folded into the convolutions: faster, the same features to rounding (bench/inception_speed.py)
        model = fold_batch_norms(model.to(device).eval())
        if device.type == "cpu":
            # NHWC convolutions run faster on a CPU, the same features to rounding (bench/inception_speed.py)
            model = model.to(memory_format=torch.channels_last)
        _MODELS[key] = model
    return _MODELS[key]


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode batch norm of Inception's conv-bn-relu units into its convolution, in place.

    conv then bn is one affine map per channel, so W' = W * gamma / sqrt(var + eps) and
    b' = beta - mean * gamma / sqrt(var + eps) give the same outputs up to float rounding
    (torch.nn.utils.fusion.fuse_conv_bn_eval) with one pass over the activations fewer.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for unit in model.modules():
        if isinstance(getattr(unit, "conv", None), torch.nn.Conv2d) and isinstance(
                getattr(unit, "bn", None), torch.nn.BatchNorm2d):
            unit.conv = fuse_conv_bn_eval(unit.conv, unit.bn)
            unit.bn = torch.nn.Identity()
    return model


def _pool3(model, x: torch.Tensor) -> torch.Tensor:
    """Inception's pool3 features (N, 2048) of images (N, 3, H, W) in [0, 1], in the model's memory format."""
    if next(model.parameters()).device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    pred = model(x)[0]
    if pred.shape[2:] != (1, 1):
        pred = torch.nn.functional.adaptive_avg_pool2d(pred, (1, 1))
    return pred.squeeze(3).squeeze(2)


def _workers() -> int:
    """PNG decoding processes feeding Inception: up to 8, as pytorch-fid's own CLI uses, but none
    inside a Jupyter kernel (`data.forking_is_safe`); 28x28 PNGs decode in microseconds, so the main
    process keeps up with Inception on its own."""
    return min(8, os.cpu_count() or 1) if forking_is_safe() else 0


def activation_stats(act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of features (N, D): mu (D,), sigma (D, D), as pytorch-fid's statistics (unbiased covariance)."""
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


@torch.no_grad()
def folder_activations(files, model, batch_size: int = 50, device=None, progress: bool = True) -> np.ndarray:
    """pool3 features (N, 2048) float64 of PNG files, as pytorch-fid's `get_activations` computes them.

    Same dataset class and ToTensor preprocessing as pytorch-fid; the progress bar is tqdm.auto,
    like the rest of the kit (pytorch-fid's own bar lands in a red stderr box in notebooks).
    """
    import torchvision.transforms as TF
    from pytorch_fid.fid_score import ImagePathDataset
    from tqdm.auto import tqdm

    device = device or next(model.parameters()).device
    loader = torch.utils.data.DataLoader(ImagePathDataset(files, transforms=TF.ToTensor()),
                                         batch_size=batch_size, shuffle=False, drop_last=False,
                                         num_workers=_workers())
    acts = []
    for batch in tqdm(loader, desc=f"Inception features, {len(files)} images", leave=False,
                      disable=not progress):
        acts.append(_pool3(model, batch.to(device)).cpu().numpy())
    return np.concatenate(acts)


def folder_stats(folder, device=None, batch_size: int = 50, expected: int | None = None,
                 progress: bool = True):
    """(mu, sigma) of pytorch-fid's pool3 features over a folder of PNGs: mu (2048,), sigma (2048, 2048) float64."""
    files = check_folder(folder, expected)
    model = inception(device)
    return activation_stats(folder_activations(files, model, min(batch_size, len(files)), progress=progress))


@torch.no_grad()
def tensor_stats(images: torch.Tensor, device=None, batch_size: int = 50):
    """(mu, sigma) for in-memory images (N, C, H, W) in [-1, 1], quantised exactly as `save_pngs`."""
    if images.ndim != 4 or images.shape[0] < 2:
        raise FIDError(f"FID needs a batch of at least 2 images (N, C, H, W), got shape {tuple(images.shape)}")
    model = inception(device)
    dev = next(model.parameters()).device
    acts = []
    for s in range(0, images.shape[0], batch_size):
        x = to_uint8(images[s:s + batch_size]).permute(0, 3, 1, 2).float().div(255)  # as ToTensor
        acts.append(_pool3(model, x.to(dev)).cpu().double().numpy())
    return activation_stats(np.concatenate(acts))


def load_stats(path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) from a pytorch-fid .npz."""
    try:
        with np.load(path) as f:
            if "mu" not in f or "sigma" not in f:
                raise FIDError(f"{path} has keys {sorted(f.files)}, but a FID statistics file needs 'mu' and "
                               "'sigma'; make one with hw3_utils.save_stats or `python -m pytorch_fid --save-stats`")
            return f["mu"][:], f["sigma"][:]
    except FIDError:
        raise
    except Exception as err:
        raise FIDError(f"cannot read FID statistics from {path}: {err}") from err


def save_stats(mu: np.ndarray, sigma: np.ndarray, path) -> Path:
    """Write (mu, sigma) as a pytorch-fid .npz (keys mu, sigma)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez_compressed(f, mu=mu, sigma=sigma))
    return path


def stats_of(source, device=None, batch_size: int = 50, expected: int | None = None, progress: bool = True):
    """(mu, sigma) of a folder of PNGs, an .npz file, or a tensor of images in [-1, 1]."""
    if isinstance(source, torch.Tensor):
        return tensor_stats(source, device, batch_size)
    if isinstance(source, tuple):
        return source
    if str(source).endswith(".npz"):
        return load_stats(source)
    return folder_stats(source, device, batch_size, expected, progress=progress)


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix; rounding-level negative eigenvalues count as 0."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2): the FID formula.

    ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr sqrt(S1 S2). S1 S2 is not symmetric, but it is
    similar to sqrt(S1) S2 sqrt(S1), which is symmetric positive semi-definite with the same
    eigenvalues; so Tr sqrt(S1 S2) is the sum of the square roots of that matrix's eigenvalues.
    Two symmetric eigendecompositions replace scipy's general `sqrtm` (which pytorch-fid uses):
    same value, several times faster, and no complex parts or retries when S1 is singular.
    mu: (D,), sigma: (D, D) float64.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise FIDError(f"statistics have different dimensions: mu {mu1.shape} vs {mu2.shape}, "
                       f"sigma {s1.shape} vs {s2.shape}")
    root = _sqrt_psd(s1)
    m = root @ s2 @ root
    eig = np.linalg.eigvalsh((m + m.T) / 2)  # symmetrise away rounding before the symmetric solver
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def singular_note(n_images: int, dims: int = DIMS) -> str | None:
    """One line explaining why FID from n_images is rough, or None when the covariance can have full rank.

    The covariance of n feature vectors has rank at most n - 1, so with n <= dims it is singular.
    """
    if n_images > dims:
        return None
    return (f"FID note: with {n_images} images the {dims}x{dims} feature covariance is singular (rank at most "
            f"{n_images - 1}), so this FID is only a rough, inflated estimate; it becomes comparable with "
            f"the report's above {dims} images (the full profile uses 10,000).")


def compute_fid(a, b, device=None, batch_size: int = 50, progress: bool = True) -> float:
    """FID between two image sources: folders of PNGs, .npz statistics, tensors, or (mu, sigma)."""
    m1, s1 = stats_of(a, device, batch_size, progress=progress)
    m2, s2 = stats_of(b, device, batch_size, progress=progress)
    return frechet_distance(m1, s1, m2, s2)  # raises FIDError when the dimensions differ


class FIDReferenceError(FIDError):
    """A reference would take too long to compute here, and it could not be downloaded."""


def reference_stats(cfg, cache_dir=None, data_root=None, device=None, split="train",
                    progress: bool = True, count: int | None = None):
    """MNIST's reference statistics: cfg.fid_ref_count (or `count`) images of `split` as PNGs, and their .npz.

    Returns (png_folder, npz_path) (`fid_refs.reference_files` names them). Both are reused when present,
    so the cost is paid once. A missing .npz is first downloaded (`fid_refs`); one that would cost more than
    about ten minutes of CPU Inception is refused with one line saying what to do (FIDReferenceError).
    """
    if split not in SPLITS:
        raise FIDError(f"split must be one of {SPLITS}, got {split!r}")
    folder, npz, count = fid_refs.reference_files(cfg, split, count, cache_dir)
    why_not = fid_refs.cached_or_fetched(npz)
    if why_not is None:
        return folder, npz
    refusal = fid_refs.time_budget_refusal(npz, count, split, device, why_not)
    if refusal:
        raise FIDReferenceError(refusal)
    if count > fid_refs.CPU_REFERENCE_LIMIT:
        print(f"FID: computing the statistics of {count:,} MNIST {split} images once ({npz.name}, "
              f"cached in {npz.parent})")
    ds = load_mnist(data_root, train=split == "train", in_channels=cfg.in_channels)
    if count_complete(folder) < count:
        export_pngs(ds, folder, count)
    mu, sigma = folder_stats(folder, device, cfg.fid_batch_size, expected=count, progress=progress)
    save_stats(mu, sigma, npz)
    return folder, npz


def reference_npz(cfg, split: str = "train", device=None, data_root=None, cache_dir=None,
                  progress: bool = True) -> Path:
    """Cached pytorch-fid statistics (.npz) of cfg.fid_ref_count MNIST images of `split` ("train" or "test").

    The first call downloads them or runs Inception over the images once; later calls return the
    cached file at once (`reference_stats`).
    """
    return reference_stats(cfg, cache_dir, data_root, device, split, progress)[1]


def floor_npz(cfg, device=None, data_root=None, cache_dir=None, progress: bool = True) -> Path:
    """Statistics of the first cfg.num_samples MNIST test images (at most all 10,000), cached.

    Their FID against the training reference is the floor at the samples' own count: what a model
    that draws real digits would score with that many samples (FID's bias grows as the count falls).
    """
    n = min(cfg.num_samples, MNIST_SIZES["test"])
    return reference_stats(cfg, cache_dir, data_root, device, "test", progress, count=n)[1]
