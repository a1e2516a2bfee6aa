"""Datasets: idx parsing on files written here, missing files, digits split, iteration."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from neon.datasets import ArrayIterator, load_dataset
from neon.datasets.idx import FASHION_MNIST_DIR, IDX_FILES, read_idx
from neon.errors import DatasetError


def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(
        struct.pack(">I", d) for d in arr.shape)
    data = header + arr.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    write_idx(tmp_path / "a", imgs, compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), imgs)
    ints = rng.integers(-1000, 1000, 7).astype(">i4")
    write_idx(tmp_path / "b", ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), ints.astype(np.int32))
    floats = rng.standard_normal((2, 2)).astype(">f4")
    write_idx(tmp_path / "c", floats)
    np.testing.assert_array_equal(read_idx(tmp_path / "c"), floats.astype(np.float32))


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 4), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(tmp_path / "short")


def make_mnist(folder: Path, n_train=20, n_test=10, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        write_idx(folder / (IDX_FILES[f"{split}_images"] + (".gz" if compress else "")),
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), compress)
        write_idx(folder / IDX_FILES[f"{split}_labels"],
                  rng.integers(0, 10, n).astype(np.uint8))


def test_mnist_loader_from_path_and_env(tmp_path, monkeypatch):
    make_mnist(tmp_path / "m")
    data = load_dataset({"name": "mnist", "path": str(tmp_path / "m"), "batch_size": 8})
    assert data.shape == (784,) and data.train.ndata == 20 and data.valid.ndata == 10
    assert data.train.x.min() >= 0.0 and data.train.x.max() <= 1.0
    monkeypatch.setenv("NEON_DATA_DIR", str(tmp_path))
    make_mnist(tmp_path / "mnist", compress=False)
    data = load_dataset({"name": "mnist", "flatten": False})
    assert data.shape == (1, 28, 28)


def test_missing_mnist_says_where_and_what(tmp_path, monkeypatch):
    monkeypatch.setenv("NEON_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        load_dataset({"name": "mnist"})
    msg = str(err.value)
    assert str(tmp_path / "mnist") in msg and "train-images-idx3-ubyte" in msg
    assert "never downloaded" in msg and "\n" not in msg


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR) and os.environ.get("CI") != "true",
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files():
    data = load_dataset({"name": "fashion_mnist", "max_train": 2000})
    assert data.train.ndata == 2000 and data.valid.ndata == 10000
    assert data.shape == (784,) and set(np.unique(data.valid.y)) == set(range(10))


def test_digits_split_is_deterministic_and_standardized():
    a = load_dataset({"name": "digits"})
    b = load_dataset({"name": "digits"}, seed=5)
    np.testing.assert_array_equal(a.valid.x, b.valid.x)
    assert a.train.ndata + a.valid.ndata == 1797
    assert abs(a.train.x.mean()) < 1e-5
    c = load_dataset({"name": "digits", "split_seed": 1})
    assert not np.array_equal(a.valid.y, c.valid.y)
    img = load_dataset({"name": "digits", "image": True})
    assert img.shape == (1, 8, 8)


def test_synthetic_any_shape():
    d = load_dataset({"name": "synthetic", "shape": [3, 8, 8], "nclass": 4, "ntrain": 50,
                      "nvalid": 10, "batch_size": 16})
    assert d.shape == (3, 8, 8) and d.nclass == 4
    assert d.train.y.max() < 4 and len(d.train) == 4


def test_iterator_shuffles_by_seed_and_epoch():
    x = np.arange(10, dtype=np.float32)[:, None]
    it = ArrayIterator(x, np.arange(10), batch_size=4, shuffle=True, seed=3)
    first = np.concatenate([b for b, _ in it])[:, 0]
    assert sorted(first) == list(range(10)) and [len(b) for b, _ in it] == [4, 4, 2]
    again = np.concatenate([b for b, _ in it])[:, 0]
    np.testing.assert_array_equal(first, again)
    it.set_epoch(1)
    assert not np.array_equal(first, np.concatenate([b for b, _ in it])[:, 0])
    plain = ArrayIterator(x, np.arange(10), batch_size=4)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in plain])[:, 0], np.arange(10))
