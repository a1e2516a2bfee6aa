"""Datasets by YAML name (``dataset: {name: digits, ...}``), read from local files only."""

from __future__ import annotations

from typing import Any

from neon.datasets.dataset import DATASETS
from neon.datasets.iterator import ArrayIterator, Data
from neon.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["DATASETS", "ArrayIterator", "Data", "load_dataset"]


def load_dataset(spec: Any, seed: int = 0) -> Data:
    """Load a dataset from ``{name: ..., options}``; ``seed`` shuffles training batches."""
    return DATASETS.build(spec, where="dataset", seed=seed)
