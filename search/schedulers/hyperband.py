"""Asynchronous Hyperband: several ASHA brackets with different first rungs.

Bracket ``s`` starts points at ``min_epochs * eta**s`` epochs, hedging against early
stopping that is too aggressive (Li et al., 2018). New points go to the brackets in turn
(point ``n`` to bracket ``n mod brackets``), so the assignment survives a resume.
"""

from __future__ import annotations

from search.schedulers.asha import ASHAScheduler, rung_ladder
from search.schedulers.base import SCHEDULERS, Scheduler

__all__ = ["HyperbandScheduler"]


@SCHEDULERS.register("hyperband")
class HyperbandScheduler(Scheduler):
    registry_name = "hyperband"

    def __init__(
        self, min_epochs: int = 1, max_epochs: int | None = None, reduction_factor: int = 3
    ) -> None:
        super().__init__(max_epochs)
        # validates the arguments the same way
        ASHAScheduler(min_epochs, max_epochs, reduction_factor)
        self.min_epochs = int(min_epochs)
        self.eta = int(reduction_factor)
        self.brackets: list[ASHAScheduler] = []

    def configure(self, base_epochs: int) -> None:
        super().configure(base_epochs)
        top = max(int(self.max_epochs or 1), self.min_epochs)
        self.max_epochs = top
        ladder = rung_ladder(self.min_epochs, top, self.eta)
        self.brackets = []
        for start in ladder:
            bracket = ASHAScheduler(start, top, self.eta)
            bracket.configure(top)
            self.brackets.append(bracket)

    def bracket(self, number: int) -> ASHAScheduler:
        return self.brackets[number % len(self.brackets)]

    @property
    def rungs(self) -> list[int]:
        return sorted({r for b in self.brackets for r in b.rungs})

    def first_target(self, number: int) -> int:
        return self.bracket(number).rungs[0]

    def report(self, number: int, epochs: int, value: float | None) -> None:
        self.bracket(number).report(number, epochs, value)

    def mark_promoted(self, number: int, from_epochs: int) -> None:
        self.bracket(number).mark_promoted(number, from_epochs)

    def promotion(self) -> tuple[int, int] | None:
        for bracket in self.brackets:
            found = bracket.promotion()
            if found is not None:
                return found
        return None

    def describe(self) -> str:
        starts = [b.rungs[0] for b in self.brackets]
        return f"hyperband ({len(self.brackets)} brackets starting at {starts} epochs, " \
               f"max {self.max_epochs}, reduction factor {self.eta})"
