"""ASHA: asynchronous successive halving (Li et al., 2018, arXiv:1810.05934).

Rungs at ``min_epochs * eta**k`` epochs up to ``max_epochs``. When a worker frees up, the
best not-yet-promoted point among the top ``1/eta`` of a rung (highest rung first) goes
on to the next rung from its checkpoint; otherwise a new point starts at the bottom rung.
"""

from __future__ import annotations

import math

from search.schedulers.base import SCHEDULERS, Scheduler

__all__ = ["ASHAScheduler", "rung_ladder"]


def rung_ladder(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """``[min, min*eta, ...]`` below ``max``, then ``max``."""
    rungs = []
    r = min_epochs
    while r < max_epochs:
        rungs.append(int(r))
        r *= eta
    rungs.append(int(max_epochs))
    return rungs


@SCHEDULERS.register("asha")
class ASHAScheduler(Scheduler):
    registry_name = "asha"

    def __init__(
        self, min_epochs: int = 1, max_epochs: int | None = None, reduction_factor: int = 3
    ) -> None:
        super().__init__(max_epochs)
        if min_epochs < 1:
            raise ValueError(f"min_epochs must be >= 1, got {min_epochs}")
        if reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {reduction_factor}")
        if max_epochs is not None and max_epochs < min_epochs:
            raise ValueError(f"max_epochs ({max_epochs}) < min_epochs ({min_epochs})")
        self.min_epochs = int(min_epochs)
        self.eta = int(reduction_factor)
        self.results: dict[int, dict[int, float | None]] = {}  # rung epochs -> number -> value
        self.promoted: dict[int, set[int]] = {}

    def configure(self, base_epochs: int) -> None:
        super().configure(base_epochs)
        self.max_epochs = max(self.max_epochs or 1, self.min_epochs)

    @property
    def rungs(self) -> list[int]:
        return rung_ladder(self.min_epochs, int(self.max_epochs or self.min_epochs), self.eta)

    def report(self, number: int, epochs: int, value: float | None) -> None:
        self.results.setdefault(int(epochs), {})[number] = value

    def mark_promoted(self, number: int, from_epochs: int) -> None:
        self.promoted.setdefault(int(from_epochs), set()).add(number)

    def promotion(self) -> tuple[int, int] | None:
        rungs = self.rungs
        for k in range(len(rungs) - 2, -1, -1):
            rung = rungs[k]
            done = {n: v for n, v in self.results.get(rung, {}).items() if v is not None}
            top = math.floor(len(self.results.get(rung, {})) / self.eta)
            if top < 1:
                continue
            best = sorted(done, key=lambda n: (done[n], n))[:top]
            taken = self.promoted.setdefault(rung, set())
            for number in best:
                if number not in taken:
                    taken.add(number)
                    return number, rungs[k + 1]
        return None

    def describe(self) -> str:
        return f"asha (rungs {self.rungs}, reduction factor {self.eta})"
