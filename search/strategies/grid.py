"""Grid search: every combination of choice options and ``grid_points`` values per
numeric dimension, in a stable order (the first dimension varies slowest)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from search.space import Dimension, Point, SearchSpace
from search.strategies import STRATEGIES
from search.strategies.base import Strategy

__all__ = ["GridSearch"]


@STRATEGIES.register("grid")
class GridSearch(Strategy):
    """Conditional dimensions are only crossed with the option that activates them."""

    def __init__(self, space: SearchSpace, seed: int = 0, grid_points: int = 5) -> None:
        super().__init__(space, seed)
        if grid_points < 1:
            raise ValueError(f"grid_points must be >= 1, got {grid_points}")
        self.grid_points = grid_points
        self._values = {d.name: d.grid(grid_points) for d in self.space}
        self.size = self._count(self.space.roots)
        self._position = 0
        self._iterator: Iterator[Point] | None = None

    def _inner(self, dim: Dimension, value: Any) -> list[Dimension]:
        if dim.kind != "categorical":
            return []
        return self.space.children(dim.name, dim.index_of(value))

    def _count(self, dims: list[Dimension]) -> int:
        return math.prod(
            sum(self._count(self._inner(d, v)) for v in self._values[d.name]) for d in dims
        )

    def _enumerate(self, dims: list[Dimension]) -> Iterator[Point]:
        if not dims:
            yield {}
            return
        first, rest = dims[0], dims[1:]
        for value in self._values[first.name]:
            for tail in self._enumerate(self._inner(first, value) + rest):
                yield {first.name: value, **tail}

    @property
    def exhausted(self) -> bool:
        return self._position >= self.size

    def _suggest(self, n: int) -> list[Point]:
        if self._iterator is None:
            self._iterator = itertools.islice(
                self._enumerate(self.space.roots), self._position, None
            )
        points = list(itertools.islice(self._iterator, n))
        self._position += len(points)
        return points

    def _extra_state(self) -> dict[str, Any]:
        return {"position": self._position}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._position = int(extra["position"])
        self._iterator = None
