"""Schedulers decide how many epochs each point gets (multi-fidelity early stopping).

A point starts with ``first_target(number)`` epochs; when its job finishes, the controller
``report``s the objective (minimized; None if it failed) at that many epochs. Whenever a
worker is free the controller asks ``promotion()`` first: a ``(number, epochs)`` pair means
"continue this point from its checkpoint up to that many epochs". Points left below the
last rung when the sweep ends are pruned.
"""

from __future__ import annotations

from typing import Any

from neon.registry import Registry

__all__ = ["SCHEDULERS", "Scheduler", "build_scheduler"]

SCHEDULERS: Registry[Scheduler] = Registry("scheduler")


class Scheduler:
    registry_name = "scheduler"

    def __init__(self, max_epochs: int | None = None) -> None:
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.max_epochs = max_epochs

    def configure(self, base_epochs: int) -> None:
        """Take the model's ``training.epochs`` as ``max_epochs`` unless one was given."""
        if self.max_epochs is None:
            self.max_epochs = int(base_epochs)

    @property
    def rungs(self) -> list[int]:
        return [int(self.max_epochs or 1)]

    def first_target(self, number: int) -> int:
        return self.rungs[0]

    def report(self, number: int, epochs: int, value: float | None) -> None:
        pass

    def mark_promoted(self, number: int, from_epochs: int) -> None:
        """Resume: this point had already been promoted beyond ``from_epochs``."""

    def promotion(self) -> tuple[int, int] | None:
        return None

    def describe(self) -> str:
        return f"{self.registry_name} (epochs {self.rungs})"


def build_scheduler(spec: Any, base_epochs: int) -> Scheduler:
    if isinstance(spec, Scheduler):
        scheduler = spec
    else:
        scheduler = SCHEDULERS.build(spec, where="search.scheduler")
    scheduler.configure(base_epochs)
    return scheduler
