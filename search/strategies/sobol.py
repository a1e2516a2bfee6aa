"""A resumable scrambled Sobol stream: ``(dims, seed, count)`` is its whole state."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import qmc

__all__ = ["SobolStream"]


class SobolStream:
    """Points of one seeded, scrambled Sobol sequence in [0, 1)^dims, in order."""

    def __init__(self, dims: int, seed: int, count: int = 0) -> None:
        self.dims = dims
        self.seed = seed
        self.count = 0
        self._engine = qmc.Sobol(dims, scramble=True, seed=seed) if dims else None
        self.skip(count)

    def skip(self, n: int) -> None:
        """Advance by ``n`` points without returning them."""
        if self._engine is not None and n:
            self._engine.fast_forward(n)
        self.count += n

    def draw(self, n: int) -> np.ndarray:
        """The next ``n`` points, shape ``(n, dims)``."""
        self.count += n
        if self._engine is None:
            return np.zeros((n, 0))
        with warnings.catch_warnings():
            # balance properties need powers of 2; a stream is consumed piecemeal anyway
            warnings.simplefilter("ignore", UserWarning)
            return self._engine.random(n)
