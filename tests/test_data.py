"""Datasets: the embedded digits, synthetic data, image folders and their cache."""

import numpy as np
import pytest
import torch
from PIL import Image

from al_bench import ConfigError
from al_bench.data import vision
from al_bench.data.digits import digits
from al_bench.data.imagefolder import imagefolder
from al_bench.data.synthetic import synthetic


def test_digits_is_the_fixed_embedded_split():
    pool = digits()
    assert pool.n_train == 1347 and pool.test_y.numel() == 450 and pool.num_classes == 10
    assert pool.train_x.dtype == torch.uint8 and pool.train_x.shape[1:] == (8, 8, 1)
    assert torch.equal(digits().train_y, pool.train_y)  # fixed: no dependence on any run seed


def test_synthetic_sizes_and_normalisation_stats():
    pool = synthetic(n_train=40, n_test=20, num_classes=4, image_size=6, channels=3)
    assert pool.train_x.shape == (40, 6, 6, 3) and pool.test_x.shape == (20, 6, 6, 3)
    assert sorted(pool.train_y.unique().tolist()) == [0, 1, 2, 3]
    pixels = pool.train_x.double().reshape(-1, 3) / 255
    assert np.allclose(pool.mean, pixels.mean(0).numpy()) and np.allclose(pool.std, pixels.std(0, unbiased=False).numpy())


def _write_folder(root, sizes=(6, 6)):
    rng = np.random.default_rng(0)
    expected = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, size=(*sizes, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / cls / f"{i}.png")
                expected[(split, cls, i)] = arr
    return expected


def test_imagefolder_decodes_exactly_and_caches(tmp_path):
    expected = _write_folder(tmp_path / "imgs")
    pool = imagefolder(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    assert pool.classes == ("cat", "dog") and pool.n_train == 6 and pool.test_y.tolist() == [0, 0, 1, 1]
    assert np.array_equal(pool.train_x[3].numpy(), expected[("train", "dog", 0)])  # PNG is lossless
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    # second load comes from the cache: same tensors even with the images made unreadable
    for f in (tmp_path / "imgs").rglob("*.png"):
        f.write_bytes(f.read_bytes())  # same content, new mtime -> different key: rebuild
    again = imagefolder(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    assert torch.equal(again.train_x, pool.train_x)


def test_imagefolder_cache_is_used_without_decoding(tmp_path, monkeypatch):
    _write_folder(tmp_path / "imgs")
    first = imagefolder(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    import al_bench.data.imagefolder as mod

    monkeypatch.setattr(mod, "_decode", lambda *a, **k: pytest.fail("decoded again despite the cache"))
    assert torch.equal(imagefolder(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache")).test_x, first.test_x)


def test_imagefolder_refuses_mixed_sizes_and_missing_splits(tmp_path):
    _write_folder(tmp_path / "imgs")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "imgs" / "train" / "cat" / "big.png")
    with pytest.raises(ConfigError, match="image_size"):
        imagefolder(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    resized = imagefolder(str(tmp_path / "imgs"), image_size=4, cache_dir=str(tmp_path / "cache"))
    assert resized.train_x.shape[1:] == (4, 4, 3)
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no test/ folder"):
        imagefolder(str(tmp_path / "half"))


def test_cifar_loader_converts_torchvisions_arrays(monkeypatch, tmp_path):
    class FakeCIFAR10:
        def __init__(self, root, train, download):
            n = 6 if train else 4
            self.data = np.full((n, 32, 32, 3), 7 if train else 9, np.uint8)
            self.targets = [i % 10 for i in range(n)]
            self.classes = [f"c{i}" for i in range(10)]

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    pool = vision.cifar10(root=str(tmp_path), download=False)
    assert pool.train_x.shape == (6, 32, 32, 3) and pool.test_x.shape == (4, 32, 32, 3)
    assert pool.num_classes == 10 and pool.test_x.unique().tolist() == [9]


def test_cifar_loader_error_when_download_fails(monkeypatch, tmp_path):
    class Offline:
        def __init__(self, root, train, download):
            raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(ConfigError, match="could not be downloaded.*dataset=imagefolder"):
        vision.cifar10(root=str(tmp_path), download=True)
