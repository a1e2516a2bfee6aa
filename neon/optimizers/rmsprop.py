"""RMSProp (Tieleman & Hinton 2012), neon's defaults."""

from __future__ import annotations

from typing import Any

from neon.layers.layer import Param
from neon.optimizers.optimizer import OPTIMIZERS, Optimizer

__all__ = ["RMSProp"]


@OPTIMIZERS.register("rmsprop")
class RMSProp(Optimizer):
    """``s = rho * s + (1 - rho) * g^2``; ``W -= lr * g / (sqrt(s) + epsilon)``."""

    slots = ("mean_square",)

    def __init__(
        self,
        learning_rate: float = 0.002,
        decay_rate: float = 0.95,
        epsilon: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= decay_rate < 1.0:
            raise ValueError(f"decay_rate must be in [0, 1), got {decay_rate}")
        self.decay_rate = float(decay_rate)
        self.epsilon = float(epsilon)

    def update(self, be: Any, p: Param, g: Any, lr: float) -> None:
        xp = be.xp
        s = p.state["mean_square"]
        s *= self.decay_rate
        s += (1.0 - self.decay_rate) * g * g
        w = p.primary
        w -= lr * g / (xp.sqrt(s) + self.epsilon)
