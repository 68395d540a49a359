"""The digit classifier and its scores (hw3_utils/digits.py), against closed forms and known cases.

A classifier trained on TEST_COUNT images (seconds) serves every test but one, through the same code
path as the full one (load_classifier, cache key naming its size). The slow test trains the full
classifier once per session into the tests' $TORCH_HOME, where later users in the session find it.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from hw3_utils import digits, fid_refs, load_pngs, save_pngs
from hw3_utils.fid import activation_stats

TEST_COUNT = 2000  # training images of the test-size classifier


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, data_dir):
    return digits.load_classifier(TEST_COUNT, cache_dir=tmp_path_factory.mktemp("digits_weights"))


@pytest.fixture(scope="session")
def mnist_test(data_dir):
    """MNIST test as the samplers return images: (10000, 3, 28, 28) in [-1, 1], and the labels."""
    images, labels = digits.mnist_arrays("test")
    return images.float().div(127.5).sub(1).unsqueeze(1).expand(-1, 3, -1, -1), labels


@pytest.fixture(scope="session")
def held_out_train(data_dir):
    """10,000 MNIST training images the test-size classifier never saw: (10000, 1, 28, 28) in [-1, 1]."""
    images, labels = digits.mnist_arrays("train")
    return images[-10_000:].float().div(127.5).sub(1).unsqueeze(1), labels[-10_000:]


def _binomial_bounds(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    half = sigmas * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


# inputs ------------------------------------------------------------------------------------------
def test_prepare_reads_a_tensor_as_its_saved_pngs(tmp_path):
    images = torch.rand(6, 3, 28, 28, generator=torch.Generator().manual_seed(1)) * 2.2 - 1.1
    grey = images[:, :1].expand(-1, 3, -1, -1)
    save_pngs(grey, tmp_path)
    assert torch.allclose(digits.prepare(load_pngs(tmp_path)), digits.prepare(grey), atol=1e-6)
    assert torch.allclose(digits.prepare(grey), digits.prepare(images[:, :1]), atol=1e-6)
    assert digits.prepare(images).shape == (6, 1, 28, 28)


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, 28, 28), torch.zeros(2, 1, 32, 32), torch.zeros(28, 28),
                                 torch.full((2, 1, 28, 28), float("nan")), torch.zeros(2, 1, 28, 28).byte()])
def test_prepare_refuses_what_is_not_a_batch_of_digits(bad):
    with pytest.raises(digits.DigitsError, match="images"):
        digits.prepare(bad)


# accuracy ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_digits_with_their_labels_score_the_test_accuracy(tiny, mnist_test):
    images, labels = mnist_test
    acc = digits.digit_accuracy(images, labels, tiny)
    assert acc == pytest.approx(tiny.info["test_accuracy"], abs=1e-12)
    assert acc > 0.9
    assert digits.digit_accuracy(images[:, :1], labels, tiny) == acc  # one channel or three


def test_random_labels_score_ten_percent(tiny, mnist_test):
    images, _ = mnist_test
    labels = torch.randint(0, 10, (len(images),), generator=torch.Generator().manual_seed(3))
    lo, hi = _binomial_bounds(len(images), 0.1)  # each label is right with probability 1/10, whatever is read
    assert lo < digits.digit_accuracy(images, labels, tiny) < hi


def test_shuffled_labels_score_the_chance_of_a_match(tiny, mnist_test):
    images, labels = mnist_test
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(4))]
    read = np.bincount(digits.predict(images, tiny), minlength=10)
    shares = np.bincount(labels, minlength=10) / len(labels)
    chance = float(read @ shares) / len(labels)  # P(a random label equals the digit read), about 1/10
    lo, hi = _binomial_bounds(len(images), chance)
    assert lo < digits.digit_accuracy(images, shuffled, tiny) < hi
    assert abs(chance - 0.1) < 0.01


def test_one_requested_digit_for_all_and_bad_labels(tiny, mnist_test):
    images, labels = mnist_test
    sevens = images[labels == 7]
    assert digits.digit_accuracy(sevens, 7, tiny) == digits.digit_accuracy(sevens, torch.full((len(sevens),), 7), tiny)
    for bad in (labels[:5], torch.full((len(sevens),), 10), -1):
        with pytest.raises(digits.DigitsError, match="labels must be"):
            digits.digit_accuracy(sevens, bad, tiny)


# class histogram ---------------------------------------------------------------------------------
def test_histogram_of_real_digits_is_near_their_label_shares(tiny, mnist_test):
    images, labels = mnist_test
    hist = digits.class_histogram(images, tiny)
    truth = np.bincount(labels, minlength=10) / len(labels)
    assert hist.total == len(images) and hist.shares.sum() == pytest.approx(1)
    # each misread image moves one count: total variation <= the error rate
    assert 0.5 * np.abs(hist.shares - truth).sum() <= 1 - tiny.info["test_accuracy"] + 1e-12
    assert hist.entropy_bits > 0.98 * math.log2(10) and hist.missing == ()


def test_histogram_of_only_sevens_is_one_hot(tiny, mnist_test):
    images, labels = mnist_test
    sevens = images[labels == 7]
    seven = sevens[digits.predict(sevens, tiny) == 7][:1]
    hist = digits.class_histogram(seven.expand(50, -1, -1, -1), tiny)
    assert hist.counts.tolist() == [0] * 7 + [50] + [0] * 2
    assert hist.entropy_bits == 0 and hist.missing == (0, 1, 2, 3, 4, 5, 6, 8, 9)
    all_sevens = digits.class_histogram(sevens, tiny)
    assert all_sevens.shares[7] == pytest.approx(digits.digit_accuracy(sevens, 7, tiny))
    assert all_sevens.shares.argmax() == 7 and all_sevens.entropy_bits < 1
    assert "entropy" in str(all_sevens)


# classifier FID and KID --------------------------------------------------------------------------
def test_classifier_fid_of_shifted_features_is_the_squared_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, digits.FEATURE_DIM))
    shift = rng.normal(size=digits.FEATURE_DIM)
    assert digits.classifier_fid(a, a + shift) == pytest.approx(shift @ shift, rel=1e-6)  # same covariance
    assert digits.classifier_fid(a, a) == pytest.approx(0, abs=1e-6)
    with pytest.raises(digits.DigitsError, match="features"):
        digits.classifier_fid(a[:, :10], a)


@pytest.mark.slow
def test_real_digits_score_near_the_floor(tiny, held_out_train):
    images, labels = held_out_train
    _, sigma = activation_stats(digits.reference_features(tiny))
    spread = float(np.trace(sigma))  # FID between two unrelated feature sets of this spread is of its order
    real_fid = digits.classifier_fid(images, None, tiny)
    real_kid, real_std = digits.classifier_kid(images, None, tiny, subsets=20)
    sevens_fid = digits.classifier_fid(images[labels == 7], None, tiny)
    sevens_kid, _ = digits.classifier_kid(images[labels == 7], None, tiny, subsets=20)
    assert real_fid < 0.02 * spread < sevens_fid
    assert abs(real_kid) < max(real_std, 1e-3 * sevens_kid)  # unbiased: 0 on average for one distribution
    assert sevens_kid > 100 * abs(real_kid)
    feats = digits.classifier_features(images, tiny)
    assert digits.classifier_fid(feats, None, tiny) == pytest.approx(real_fid)  # features or images alike


def _mmd_by_pairs(x, y):
    """MMD^2's unbiased estimate written out pair by pair: the definition, for a tiny set."""
    k = lambda u, v: (float(np.dot(u, v)) / len(u) + 1) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_its_definition_and_torchmetrics():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 3)), rng.normal(0.5, 1.5, size=(5, 3))
    assert digits.mmd2_unbiased(x, y) == pytest.approx(_mmd_by_pairs(x, y), rel=1e-12)
    a, b = rng.normal(size=(60, digits.FEATURE_DIM)), rng.normal(0.2, 1.0, size=(60, digits.FEATURE_DIM))
    reference = poly_mmd(torch.from_numpy(a), torch.from_numpy(b)).item()  # degree 3, gamma 1/d, coef 1
    assert digits.mmd2_unbiased(a, b) == pytest.approx(reference, rel=1e-10)
    # subsets as large as the sets are permutations of them, each with the same unbiased estimate
    mean, std = digits.classifier_kid(a, b, subsets=5, subset_size=100)
    assert mean == pytest.approx(reference, rel=1e-10) and std < 1e-9 * abs(reference)


def test_kid_is_zero_for_one_distribution_and_blind_to_feature_order():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2000, digits.FEATURE_DIM)), rng.normal(size=(2000, digits.FEATURE_DIM))
    far = rng.normal(0.3, 1.0, size=(2000, digits.FEATURE_DIM))
    same, same_std = digits.classifier_kid(a, b, subsets=20, subset_size=500)
    apart, _ = digits.classifier_kid(a, far, subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std and abs(same) < 0.01 * apart
    order = rng.permutation(digits.FEATURE_DIM)
    assert digits.classifier_kid(a[:, order], far[:, order], subsets=20, subset_size=500)[0] == pytest.approx(apart)


def test_reference_features_are_cached_per_classifier(tiny, tmp_path, data_dir):
    first = digits.reference_features(tiny, count=500, cache_dir=tmp_path)
    files = list(tmp_path.glob("digits_*_mnist_test_500.npz"))
    assert len(files) == 1 and digits.fingerprint(tiny)[:16] in files[0].name
    with np.load(files[0]) as f:
        assert np.array_equal(f["features"], first.astype(np.float32))
    assert np.array_equal(digits.reference_features(tiny, count=500, cache_dir=tmp_path), first)
    other = digits.DigitClassifier().eval()
    digits.reference_features(other, count=500, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("digits_*_mnist_test_500.npz"))) == 2


# the cached weights ------------------------------------------------------------------------------
def test_cache_key_names_the_training_size(tmp_path):
    assert digits.weights_path(None, tmp_path).name == "mnist_digits_all.pt"
    assert digits.weights_path(60_000, tmp_path) == digits.weights_path(None, tmp_path)
    assert digits.weights_path(TEST_COUNT, tmp_path).name == f"mnist_digits_{TEST_COUNT}.pt"


def test_cache_round_trip(tiny, tmp_path, mnist_test, capsys):
    path = digits.save_classifier(tiny, digits.weights_path(TEST_COUNT, tmp_path), TEST_COUNT,
                                  tiny.info["test_accuracy"])
    back = digits.load_classifier(TEST_COUNT, cache_dir=tmp_path)
    assert capsys.readouterr().out == ""  # read from the cache, not trained
    assert back.info == tiny.info and digits.fingerprint(back) == digits.fingerprint(tiny)
    assert torch.equal(digits.predict(mnist_test[0][:500], back), digits.predict(mnist_test[0][:500], tiny))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(digits.DigitsWeightsError, match="delete it and run again"):
        digits.read_classifier(path)


def test_training_is_deterministic_given_a_seed(data_dir):
    state = torch.random.get_rng_state()
    a, b = digits.train_classifier(256, seed=0), digits.train_classifier(256, seed=0)
    c = digits.train_classifier(256, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is left alone
    assert digits.fingerprint(a) == digits.fingerprint(b) != digits.fingerprint(c)


def _release(tmp_path, monkeypatch, files: dict[str, bytes], hashes: dict[str, str]):
    """A release folder served at a file:// URL, recorded in a stand-in for the kit's fid_references.json."""
    served = tmp_path / "served"
    served.mkdir(parents=True)
    for name, data in files.items():
        (served / name).write_bytes(data)
    sources = tmp_path / "fid_references.json"
    sources.write_text(json.dumps({"url": served.as_uri(), "sha256": hashes}))
    monkeypatch.setattr(fid_refs, "SOURCES_JSON", sources)


def test_a_file_other_than_the_recorded_one_is_refused(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "checkpoints"
    path = digits.save_classifier(tiny, digits.weights_path(TEST_COUNT, cache), TEST_COUNT, 0.5)
    _release(tmp_path, monkeypatch, {}, {path.name: "0" * 64})
    with pytest.raises(digits.DigitsWeightsError, match=re.escape(f"Delete {path} and run again")):
        digits.load_classifier(TEST_COUNT, cache_dir=cache)
    _release(tmp_path / "ok", monkeypatch, {}, {path.name: digits.sha256_of(path)})
    assert digits.fingerprint(digits.load_classifier(TEST_COUNT, cache_dir=cache)) == digits.fingerprint(tiny)


def test_a_missing_file_is_downloaded_with_its_sha256_checked(tiny, tmp_path, monkeypatch, capsys):
    made = digits.save_classifier(tiny, tmp_path / "made" / "w.pt", TEST_COUNT, tiny.info["test_accuracy"])
    name = digits.weights_path(TEST_COUNT).name
    _release(tmp_path, monkeypatch, {name: made.read_bytes()}, {name: digits.sha256_of(made)})
    got = digits.load_classifier(TEST_COUNT, cache_dir=tmp_path / "cache")
    assert digits.fingerprint(got) == digits.fingerprint(tiny)
    assert "downloaded" in capsys.readouterr().out
    assert digits.sha256_of(digits.weights_path(TEST_COUNT, tmp_path / "cache")) == digits.sha256_of(made)


def test_a_download_with_the_wrong_sha256_is_not_used(tiny, tmp_path, monkeypatch, capsys, data_dir):
    made = digits.save_classifier(tiny, tmp_path / "made" / "w.pt", 256, 0.5)
    name = digits.weights_path(256).name
    _release(tmp_path, monkeypatch, {name: made.read_bytes()}, {name: "f" * 64})
    cache = tmp_path / "cache"
    trained = digits.load_classifier(256, cache_dir=cache)
    out = capsys.readouterr().out
    assert "training the MNIST classifier once here on 256 images" in out and "could not be fetched" in out
    assert not digits.weights_path(256, cache).exists()  # the refused download is gone
    assert (cache / "mnist_digits_256_here.pt").is_file()  # trained here, never under the release's name
    assert digits.fingerprint(trained) != digits.fingerprint(tiny)
    digits._LOADED.clear()
    again = digits.load_classifier(256, cache_dir=cache)
    assert "using the classifier trained here" in capsys.readouterr().out
    assert digits.fingerprint(again) == digits.fingerprint(trained)


def test_release_sha256_names_the_full_classifier(tiny, tmp_path):
    with pytest.raises(digits.DigitsWeightsError, match="python -m hw3_utils.digits"):
        digits.release_sha256(tmp_path)
    path = digits.save_classifier(tiny, digits.weights_path(None, tmp_path), None, 0.5)
    assert digits.release_sha256(tmp_path) == {"mnist_digits_all.pt": digits.sha256_of(path)}


@pytest.mark.slow
def test_the_full_classifier_reads_99_percent_of_mnist_test(mnist_test):
    full = digits.load_classifier()  # trained once per session into $TORCH_HOME, or read from there
    images, labels = mnist_test
    assert full.info["size"] == "all"
    assert digits.digit_accuracy(images, labels, full) >= 0.99
