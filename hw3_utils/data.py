"""MNIST as the report prepares it: 3 identical channels, 28x28, floats in [-1, 1].

Two ways to feed training, with the same images in the same order:
- `make_loader`: the report's DataLoader over torchvision's PIL transforms (the plain path);
- `load_tensor`: the whole (sub)set as one tensor, moved to the GPU once (the fast path). Each image
  goes through the dataset's own transform (the student's `mnist_transform`, task 1) once, so both
  paths see the same values bitwise, whatever way a correct transform is written.
Both draw each epoch's order from `epoch_permutation`, so resuming mid-run sees the same batches. Both carry
the digits' labels in the same order (the DataLoader as (x0, label) pairs, the fast path as `load_labels`),
which the conditional profiles train on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from .config import Config, stream_seed

DATA_ENV = "HW3_DATA_DIR"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError):
    """MNIST is neither on disk nor downloadable."""


def data_root(root=None) -> Path:
    """The data folder: the argument, else $HW3_DATA_DIR, else `data/` at the repo root.

    The repo root (not the working directory) so notebooks, which run inside notebooks/,
    and `python -m hw3_utils`, run from the root, share one download.
    """
    if root or os.environ.get(DATA_ENV):
        return Path(root or os.environ[DATA_ENV])
    repo = Path(__file__).resolve().parent.parent
    return repo / "data" if (repo / "pyproject.toml").exists() else Path("data")


def mnist_transform(in_channels: int = 3) -> transforms.Compose:
    """The report's transforms: Grayscale(3), ToTensor, Normalize(0.5, 0.5) -> [-1, 1]."""
    ### BEGIN SOLUTION 1
    return transforms.Compose([
        transforms.Grayscale(num_output_channels=in_channels),
        transforms.ToTensor(),
        transforms.Normalize([0.5] * in_channels, [0.5] * in_channels),
    ])
    ### END SOLUTION


def _have_files(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / f).exists() for f in MNIST_FILES)


def load_mnist(root=None, train: bool = True, in_channels: int = 3, download: bool = True):
    """torchvision's MNIST with the report's transforms; items are ((C, 28, 28) float in [-1, 1], label).

    Looks in `root` (else $HW3_DATA_DIR, else <repo>/data) and downloads there when the files are
    missing. Offline with no files it raises DataNotFoundError saying which files go where.
    """
    root = data_root(root)
    tf = mnist_transform(in_channels)
    if _have_files(root):
        return datasets.MNIST(str(root), train=train, transform=tf, download=False)
    if download:
        try:
            return datasets.MNIST(str(root), train=train, transform=tf, download=True)
        except Exception as err:  # urllib/HTTP/mirror errors: replaced by one clear message
            cause = f"download failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    else:
        cause = "download=False"
    raise DataNotFoundError(
        f"MNIST not found in {(root / 'MNIST' / 'raw').resolve()} and {cause}.\n"
        f"Put the four files {', '.join(MNIST_FILES)} (optionally .gz) in "
        f"<data dir>/MNIST/raw/ and point {DATA_ENV} at <data dir> "
        f"(e.g. export {DATA_ENV}=/path/to/data), or run once with internet access."
    )


def subset(dataset: Dataset, n: int | None) -> Dataset:
    """The first n items (all when n is None): the smoke profiles train on cfg.train_subset."""
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Shuffled indices for one epoch, a pure function of (seed, epoch) so a resumed run repeats it."""
    g = torch.Generator().manual_seed(stream_seed(seed, epoch))
    return torch.randperm(n, generator=g)


def forking_is_safe() -> bool:
    """False inside a Jupyter kernel: forking it for DataLoader workers can break its ZeroMQ sockets
    ("Socket operation on non-socket", a dead kernel)."""
    return "ipykernel" not in sys.modules


def worker_count(requested: int) -> int:
    """The report's num_workers=4, capped at the cores this machine has (0 on a single core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(requested, cores if cores > 1 else 0))


def make_loader(cfg: Config, dataset: Dataset, epoch: int, device: torch.device | str = "cpu") -> DataLoader:
    """The report's DataLoader (shuffled, batch 128, workers, pin_memory on CUDA) for one epoch.

    The shuffle is `epoch_permutation(len(dataset), cfg.seed, epoch)`, so a resumed run sees the same
    batches. Batches are (x0, label), x0 (B, C, 28, 28).
    """
    order = epoch_permutation(len(dataset), cfg.seed, epoch)
    workers = worker_count(cfg.num_workers)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=order.tolist(),
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=False,
    )


def load_tensor(dataset: Dataset, device: torch.device | str = "cpu", num_workers: int = 4) -> torch.Tensor:
    """All images of an MNIST (Subset) as one (N, C, 28, 28) float32 tensor on `device`.

    Every image goes through the dataset's own transform (the one `load_mnist` attached: the
    student's `mnist_transform`), once, exactly as the DataLoader path applies it, so the two paths
    give bitwise equal batches and the transform is treated as a black box: a one-off cost, small against
    training (docs/decisions/cpu-step.md). `num_workers` is capped at the machine's cores, and 0 inside a
    Jupyter kernel (`forking_is_safe`).
    """
    workers = worker_count(num_workers) if forking_is_safe() else 0
    loader = DataLoader(dataset, batch_size=1000, shuffle=False, num_workers=workers)
    batches = []
    for images, _ in loader:
        if not torch.is_tensor(images) or images.ndim != 4 or images.dtype != torch.float32:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise TypeError(f"the dataset's transform (Task 1, mnist_transform in hw3_utils/data.py) must turn each "
                            f"image into a float32 tensor (C, 28, 28); a batch of them came out as {shape}, "
                            f"{getattr(images, 'dtype', '')}. Run check('1') in notebook 01 for details.")
        batches.append(images)
    return torch.cat(batches).to(device)


def load_labels(dataset: Dataset, device: torch.device | str = "cpu") -> torch.Tensor:
    """The labels of an MNIST (Subset) as one (N,) int64 tensor on `device`, in item order (as `load_tensor`'s
    images): read from the dataset's targets, without running the image transform."""
    if isinstance(dataset, Subset):
        return load_labels(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)].to(device)
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise TypeError(f"load_labels reads an MNIST dataset's targets; {type(dataset).__name__} has none")
    return torch.as_tensor(targets, dtype=torch.long).to(device)
