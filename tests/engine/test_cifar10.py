"""CIFAR-10 binary batches: round trips on small files written here, augmentation, errors."""

from __future__ import annotations

import numpy as np
import pytest

from neon.datasets import load_dataset
from neon.datasets.cifar10 import CIFAR10_FILES, read_cifar10_bin
from neon.errors import DatasetError


def write_cifar(folder, n=6, seed=0):
    """The six binary files with n records each; returns {file: (images, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in CIFAR10_FILES:
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        written[name] = (images, labels)
    return written


def test_read_binary_batch_layout(tmp_path):
    written = write_cifar(tmp_path)
    images, labels = read_cifar10_bin(tmp_path / "data_batch_3.bin")
    np.testing.assert_array_equal(images, written["data_batch_3.bin"][0])
    np.testing.assert_array_equal(labels, written["data_batch_3.bin"][1])
    # byte 1 + c*1024 + h*32 + w of a record is pixel (c, h, w): red plane first, row-major
    raw = (tmp_path / "data_batch_3.bin").read_bytes()
    assert images[1, 2, 5, 7] == raw[3073 + 1 + 2 * 1024 + 5 * 32 + 7]
    assert images.dtype == np.uint8 and labels.dtype == np.int64


def test_loader_from_path_env_and_subfolder(tmp_path, monkeypatch):
    written = write_cifar(tmp_path / "a")
    data = load_dataset({"name": "cifar10", "path": str(tmp_path / "a"), "normalize": False,
                         "batch_size": 4})
    assert data.shape == (3, 32, 32) and data.nclass == 10
    assert data.train.ndata == 30 and data.valid.ndata == 6
    np.testing.assert_array_equal(data.train.x[6:12] * 255,
                                  written["data_batch_2.bin"][0].astype(np.float32))
    np.testing.assert_array_equal(data.valid.y, written["test_batch.bin"][1])
    sub = tmp_path / "root" / "cifar10" / "cifar-10-batches-bin"
    write_cifar(sub)
    monkeypatch.setenv("NEON_DATA_DIR", str(tmp_path / "root"))
    data = load_dataset({"name": "cifar10", "max_train": 10, "max_valid": 3})
    assert (data.train.ndata, data.valid.ndata) == (10, 3)
    x = data.train.x
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-4)


def test_augmentation_is_crop_and_flip_and_seeded(tmp_path):
    write_cifar(tmp_path, n=4)
    spec = {"name": "cifar10", "path": str(tmp_path), "normalize": False, "augment": True,
            "batch_size": 8, "seed": 3}
    train = load_dataset(spec).train
    train.set_epoch(0)
    epoch0 = [(x.copy(), y.copy()) for x, y in train]
    assert [x.shape for x, _ in epoch0] == [(8, 3, 32, 32)] * 2 + [(4, 3, 32, 32)]
    again = [(x, y) for x, y in load_dataset(spec).train]
    for (a, ya), (b, yb) in zip(epoch0, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    train.set_epoch(1)
    assert not np.array_equal(next(iter(train))[0], epoch0[0][0])
    # every augmented image is a window of the zero-padded original, maybe mirrored
    train.set_epoch(0)
    originals = train.x[train.order()]
    padded = np.pad(originals, ((0, 0), (0, 0), (4, 4), (4, 4)))
    augmented = np.concatenate([x for x, _ in epoch0])
    for img, pad in zip(augmented, padded):
        found = any(np.array_equal(img, cand) or np.array_equal(img, cand[:, :, ::-1])
                    for oy in range(9) for ox in range(9)
                    for cand in [pad[:, oy:oy + 32, ox:ox + 32]])
        assert found


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset({"name": "cifar10", "path": str(tmp_path)})
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "data_batch_1.bin" in msg
    assert "test_batch.bin" in msg and "never downloaded" in msg
    write_cifar(tmp_path)
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="multiple of the 3073-byte record"):
        load_dataset({"name": "cifar10", "path": str(tmp_path)})
    (tmp_path / "data_batch_1.bin").write_bytes(bytes([42]) + b"\x00" * 3072)
    with pytest.raises(DatasetError, match="label 42"):
        load_dataset({"name": "cifar10", "path": str(tmp_path)})
