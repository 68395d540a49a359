from urllib.error import URLError

import pytest
import torch
from torchvision import datasets

from hw3_utils import Config, load_mnist, load_tensor, make_loader, subset
from hw3_utils.data import DataNotFoundError, epoch_permutation, worker_count
from hw3_utils.fid import export_pngs, load_pngs


def test_three_identical_channels_in_range(data_dir):
    ds = load_mnist(data_dir)
    assert len(ds) == 60_000
    x, y = ds[0]
    assert x.shape == (3, 28, 28) and x.dtype == torch.float32 and y == 5
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert x.min().item() == -1.0 and x.max().item() == 1.0


def test_loader_batches(data_dir):
    cfg = Config(batch_size=16, num_workers=0)
    ds = subset(load_mnist(data_dir), 40)
    batches = [b for b, _ in make_loader(cfg, ds, epoch=0)]
    assert [b.shape[0] for b in batches] == [16, 16, 8]  # drop_last=False, as the report's DataLoader
    assert batches[0].shape == (16, 3, 28, 28)


def test_tensor_path_equals_report_transforms_bitwise(data_dir):
    cfg = Config(batch_size=32, num_workers=0)
    ds = subset(load_mnist(data_dir), 96)
    data = load_tensor(ds)
    order = epoch_permutation(len(ds), cfg.seed, 3)
    for i, (x, _) in enumerate(make_loader(cfg, ds, epoch=3)):
        assert torch.equal(x, data[order[i * 32:(i + 1) * 32]])


def test_epoch_order_is_reproducible(data_dir):
    assert torch.equal(epoch_permutation(100, 0, 5), epoch_permutation(100, 0, 5))
    assert not torch.equal(epoch_permutation(100, 0, 5), epoch_permutation(100, 0, 6))
    assert sorted(epoch_permutation(100, 0, 5).tolist()) == list(range(100))
    cfg = Config(batch_size=8, num_workers=0)
    ds = subset(load_mnist(data_dir), 40)
    first, again = ([x for x, _ in make_loader(cfg, ds, epoch=1)] for _ in range(2))
    assert len(first) == 5 and all(torch.equal(a, b) for a, b in zip(first, again))


def test_workers_capped_by_cores():
    assert 0 <= worker_count(4) <= 4
    assert worker_count(0) == 0


def test_missing_data_offline_names_files_and_env(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as err:
        load_mnist(tmp_path, download=False)
    msg = str(err.value)
    for needed in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "MNIST/raw", "HW3_DATA_DIR"):
        assert needed in msg

    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(DataNotFoundError, match=r"(?s)download failed \(URLError.*HW3_DATA_DIR"):
        load_mnist(tmp_path)


def test_data_dir_from_env(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HW3_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        load_mnist(download=False)
    monkeypatch.setenv("HW3_DATA_DIR", data_dir)
    assert len(load_mnist(train=False)) == 10_000


def test_export_pngs_round_trip(data_dir, tmp_path):
    ds = load_mnist(data_dir)
    export_pngs(ds, tmp_path / "png", n=5)
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    back = load_pngs(tmp_path / "png")
    assert torch.equal(back, load_tensor(subset(ds, 5)))  # MNIST is 8-bit: PNG is lossless
