"""Minibatch iteration over host arrays, with per-epoch shuffling by seed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ArrayIterator", "Data"]


class ArrayIterator:
    """Yields ``(x, y)`` minibatches of host arrays; the last batch may be smaller.

    With ``shuffle``, epoch ``e``'s order is a permutation drawn from ``(seed, e)``: the same
    whether training ran without a break or resumed from a checkpoint at epoch ``e``.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int = 0,
        nclass: int | None = None,
        name: str = "train",
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"{name}: {len(x)} inputs but {len(y)} targets")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = np.ascontiguousarray(y)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.nclass = nclass
        self.name = name
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def ndata(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.x.shape[1:])

    @property
    def nbatches(self) -> int:
        full, rest = divmod(self.ndata, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __len__(self) -> int:
        return self.nbatches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray | None:
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.ndata)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        idx = self.order()
        for b in range(self.nbatches):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.ndata)
            if idx is None:
                yield self.x[lo:hi], self.y[lo:hi]
            else:
                sel = idx[lo:hi]
                yield self.x[sel], self.y[sel]


@dataclass
class Data:
    """What a dataset loader returns: iterators plus what the model needs to know."""

    name: str
    train: ArrayIterator
    valid: ArrayIterator | None
    nclass: int | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.train.shape
