"""Learning-rate schedules: ``schedule(base_lr, epoch) -> lr`` with 0-based epochs."""

from __future__ import annotations

import bisect
from typing import Any

from neon.registry import Registry

__all__ = ["SCHEDULES", "Constant", "Exponential", "Schedule", "Step", "build_schedule"]

SCHEDULES: Registry[Schedule] = Registry("schedule")


class Schedule:
    registry_name = "schedule"

    def __call__(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError


@SCHEDULES.register("constant")
class Constant(Schedule):
    def __call__(self, base_lr: float, epoch: int) -> float:
        return base_lr


@SCHEDULES.register("step")
class Step(Schedule):
    """Multiply by ``ratio`` every ``step_epochs`` epochs, or at each epoch in ``epochs``."""

    def __init__(
        self,
        step_epochs: int | None = None,
        epochs: list | None = None,
        ratio: float = 0.1,
    ) -> None:
        if (step_epochs is None) == (epochs is None):
            raise ValueError("give exactly one of 'step_epochs' or 'epochs'")
        if step_epochs is not None and step_epochs < 1:
            raise ValueError(f"step_epochs must be >= 1, got {step_epochs}")
        if ratio <= 0:
            raise ValueError(f"ratio must be > 0, got {ratio}")
        self.step_epochs = step_epochs
        self.epochs = sorted(int(e) for e in epochs) if epochs is not None else None
        self.ratio = float(ratio)

    def __call__(self, base_lr: float, epoch: int) -> float:
        if self.step_epochs is not None:
            steps = epoch // self.step_epochs
        else:
            steps = bisect.bisect_right(self.epochs, epoch)
        return base_lr * self.ratio**steps


@SCHEDULES.register("exponential")
class Exponential(Schedule):
    """``lr * decay ** epoch``."""

    def __init__(self, decay: float = 0.95) -> None:
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = float(decay)

    def __call__(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.decay**epoch


def build_schedule(spec: Any) -> Schedule:
    if isinstance(spec, Schedule):
        return spec
    if spec is None:
        return Constant()
    return SCHEDULES.build(spec, where="optimizer.schedule")
