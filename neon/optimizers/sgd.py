"""Stochastic gradient descent with optional (Nesterov) momentum."""

from __future__ import annotations

from typing import Any

from neon.layers.layer import GradientFold, Param
from neon.optimizers.optimizer import OPTIMIZERS, Optimizer

__all__ = ["SGD", "Momentum", "Nesterov"]


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """``v = momentum * v - lr * g``; ``W += v`` (Nesterov: ``W += momentum * v - lr * g``)."""

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        schedule: str | dict | None = None,
        weight_decay: float = 0.0,
        gradient_clip_value: float | None = None,
        gradient_clip_norm: float | None = None,
    ) -> None:
        super().__init__(learning_rate, schedule, weight_decay, gradient_clip_value,
                         gradient_clip_norm)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slots = ("velocity",) if self.momentum else ()

    def fused_step(self, be: Any, p: Param, grad_scale: float) -> bool:
        if self.clips:
            return False
        v = self.state(be, p, "velocity") if self.momentum else None
        be.sgd_update(p.primary, p.grad, v, self.lr, self.momentum, self.nesterov,
                      1.0 / grad_scale, self.weight_decay if p.decay else 0.0,
                      None if p.master is None else p.value)
        return True

    def fold_updates(self, params: list[Param], be: Any) -> None:
        """Momentum without Nesterov or clipping, with gradients, velocity and the stepped
        weights at full precision: the gradient GEMM (or an affine layer's bias epilogue)
        computes ``v = momentum * v - lr * g`` itself (its alpha and beta), so the gradient
        is never stored and the step is one pass ``w += v`` (the benchmark MLP trained
        1.03-1.06x faster with the weights folded)."""
        storage = be.storage
        if (not self.momentum or self.nesterov or self.clips or not be.folds_updates
                or any(storage.of(c).emulated
                       for c in ("gradients", "optimizer_state", "master_weights"))):
            return
        for p in params:
            p.fold = GradientFold(self.state(be, p, "velocity"), -self.lr, self.momentum)

    def finish_fold(self, be: Any, p: Param) -> None:
        decay = self.lr * self.weight_decay if p.decay else 0.0
        be.momentum_finish(p.primary, p.state["velocity"], decay)

    def update(self, be: Any, p: Param, g: Any, lr: float) -> None:
        g *= lr
        w = p.primary
        if not self.momentum:
            w -= g
            return
        v = p.state["velocity"]
        v *= self.momentum
        v -= g
        if self.nesterov:
            w += self.momentum * v
            w -= g
        else:
            w += v


@OPTIMIZERS.register("momentum")
class Momentum(SGD):
    """SGD with momentum (default 0.9)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.9, **kwargs: Any) -> None:
        super().__init__(learning_rate, momentum=momentum, **kwargs)


@OPTIMIZERS.register("nesterov")
class Nesterov(SGD):
    """SGD with Nesterov momentum (default 0.9)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.9, **kwargs: Any) -> None:
        super().__init__(learning_rate, momentum=momentum, nesterov=True, **kwargs)
