"""MNIST-format idx files (raw or .gz): MNIST and Fashion-MNIST, read from local files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from neon.datasets.dataset import DATASETS, data_dir, make_data
from neon.datasets.iterator import Data
from neon.errors import DatasetError

__all__ = ["IDX_FILES", "fashion_mnist", "mnist", "read_idx"]

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse one idx file (gzip detected by its magic bytes) into an array."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetError("not an idx file (bad magic number)", file=str(path))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"truncated or corrupt idx file: {len(raw) - header} data bytes, "
            f"header promises {expected}",
            file=str(path),
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(
        dtype.newbyteorder("="), copy=True)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_folder(folder: Path, what: str) -> dict[str, np.ndarray]:
    """The four MNIST-layout arrays from ``folder``, or one line saying what is missing."""
    found = {key: _find(folder, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise DatasetError(
            f"{what} not found in {folder}: missing {', '.join(missing)} (raw or .gz); "
            "it is never downloaded, put the files there or set 'path:'"
        )
    return {key: read_idx(p) for key, p in found.items()}


def _idx_dataset(
    name: str, folder: Path, batch_size: int, seed: int, max_train: int | None,
    max_valid: int | None, flatten: bool,
) -> Data:
    arrays = load_idx_folder(folder, name)
    xtr = arrays["train_images"].astype(np.float32) / 255.0
    xva = arrays["test_images"].astype(np.float32) / 255.0
    ytr = arrays["train_labels"].astype(np.int64)
    yva = arrays["test_labels"].astype(np.int64)
    if max_train:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
    if max_valid:
        xva, yva = xva[:max_valid], yva[:max_valid]
    if flatten:
        xtr, xva = xtr.reshape(len(xtr), -1), xva.reshape(len(xva), -1)
    else:
        xtr, xva = xtr[:, None], xva[:, None]
    return make_data(name, xtr, ytr, xva, yva, batch_size, seed, nclass=10, path=str(folder))


@DATASETS.register("mnist")
def mnist(
    path: str | None = None,
    batch_size: int = 128,
    seed: int = 0,
    max_train: int | None = None,
    max_valid: int | None = None,
    flatten: bool = True,
) -> Data:
    """MNIST from the four idx files in ``path`` (default ``$NEON_DATA_DIR/mnist``)."""
    folder = Path(path).expanduser() if path else data_dir("mnist")
    return _idx_dataset("mnist", folder, batch_size, seed, max_train, max_valid, flatten)


@DATASETS.register("fashion_mnist", "fashion-mnist")
def fashion_mnist(
    path: str | None = None,
    batch_size: int = 128,
    seed: int = 0,
    max_train: int | None = None,
    max_valid: int | None = None,
    flatten: bool = True,
) -> Data:
    """Fashion-MNIST (Debian's dataset-fashion-mnist installs it in /usr/share/datasets)."""
    folder = Path(path).expanduser() if path else Path(FASHION_MNIST_DIR)
    return _idx_dataset("fashion_mnist", folder, batch_size, seed, max_train, max_valid, flatten)
