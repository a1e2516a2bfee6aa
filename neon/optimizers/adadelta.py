"""Adadelta (Zeiler 2012)."""

from __future__ import annotations

from typing import Any

from neon.layers.layer import Param
from neon.optimizers.optimizer import OPTIMIZERS, Optimizer

__all__ = ["Adadelta"]


@OPTIMIZERS.register("adadelta")
class Adadelta(Optimizer):
    """Step ``-sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g``, scaled by ``learning_rate``."""

    slots = ("mean_square_grad", "mean_square_step")

    def __init__(
        self,
        learning_rate: float = 1.0,
        decay: float = 0.95,
        epsilon: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.epsilon = float(epsilon)

    def update(self, be: Any, p: Param, g: Any, lr: float) -> None:
        xp = be.xp
        eg2, edx2 = p.state["mean_square_grad"], p.state["mean_square_step"]
        rho, eps = self.decay, self.epsilon
        eg2 *= rho
        eg2 += (1.0 - rho) * g * g
        step = -xp.sqrt(edx2 + eps) / xp.sqrt(eg2 + eps) * g
        edx2 *= rho
        edx2 += (1.0 - rho) * step * step
        w = p.primary
        w += lr * step
