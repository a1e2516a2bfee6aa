"""Random search: a seeded scrambled Sobol sequence mapped through the space's encoding."""

from __future__ import annotations

from typing import Any

from search.space import Point, SearchSpace
from search.strategies import STRATEGIES
from search.strategies.base import Strategy
from search.strategies.sobol import SobolStream

__all__ = ["RandomSearch"]


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    """Quasi-random points (low-discrepancy: covers the space more evenly than i.i.d.)."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self._sobol = SobolStream(len(self.space), self.seed)

    def _suggest(self, n: int) -> list[Point]:
        return [self.space.from_unit(u) for u in self._sobol.draw(n)]

    def _extra_state(self) -> dict[str, Any]:
        return {"sobol_count": self._sobol.count}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._sobol = SobolStream(len(self.space), self.seed, extra["sobol_count"])
