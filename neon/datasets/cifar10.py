"""CIFAR-10 from its binary release (``cifar-10-binary.tar.gz``), read from local files only.

Each ``.bin`` file is a sequence of 3073-byte records: one label byte (0-9), then the
32x32 red, green and blue planes (row-major), i.e. exactly CHW uint8. Python pickles of
the other release are never read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from neon.datasets.dataset import DATASETS, data_dir, make_data
from neon.datasets.iterator import ArrayIterator, Data
from neon.datasets.macrobatch import crop_flip
from neon.errors import DatasetError

__all__ = ["CIFAR10_CLASSES", "CIFAR10_FILES", "cifar10", "read_cifar10_bin"]

CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
_RECORD = 1 + 3 * 32 * 32


def read_cifar10_bin(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file -> (images uint8 (n, 3, 32, 32), labels int64 (n,))."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise DatasetError(f"not a CIFAR-10 binary batch: {raw.size} bytes is not a multiple "
                           f"of the {_RECORD}-byte record", file=str(path))
    records = raw.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetError(f"not a CIFAR-10 binary batch: label {labels.max()} > 9 "
                           "(CIFAR-100's files have two label bytes)", file=str(path))
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _folder(path: str | None) -> Path:
    base = Path(path).expanduser() if path else data_dir("cifar10")
    for candidate in (base, base / "cifar-10-batches-bin"):
        if all((candidate / f).is_file() for f in CIFAR10_FILES):
            return candidate
    missing = [f for f in CIFAR10_FILES if not (base / f).is_file()]
    raise DatasetError(
        f"cifar10 not found in {base}: missing {', '.join(missing)} (the binary version, "
        "cifar-10-binary.tar.gz, extracted there or in its cifar-10-batches-bin/ folder); "
        "it is never downloaded, put the files there or set 'path:'")


class _PadCropFlip(ArrayIterator):
    """Training batches with the standard CIFAR augmentation: zero-pad by ``pad``, take a
    random 32x32 window and flip half of the images, drawn from ``(seed, epoch)``."""

    def __init__(self, *args: object, pad: int = 4, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pad = pad

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch, 11])
        p = self.pad
        for xb, yb in super().__iter__():
            padded = np.pad(xb, ((0, 0), (0, 0), (p, p), (p, p)))
            yield np.ascontiguousarray(crop_flip(padded, xb.shape[-1], rng)), yb


@DATASETS.register("cifar10", "cifar-10")
def cifar10(
    path: str | None = None,
    batch_size: int = 128,
    seed: int = 0,
    max_train: int | None = None,
    max_valid: int | None = None,
    normalize: bool = True,
    augment: bool = False,
) -> Data:
    """CIFAR-10 from ``path`` (default ``$NEON_DATA_DIR/cifar10``): 50000 training images
    (data_batch_1..5.bin) and the 10000 test images (test_batch.bin) for validation.

    ``normalize``: per-channel mean and standard deviation of the training images (else
    /255). ``augment``: pad by 4, random 32x32 crops and horizontal flips for training.
    """
    folder = _folder(path)
    parts = [read_cifar10_bin(folder / f) for f in CIFAR10_FILES[:5]]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xva, yva = read_cifar10_bin(folder / "test_batch.bin")
    if max_train:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
    if max_valid:
        xva, yva = xva[:max_valid], yva[:max_valid]
    xtr = xtr.astype(np.float32) / 255.0
    xva = xva.astype(np.float32) / 255.0
    if normalize:
        mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
        std = xtr.std(axis=(0, 2, 3), keepdims=True)
        xtr = (xtr - mean) / std
        xva = (xva - mean) / std
    data = make_data("cifar10", xtr, ytr, xva, yva, batch_size, seed, nclass=10,
                     path=str(folder), classes=CIFAR10_CLASSES)
    if augment:
        data.train = _PadCropFlip(xtr, ytr, batch_size, shuffle=True, seed=seed, nclass=10,
                                  name="train")
    return data
