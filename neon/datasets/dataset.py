"""Dataset registry and shared helpers (splits, standardization)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neon.datasets.iterator import ArrayIterator, Data
from neon.registry import Registry

__all__ = ["DATASETS", "data_dir", "make_data", "split", "standardize"]

DATASETS: Registry = Registry("dataset", key="name")


def data_dir(subdir: str) -> Path:
    """``$NEON_DATA_DIR/<subdir>`` (default ``~/.neon/data/<subdir>``)."""
    root = os.environ.get("NEON_DATA_DIR") or os.path.join("~", ".neon", "data")
    return Path(root).expanduser() / subdir


def split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic shuffled train/validation split; ``fraction`` goes to validation."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    nvalid = round(fraction * len(x))
    va, tr = order[:nvalid], order[nvalid:]
    return x[tr], y[tr], x[va], y[va]


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Zero mean, unit variance per feature using the training statistics only."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def make_data(
    name: str,
    xtrain: np.ndarray,
    ytrain: np.ndarray,
    xvalid: np.ndarray | None,
    yvalid: np.ndarray | None,
    batch_size: int,
    seed: int,
    nclass: int | None,
    **info: object,
) -> Data:
    train = ArrayIterator(xtrain, ytrain, batch_size, shuffle=True, seed=seed, nclass=nclass,
                          name="train")
    valid = None
    if xvalid is not None and len(xvalid):
        valid = ArrayIterator(xvalid, yvalid, batch_size, shuffle=False, nclass=nclass,
                              name="valid")
    return Data(name=name, train=train, valid=valid, nclass=nclass, info=dict(info))
