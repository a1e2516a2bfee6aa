"""Adam (Kingma & Ba 2015) with bias correction."""

from __future__ import annotations

import math
from typing import Any

from neon.layers.layer import Param
from neon.optimizers.optimizer import OPTIMIZERS, Optimizer

__all__ = ["Adam"]


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """``m, v`` moment estimates; ``W -= lr_t * m / (sqrt(v) + epsilon)``."""

    slots = ("m", "v")

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{label} must be in [0, 1), got {beta}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update(self, be: Any, p: Param, g: Any, lr: float) -> None:
        xp = be.xp
        m, v = p.state["m"], p.state["v"]
        m *= self.beta_1
        m += (1.0 - self.beta_1) * g
        v *= self.beta_2
        v += (1.0 - self.beta_2) * g * g
        t = self.steps
        lr_t = lr * math.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)
        w = p.primary
        w -= lr_t * m / (xp.sqrt(v) + self.epsilon)
