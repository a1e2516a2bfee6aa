"""Points <-> GP inputs: a unit coordinate per numeric dimension, one-hot per choice.

Numeric coordinates of discrete dimensions sit at their bin centres (so integers are
"rounded" before the GP sees them); inactive numeric dimensions sit at 0.5 and inactive
choices are all-zero.  Works on whole arrays of unit-cube vectors at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.space import INACTIVE, Point, SearchSpace

__all__ = ["Encoder"]


class Encoder:
    """The encoding of one SearchSpace (``width`` columns)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.spans: list[tuple[int, int]] = []  # (first column, number of columns) per dim
        start = 0
        for dim in space:
            width = len(dim.options) if dim.kind == "categorical" else 1
            self.spans.append((start, width))
            start += width
        self.width = start
        self.numeric = np.zeros(self.width, dtype=bool)
        for dim, (col, _) in zip(space, self.spans):
            self.numeric[col] = dim.kind != "categorical"

    def encode_units(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GP inputs of unit-cube rows ``units`` (m, dims), and the mask (m, width) of the
        numeric columns that are active (the ones an optimizer may move)."""
        m = len(units)
        z = np.zeros((m, self.width))
        free = np.zeros((m, self.width), dtype=bool)
        active: dict[str, np.ndarray] = {}
        chosen: dict[str, np.ndarray] = {}
        for j, (dim, (col, _)) in enumerate(zip(self.space, self.spans)):
            if dim.condition is None:
                act = np.ones(m, dtype=bool)
            else:
                parent, option = dim.condition
                act = active[parent] & (chosen[parent] == option)
            active[dim.name] = act
            u = np.clip(units[:, j], 0.0, 1.0)
            size = dim.size
            if dim.kind == "categorical":
                index = np.minimum((u * size).astype(int), size - 1)
                chosen[dim.name] = index
                rows = np.flatnonzero(act)
                z[rows, col + index[rows]] = 1.0
            else:
                if size is not None:
                    u = (np.minimum((u * size).astype(int), size - 1) + 0.5) / size
                z[:, col] = np.where(act, u, INACTIVE)
                free[:, col] = act
        return z, free

    def encode_points(self, points: Sequence[Point]) -> np.ndarray:
        """GP inputs of points, shape (len(points), width)."""
        if not points:
            return np.zeros((0, self.width))
        return self.encode_units(np.array([self.space.to_unit(p) for p in points]))[0]

    def units_of(self, z: np.ndarray) -> np.ndarray:
        """Unit-cube rows of GP inputs (a choice's coordinate from its largest column)."""
        units = np.empty((len(z), len(self.spans)))
        for j, (dim, (col, width)) in enumerate(zip(self.space, self.spans)):
            if dim.kind == "categorical":
                units[:, j] = (np.argmax(z[:, col : col + width], axis=1) + 0.5) / width
            else:
                units[:, j] = np.clip(z[:, col], 0.0, 1.0)
        return units
