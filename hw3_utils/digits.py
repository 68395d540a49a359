"""A metric that reads digits: a small MNIST classifier the kit trains once, and the scores it gives samples.

Inception FID measures samples in the features of a network trained on ImageNet photos; the scores
here ask a network that knows digits. `load_classifier()` returns the classifier: from its cache
($TORCH_HOME/hub/checkpoints/mnist_digits_all.pt, beside the FID weights), else downloaded from
where the instructor's release says (sha256 checked), else trained here once (a few minutes on a
CPU) and cached. Every score takes images as the samplers return them, (N, C, 28, 28) float in
[-1, 1] with C = 1 or 3, quantised to 0..255 as the saved PNGs are, so a tensor scores as the PNG
folder written from it (load one with `hw3_utils.load_pngs`).

What each score can and cannot say:
- `digit_accuracy`: how many conditional samples the classifier reads as the digit asked for. It
  cannot tell a clean digit from a scrawl the classifier happens to read right, nor see mode collapse
  (the same perfect 7 every time scores 100%): read it beside FID.
- `class_histogram`: which digits unconditional samples are read as, and how evenly (entropy). A
  missing or rare digit shows; whether each drawn digit looks real, or varies, does not.
- `classifier_fid`, `classifier_kid`: how far the samples' features lie from real MNIST's, in the
  classifier's penultimate layer (FEATURE_DIM numbers per image). Sensitive to digit shape and
  class balance, blind to what the classifier learned to ignore (texture, faint noise), which
  Inception FID sees. Values compare only between runs scored by the same classifier (one weights
  file, one sha256) and, for FID, the same sample count: FID's bias grows as the count falls; KID's
  estimator is unbiased, so small sample sets compare better with it (its std says how well).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets

from .atomic import atomic_write
from .data import data_root, load_mnist
from .fid import activation_stats, frechet_distance, to_uint8
from .fid import weights_path as inception_weights_path
from .fid_refs import fetch_reference, reference_sources
from .runfolder import fid_cache_dir

NUM_CLASSES = 10
FEATURE_DIM = 128
MNIST_TRAIN = 60_000
# The training recipe, whose accuracy and time bench/digits_classifier.py records: AdamW under a one-cycle
# learning rate, inputs shifted by up to SHIFT pixels so the classifier does not hang on a digit's exact position.
SEED, EPOCHS, BATCH_SIZE, MAX_LR, WEIGHT_DECAY, SHIFT = 0, 4, 128, 3e-3, 1e-4, 2
WEIGHTS_STEM = "mnist_digits"


class DigitsError(ValueError):
    """Inputs the digit scores cannot be computed from."""


class DigitsWeightsError(DigitsError):
    """A cached classifier that is not the one the release records, or not readable."""


class DigitClassifier(nn.Module):
    """Three conv-BN-ReLU-maxpool blocks (16, 32, 64 channels; 28 -> 14 -> 7 -> 3), then 128 features, then 10 logits.

    forward: (B, 1, 28, 28) float in [-1, 1] -> logits (B, 10); `features` gives the penultimate
    (B, FEATURE_DIM) activations that classifier FID and KID compare.
    """

    def __init__(self):
        super().__init__()
        blocks = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.body = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(64 * 3 * 3, FEATURE_DIM), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, NUM_CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# inputs ------------------------------------------------------------------------------------------
def prepare(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, 28, 28) float in [-1, 1], C = 1 or 3 -> (N, 1, 28, 28) float32 as the classifier reads them.

    Each channel is quantised to 0..255 as `fid.save_pngs` writes it, then the channels are averaged
    (the kit's three channels are identical copies of one grey image).
    """
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] not in (1, 3) \
            or tuple(images.shape[2:]) != (28, 28) or images.shape[0] < 1:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise DigitsError(f"the digit scores take images (N, 1 or 3, 28, 28) in [-1, 1], got {shape}")
    if not images.is_floating_point():
        raise DigitsError(f"the digit scores take float images in [-1, 1], got {images.dtype} (0..255 images: "
                          "divide by 127.5 and subtract 1)")
    x = images.detach().float().cpu()
    if not torch.isfinite(x).all():
        raise DigitsError("the images hold NaN or inf values (did sampling diverge?); the digit scores need finite "
                          "images in [-1, 1]")
    u8 = to_uint8(x)  # (N, 28, 28, 3): the PNG's pixels
    return u8.float().mean(dim=3).div(127.5).sub(1).unsqueeze(1)


def mnist_arrays(split: str = "train", root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's raw images (N, 28, 28) uint8 and labels (N,) int64 of `split` ("train" or "test").

    Read from `hw3_utils.data.data_root(root)` without the notebooks' transform; missing files are
    downloaded (or explained) by `load_mnist`.
    """
    if split not in ("train", "test"):
        raise DigitsError(f"split must be 'train' or 'test', got {split!r}")
    root = data_root(root)
    try:
        ds = datasets.MNIST(str(root), train=split == "train", download=False)
    except RuntimeError:  # torchvision's "Dataset not found": fetch it, or say where the files go
        ds = load_mnist(root, train=split == "train", in_channels=1)
    return ds.data, ds.targets


def _to_input(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> (N, 1, 28, 28) float32 in [-1, 1], as `prepare` maps a saved PNG."""
    return u8.float().div(127.5).sub(1).unsqueeze(1)


# training ----------------------------------------------------------------------------------------
def _shifted(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image of x (B, 1, 28, 28) moved by its own random offset of -SHIFT..SHIFT pixels per axis."""
    b, size = x.shape[0], x.shape[-1]
    padded = F.pad(x, (SHIFT,) * 4, value=-1.0)
    dy, dx = (torch.randint(0, 2 * SHIFT + 1, (b,), generator=gen) for _ in range(2))
    grid = torch.arange(size)
    rows, cols = (dy[:, None] + grid)[:, :, None], (dx[:, None] + grid)[:, None, :]
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)


def train_classifier(count: int | None = None, seed: int = SEED, root=None) -> DigitClassifier:
    """A DigitClassifier trained on the first `count` MNIST training images (None: all 60,000), on the CPU.

    EPOCHS epochs of batches of BATCH_SIZE, AdamW under a one-cycle learning rate peaking at MAX_LR.
    Deterministic given `seed` (initialisation, dropout, shuffling and shifts all draw from it) on one
    machine and thread count; the global random state is left as it was. Returns the model in eval mode.
    """
    images, labels = mnist_arrays("train", root)
    n = MNIST_TRAIN if count is None else min(int(count), MNIST_TRAIN)
    if n < BATCH_SIZE:
        raise DigitsError(f"the classifier needs at least {BATCH_SIZE} training images, got count={count}")
    x, y = _to_input(images[:n]), labels[:n]
    steps_per_epoch = -(-n // BATCH_SIZE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = DigitClassifier().to(memory_format=torch.channels_last)  # NHWC: faster convolutions on a CPU
        opt = torch.optim.AdamW(model.parameters(), lr=MAX_LR, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MAX_LR, total_steps=EPOCHS * steps_per_epoch)
        model.train()
        for _ in range(EPOCHS):
            order = torch.randperm(n, generator=gen)
            for s in range(steps_per_epoch):
                idx = order[s * BATCH_SIZE:(s + 1) * BATCH_SIZE]
                batch = _shifted(x[idx], gen).contiguous(memory_format=torch.channels_last)
                loss = F.cross_entropy(model(batch), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return model.eval().to(memory_format=torch.contiguous_format)


@torch.no_grad()
def _outputs(classifier: DigitClassifier, x: torch.Tensor, batch_size: int = 1000):
    """(logits (N, 10), features (N, FEATURE_DIM)) float32 on the CPU for classifier inputs x (N, 1, 28, 28)."""
    dev = next(classifier.parameters()).device
    logits, feats = [], []
    for s in range(0, x.shape[0], batch_size):
        f = classifier.features(x[s:s + batch_size].to(dev))
        feats.append(f.cpu())
        logits.append(classifier.head(f).cpu())
    return torch.cat(logits), torch.cat(feats)


def mnist_test_accuracy(classifier: DigitClassifier, root=None) -> float:
    """Fraction of MNIST's 10,000 test images the classifier reads as their label."""
    images, labels = mnist_arrays("test", root)
    logits, _ = _outputs(classifier, _to_input(images))
    return (logits.argmax(1) == labels).double().mean().item()


# the cached weights ------------------------------------------------------------------------------
def size_tag(count: int | None = None) -> str:
    """'all' for the full training set, else the image count: the cache key names the classifier's training size."""
    return "all" if count is None or count >= MNIST_TRAIN else str(int(count))


def weights_path(count: int | None = None, cache_dir=None) -> Path:
    """$TORCH_HOME/hub/checkpoints/mnist_digits_<size>.pt (beside the FID weights), or in `cache_dir`."""
    folder = Path(cache_dir) if cache_dir else inception_weights_path().parent
    return folder / f"{WEIGHTS_STEM}_{size_tag(count)}.pt"


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def recorded_sha256(name: str) -> str | None:
    """The sha256 the release records for file `name` (fid_refs.SOURCES_JSON), or None."""
    return reference_sources()[1].get(name)


def _check_hash(path: Path, expected: str | None) -> None:
    """Refuse a cached file whose sha256 differs from the one the release records."""
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise DigitsWeightsError(
            f"{path} has sha256 {actual[:16]}..., but your kit's release records {expected[:16]}... for "
            f"{path.name}: it is not your instructor's classifier, so its scores would not compare with theirs. "
            f"Delete {path} and run again: the kit then downloads the instructor's copy (or, offline, trains "
            "its own and says so).")


def save_classifier(model: DigitClassifier, path, count: int | None, accuracy: float) -> Path:
    """Write the weights and how they were made (size, seed, epochs, MNIST test accuracy) atomically."""
    record = {"state_dict": model.state_dict(), "size": size_tag(count), "seed": SEED, "epochs": EPOCHS,
              "test_accuracy": float(accuracy)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(record, f))
    return path


def read_classifier(path) -> DigitClassifier:
    """A DigitClassifier (eval mode, CPU) from a file `save_classifier` wrote, loaded with weights_only=True."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        model = DigitClassifier()
        model.load_state_dict(record["state_dict"])
    except Exception as err:  # unpickling refused, truncated file, other keys or shapes
        raise DigitsWeightsError(f"{path} is not a readable digit classifier ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:120]}); delete it and run again to get a "
                                 "fresh one") from err
    model.info = {k: v for k, v in record.items() if k != "state_dict"}
    return model.eval()


_LOADED: dict[str, DigitClassifier] = {}


def load_classifier(count: int | None = None, cache_dir=None, root=None) -> DigitClassifier:
    """The MNIST digit classifier trained on `count` images (None: all), eval mode on the CPU; cached per process.

    Looks in `weights_path(count, cache_dir)`. A cached file must match the sha256 the release records
    for it (else DigitsWeightsError saying what to do). A missing one is downloaded from the release's
    URL (sha256 checked), else trained here (printing one line with the time it took) and cached.
    When the release records a hash but the download failed, the copy trained here is cached apart
    (mnist_digits_<size>_here.pt), so it never passes for the instructor's.
    """
    path = weights_path(count, cache_dir)
    if str(path) in _LOADED:
        return _LOADED[str(path)]
    expected = recorded_sha256(path.name)
    why_not = fetch_reference(path.name, path) if expected and not path.exists() else None
    if path.exists():
        _check_hash(path, expected)
        model = read_classifier(path)
    else:
        here = path if expected is None else path.with_name(f"{path.stem}_here.pt")
        if not here.exists():
            model = _train_and_cache(count, here, why_not, root)
        else:
            if expected:
                print(f"digits: using the classifier trained here ({here.name}), not the release's: {why_not}")
            model = read_classifier(here)
    _LOADED[str(path)] = model
    return model


def _train_and_cache(count: int | None, path: Path, why_not: str | None, root) -> DigitClassifier:
    """Train the classifier here, evaluate it on MNIST test, cache it at `path`; one printed line says so."""
    n = min(count or MNIST_TRAIN, MNIST_TRAIN)
    reason = f"the release's copy could not be fetched: {why_not}" if why_not else f"none cached at {path}"
    print(f"digits: training the MNIST classifier once here on {n:,} images, {EPOCHS} epochs ({reason})...",
          end="", flush=True)
    start = time.perf_counter()
    model = train_classifier(count, root=root)
    seconds = time.perf_counter() - start
    accuracy = mnist_test_accuracy(model, root)
    save_classifier(model, path, count, accuracy)
    print(f" done in {seconds:.0f} s, MNIST test accuracy {accuracy:.2%}, cached as {path.name}", flush=True)
    return read_classifier(path)


def release_sha256(cache_dir=None) -> dict[str, str]:
    """{file name: sha256} of the full classifier in the instructor's cache, for the release's fid_references.json.

    The release records it beside the FID statistics' hashes, and the file is uploaded beside them, so
    students download exactly this classifier. Raises DigitsWeightsError (saying how to make it) when absent.
    """
    path = weights_path(None, cache_dir)
    if not path.is_file():
        raise DigitsWeightsError(f"the release records the sha256 of the digit classifier, but {path} does not exist: "
                                 "make it once with `python -m hw3_utils.digits` (trains it, a few minutes on a CPU)")
    return {path.name: sha256_of(path)}


# scores ------------------------------------------------------------------------------------------
def _classifier(classifier: DigitClassifier | None) -> DigitClassifier:
    return load_classifier() if classifier is None else classifier.eval()


def predict(images: torch.Tensor, classifier: DigitClassifier | None = None) -> torch.Tensor:
    """The digit (N,) int64 in 0..9 the classifier reads in each image (N, C, 28, 28) in [-1, 1]."""
    logits, _ = _outputs(_classifier(classifier), prepare(images))
    return logits.argmax(1)


def digit_accuracy(images: torch.Tensor, labels, classifier: DigitClassifier | None = None) -> float:
    """Requested-digit accuracy: the fraction of conditional samples the classifier reads as the digit asked for.

    images: (N, C, 28, 28) in [-1, 1]; labels: the requested digits, (N,) ints in 0..9 or one int for all.
    Real MNIST test digits score the classifier's own test accuracy (about 99%), labels drawn at random
    score 10%. It cannot tell a clean digit from a scrawl that happens to be read right, nor see a model
    that draws one perfect 7 every time: read it beside FID or KID.
    """
    pred = predict(images, classifier)
    want = torch.as_tensor(labels).long().cpu()
    want = want.expand(pred.shape[0]) if want.ndim == 0 else want
    if want.shape != pred.shape or want.min() < 0 or want.max() >= NUM_CLASSES:
        raise DigitsError(f"labels must be one digit 0..9 or {pred.shape[0]} of them (one per image), got shape "
                          f"{tuple(want.shape)} with values in [{want.min().item()}, {want.max().item()}]")
    return (pred == want).double().mean().item()


@dataclass(frozen=True)
class ClassHistogram:
    """How many images the classifier read as each digit: counts (10,) int64, indexed by digit."""

    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def shares(self) -> np.ndarray:
        """Fraction of the images per digit (10,) float64, summing to 1."""
        return self.counts / self.total

    @property
    def entropy_bits(self) -> float:
        """Shannon entropy of the shares in bits: log2(10) = 3.32 when every digit is drawn equally, 0 for one digit."""
        p = self.shares[self.counts > 0]
        return float(-(p * np.log2(p)).sum())

    @property
    def missing(self) -> tuple[int, ...]:
        """The digits no image was read as."""
        return tuple(int(d) for d in np.flatnonzero(self.counts == 0))

    def __str__(self) -> str:
        shares = " ".join(f"{d}:{s:.1%}" for d, s in enumerate(self.shares))
        return f"{self.total:,} images read as {shares}; entropy {self.entropy_bits:.3f} of {np.log2(10):.3f} bits"


def class_histogram(images: torch.Tensor, classifier: DigitClassifier | None = None) -> ClassHistogram:
    """The distribution of the digits the classifier reads in unconditional samples (N, C, 28, 28) in [-1, 1].

    Does the model draw every digit, and how evenly? MNIST's own test set reads close to its label
    shares (9% to 11% each; entropy near log2(10) bits). It says nothing about whether each digit looks
    real or varies: a model drawing ten perfect digits in a loop reads as perfectly even.
    """
    counts = torch.bincount(predict(images, classifier), minlength=NUM_CLASSES)
    return ClassHistogram(counts.numpy().astype(np.int64))


def classifier_features(images: torch.Tensor, classifier: DigitClassifier | None = None) -> np.ndarray:
    """The classifier's penultimate features (N, FEATURE_DIM) float64 of images (N, C, 28, 28) in [-1, 1]."""
    _, feats = _outputs(_classifier(classifier), prepare(images))
    return feats.double().numpy()


def fingerprint(classifier: DigitClassifier) -> str:
    """sha256 of the classifier's weights (hex): names the features a reference was computed with."""
    h = hashlib.sha256()
    for name, tensor in classifier.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_features(classifier: DigitClassifier | None = None, split: str = "test", count: int | None = None,
                       cache_dir=None, root=None) -> np.ndarray:
    """Features (N, FEATURE_DIM) float64 of the first `count` MNIST `split` images (None: all), cached.

    The cache (runs/fid_cache/digits_<weights sha256>_mnist_<split>_<count>.npz, beside the FID
    references) is keyed by the classifier's weights, so another classifier never reuses it.
    """
    classifier = _classifier(classifier)
    images, _ = mnist_arrays(split, root)
    n = images.shape[0] if count is None else min(int(count), images.shape[0])
    tag = "all" if n == images.shape[0] else str(n)
    folder = Path(cache_dir) if cache_dir else fid_cache_dir()
    path = folder / f"digits_{fingerprint(classifier)[:16]}_mnist_{split}_{tag}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            feats = f["features"] if "features" in f.files else None
        if feats is not None and feats.shape == (n, FEATURE_DIM):
            return feats.astype(np.float64)
    _, feats = _outputs(classifier, _to_input(images[:n]))
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez_compressed(f, features=feats.numpy()))
    return feats.double().numpy()


def _features_of(source, classifier: DigitClassifier | None) -> np.ndarray:
    """Features (N, FEATURE_DIM) float64 of images (a tensor), or features given as an array, or MNIST test (None)."""
    if source is None:
        return reference_features(classifier)
    if torch.is_tensor(source):
        return classifier_features(source, classifier)
    feats = np.asarray(source, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM or not np.isfinite(feats).all():
        raise DigitsError(f"expected images (N, C, 28, 28) or finite classifier features (N, {FEATURE_DIM}), "
                          f"got an array of shape {feats.shape}")
    return feats


def classifier_fid(a, b=None, classifier: DigitClassifier | None = None) -> float:
    """FID in the classifier's features: Frechet distance between Gaussians fitted to the features of a and b.

    a, b: images (N, C, 28, 28) in [-1, 1], or their `classifier_features`; b None: all 10,000 MNIST test
    images. The kit's `fid.frechet_distance` on FEATURE_DIM features instead of Inception's 2048. Real
    digits score near 0; the value grows with the gap in digit shape and class balance, and, like
    Inception FID, falls as the sample count grows, so compare only scores from equal counts.
    """
    fa, fb = _features_of(a, classifier), _features_of(b, classifier)
    if min(len(fa), len(fb)) < 2:
        raise DigitsError(f"FID needs at least 2 images on each side, got {len(fa)} and {len(fb)}")
    return frechet_distance(*activation_stats(fa), *activation_stats(fb))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between feature sets x (m, d) and y (n, d), kernel k(u, v) = (u.v / d + 1)^3.

    mean of k(x_i, x_j) over i != j, plus the same for y, minus 2 x the mean of k(x_i, y_j) over all
    pairs (Binkowski et al. 2018, eq. 2; KID is its mean over random subsets).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]

    def kernel(u, v):
        g = u @ v.T / d + 1.0
        return g * g * g
    kxx, kyy = kernel(x, x), kernel(y, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kernel(x, y).mean())


def classifier_kid(a, b=None, classifier: DigitClassifier | None = None, subsets: int = 100,
                   subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID in the classifier's features: (mean, std) of `mmd2_unbiased` over `subsets` random subsets.

    a, b as in `classifier_fid` (b None: MNIST test). Each subset draws min(subset_size, len(a), len(b))
    features of each side without replacement, as torch-fidelity and torchmetrics do. Unbiased: two
    samples of one distribution score 0 on average, at any count, so small sample sets compare fairly;
    the std says how much the subsets disagree. It can go slightly below 0.
    """
    fa, fb = _features_of(a, classifier), _features_of(b, classifier)
    m = min(subset_size, len(fa), len(fb))
    if m < 2:
        raise DigitsError(f"KID needs at least 2 images on each side, got {len(fa)} and {len(fb)}")
    rng = np.random.default_rng(seed)
    scores = [mmd2_unbiased(fa[rng.choice(len(fa), m, replace=False)], fb[rng.choice(len(fb), m, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(scores)), float(np.std(scores))


def main() -> None:
    """`python -m hw3_utils.digits`: load (or download, or train) the full classifier and say where it is."""
    model = load_classifier()
    path = weights_path()
    print(f"{path}: sha256 {sha256_of(path) if path.exists() else '(trained here, see above)'}, {model.info}")


if __name__ == "__main__":
    main()
