"""Optimizers, learning-rate schedules and loss scaling, registered by YAML name."""

from __future__ import annotations

from typing import Any

from neon.optimizers.optimizer import OPTIMIZERS, Optimizer
from neon.optimizers.schedules import SCHEDULES, Schedule, build_schedule
from neon.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["OPTIMIZERS", "SCHEDULES", "Optimizer", "Schedule", "build_optimizer",
           "build_schedule"]


def build_optimizer(spec: Any) -> Optimizer:
    if isinstance(spec, Optimizer):
        return spec
    return OPTIMIZERS.build(spec, where="optimizer")
