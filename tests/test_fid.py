"""FID through pytorch-fid with the real Inception weights ($TORCH_HOME); a few dozen images only."""

import re
import subprocess
import sys
from urllib.error import URLError

import numpy as np
import pytest
import torch

from hw3_utils import fid as fidlib
from hw3_utils import fid_refs, get_config, load_mnist, load_tensor, subset
from hw3_utils.fid import FIDError, FIDWeightsError, compute_fid, save_pngs, tensor_stats

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(data_dir):
    return load_tensor(subset(load_mnist(data_dir), 40))


@pytest.fixture(scope="module")
def folders(real, tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    save_pngs(real[:20], root / "a")
    noisy = (real[20:40] + 0.5 * torch.randn(20, 3, 28, 28, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    save_pngs(noisy, root / "b")
    return root / "a", root / "b"


def test_weights_come_from_torch_home():
    path = fidlib.weights_path()
    assert path.exists(), f"FID weights missing at {path}: .ci/run links them into $TORCH_HOME/hub/checkpoints"


def test_fid_of_a_set_against_itself_is_zero(real):
    mu, sigma = tensor_stats(real[:20])
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    assert abs(compute_fid((mu, sigma), (mu, sigma))) < 1e-3


def test_fid_equals_pytorch_fid_command_line(folders):
    a, b = folders
    ours = compute_fid(a, b, device="cpu")
    out = subprocess.run([sys.executable, "-m", "pytorch_fid", str(a), str(b), "--device", "cpu"],
                         capture_output=True, text=True, check=True).stdout
    theirs = float(re.search(r"FID:\s+([0-9.eE+-]+)", out).group(1))
    assert ours > 1.0  # noisy digits really differ
    # 20 images: a singular covariance, where pytorch-fid's sqrtm is least exact (see below)
    assert ours == pytest.approx(theirs, rel=1e-3)


def test_in_memory_images_equal_their_png_folder(real, folders, tmp_path):
    a, _ = folders
    m1, s1 = tensor_stats(real[:20])
    m2, s2 = fidlib.folder_stats(a)
    assert np.allclose(m1, m2, atol=1e-5) and np.allclose(s1, s2, atol=1e-5)
    fidlib.save_stats(m2, s2, tmp_path / "a.npz")
    m3, s3 = fidlib.load_stats(tmp_path / "a.npz")
    assert np.array_equal(m2, m3) and np.array_equal(s2, s3)
    assert compute_fid((m1, s1), tmp_path / "a.npz") < 1e-3


def test_clear_errors_for_bad_inputs(tmp_path, real):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FIDError, match="holds no PNG images"):
        compute_fid(tmp_path / "empty", tmp_path / "empty")
    save_pngs(real[:1], tmp_path / "one")
    with pytest.raises(FIDError, match="at least 2 images"):
        compute_fid(tmp_path / "one", tmp_path / "one")
    with pytest.raises(FIDError, match="at least 2 images"):
        tensor_stats(real[:1])
    save_pngs(real[:2], tmp_path / "mixed")
    save_pngs(torch.zeros(1, 3, 32, 32), tmp_path / "mixed", start=2)
    with pytest.raises(FIDError, match=r"mixes image sizes \[\(28, 28\), \(32, 32\)\]"):
        fidlib.check_folder(tmp_path / "mixed")
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(FIDError, match="needs 'mu' and 'sigma'"):
        compute_fid(tmp_path / "bad.npz", tmp_path / "bad.npz")
    with pytest.raises(FIDError, match="not a folder"):
        fidlib.check_folder(tmp_path / "nowhere")


def test_missing_weights_offline_says_where_to_put_them(tmp_path, monkeypatch):
    import pytorch_fid.inception as inc

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(fidlib, "_MODELS", {})

    def offline(*a, **k):
        raise URLError("no network")

    monkeypatch.setattr(inc, "load_state_dict_from_url", offline)
    with pytest.raises(FIDWeightsError) as err:
        fidlib.inception("cpu")
    msg = str(err.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in msg and "TORCH_HOME" in msg
    assert str(tmp_path / "th" / "hub" / "checkpoints") in msg


# The Frechet distance: symmetric eigendecomposition vs pytorch-fid's scipy sqrtm ---------------
def _block_features(images: torch.Tensor, dims: int) -> np.ndarray:
    """pytorch-fid's Inception features of an earlier block (dims 64 or 192): full rank from a few hundred images."""
    from pytorch_fid.inception import InceptionV3

    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
    with torch.no_grad():
        feats = [model(fidlib.to_uint8(images[s:s + 50]).permute(0, 3, 1, 2).float().div(255))[0]
                 for s in range(0, len(images), 50)]
    x = torch.cat(feats)
    return torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1).double().numpy()


def test_frechet_distance_equals_pytorch_fid_on_full_rank_image_statistics(data_dir):
    from pytorch_fid.fid_score import calculate_frechet_distance

    x = load_tensor(subset(load_mnist(data_dir), 400))
    noisy = (x[200:] + 0.3 * torch.randn(200, 3, 28, 28, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    a, b = _block_features(x[:200], 64), _block_features(noisy, 64)
    (m1, s1), (m2, s2) = fidlib.activation_stats(a), fidlib.activation_stats(b)
    assert np.linalg.matrix_rank(s1) == 64 and np.linalg.matrix_rank(s2) == 64  # full rank
    ours, theirs = fidlib.frechet_distance(m1, s1, m2, s2), calculate_frechet_distance(m1, s1, m2, s2)
    assert ours > 0.1
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert fidlib.frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_equals_pytorch_fid_on_rank_deficient_statistics(folders):
    import warnings

    from pytorch_fid.fid_score import calculate_frechet_distance

    (m1, s1), (m2, s2) = (fidlib.folder_stats(f, progress=False) for f in folders)  # 20 images, 2048-d
    k = 256  # the first features: still of rank 19 at most, and pytorch-fid's sqrtm, cubic in k, stays short
    (m1, s1), (m2, s2) = (m1[:k], s1[:k, :k]), (m2[:k], s2[:k, :k])
    assert np.linalg.matrix_rank(s1) < k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-fid warns about the singular product; that is the point
        theirs = calculate_frechet_distance(m1, s1, m2, s2)
    assert fidlib.frechet_distance(m1, s1, m2, s2) == pytest.approx(theirs, rel=1e-3)


def test_frechet_distance_rejects_mismatched_statistics():
    with pytest.raises(FIDError, match="different dimensions"):
        fidlib.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_singular_note_only_below_the_feature_count():
    assert fidlib.singular_note(10_000) is None and fidlib.singular_note(2049) is None
    note = fidlib.singular_note(32)
    assert "32 images" in note and "singular" in note and "rank at most 31" in note


def test_fid_emits_no_warning_and_no_stderr_for_a_singular_covariance(folders, capfd):
    import warnings

    a, b = folders
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's "singular product" warning would fail here
        value = compute_fid(a, b, device="cpu", progress=False)
    assert value > 1.0
    assert capfd.readouterr().err == ""


def test_no_loader_processes_are_forked_inside_a_jupyter_kernel(monkeypatch):
    import types

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert fidlib._workers() >= 1
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert fidlib._workers() == 0  # a fork of the kernel can break its ZeroMQ sockets


# MNIST's FID statistics: downloaded where the release says, refused when they would take hours --------
def _stats_file(path, seed):
    rng = np.random.default_rng(seed)
    return fidlib.save_stats(rng.normal(size=8), np.eye(8) * rng.uniform(1, 2), path)


def _sources(monkeypatch, tmp_path, url, hashes):
    src = tmp_path / "fid_references.json"
    src.write_text(__import__("json").dumps({"url": url, "sha256": hashes}))
    monkeypatch.setattr(fid_refs, "SOURCES_JSON", src)


def _no_long_job(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a long reference computation was started")
    monkeypatch.setattr(fidlib, "load_mnist", refuse)
    monkeypatch.setattr(fidlib, "folder_stats", refuse)


def test_reference_statistics_download_from_the_release_url_with_sha256(tmp_path, monkeypatch):
    import hashlib

    served = tmp_path / "served"
    names = ["mnist_train_all.npz", "mnist_test_all.npz"]
    files = {name: _stats_file(served / name, k) for k, name in enumerate(names)}
    hashes = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in files.items()}
    _sources(monkeypatch, tmp_path, served.as_uri(), hashes)  # file://.../served: as an offline test of a URL
    _no_long_job(monkeypatch)
    cfg = get_config("cpu", verbose=False)
    cache = tmp_path / "cache"
    for split in ("train", "test"):
        got = fidlib.reference_npz(cfg, split, device="cpu", cache_dir=cache)
        assert got == cache / f"mnist_{split}_all.npz"
        assert got.read_bytes() == files[got.name].read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["mnist_test_all.npz", "mnist_train_all.npz"]  # no temp left


def test_a_download_with_the_wrong_sha256_is_refused(tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    _stats_file(served / "mnist_train_all.npz", 0)
    _sources(monkeypatch, tmp_path, served.as_uri(), {"mnist_train_all.npz": "0" * 64})
    _no_long_job(monkeypatch)
    monkeypatch.delenv(fid_refs.COMPUTE_ENV, raising=False)
    with pytest.raises(fidlib.FIDReferenceError) as err:
        fidlib.reference_npz(get_config("cpu", verbose=False), "train", device="cpu", cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg and "download from file://" in msg and "failed" in msg
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-checked is kept


def test_offline_without_statistics_the_kit_stops_with_one_line(tmp_path, monkeypatch):
    """No URL, no cached file, a CPU: one line that says what to do, instead of 2.5 hours of Inception."""
    _sources(monkeypatch, tmp_path, None, {})
    _no_long_job(monkeypatch)
    monkeypatch.delenv(fid_refs.COMPUTE_ENV, raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(fidlib.FIDReferenceError) as err:
        fidlib.reference_npz(get_config("cpu", verbose=False), "train", device="cpu", cache_dir=cache)
    msg = str(err.value)
    assert "\n" not in msg and "mnist_train_all.npz" in msg and str(cache) in msg and fid_refs.COMPUTE_ENV in msg
    assert "2.5 h" in msg  # 60,000 images at the measured CPU rate
    # the floor of the cpu profile (1,000 test images, a few minutes) is still computed, not refused
    assert fid_refs.time_budget_refusal(cache / "mnist_test_1000.npz", 1000, "test", "cpu", "offline") is None
    # a GPU, and the instructor's explicit consent, lift the refusal
    assert fid_refs.time_budget_refusal(cache / "mnist_train_all.npz", 60_000, "train", "cuda", "offline") is None
    monkeypatch.setenv(fid_refs.COMPUTE_ENV, "1")
    assert fid_refs.time_budget_refusal(cache / "mnist_train_all.npz", 60_000, "train", "cpu", "offline") is None


def test_the_cli_says_the_one_line_too(tmp_path, monkeypatch):
    """`python -m hw3_utils fid` on a laptop without the statistics: exit 2 and the line, not a long job."""
    monkeypatch.setenv("HW3_RUNS_DIR", str(tmp_path / "empty_runs"))  # no cached statistics
    monkeypatch.delenv(fid_refs.COMPUTE_ENV, raising=False)
    r = subprocess.run([sys.executable, "-m", "hw3_utils", "fid", "--profile", "cpu", "--device", "cpu",
                        "--out", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "mnist_train_all.npz" in r.stderr and fid_refs.COMPUTE_ENV in r.stderr and len(r.stderr.splitlines()) == 1


def test_the_kits_inception_gives_pytorch_fids_features(real):
    # fid.inception folds the batch norms and runs channels_last on the CPU: the same pool3 features
    # as pytorch-fid's network as it ships (NCHW), within 1e-5 relative (rounding of the folded weights)
    from pytorch_fid.inception import InceptionV3

    x = fidlib.to_uint8(real[:6]).permute(0, 3, 1, 2).float().div(255)
    with torch.no_grad():
        theirs = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()(x)[0].flatten(1)
        ours = fidlib._pool3(fidlib.inception("cpu"), x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fidlib.inception("cpu").modules())
    assert float((ours - theirs).abs().max() / theirs.abs().max()) < 1e-5
