"""Costs: mean over the rows of a batch (all axes but the last are rows).

``fprop`` gives the scalar cost; ``bprop`` the gradient with respect to the output ``y``.
Where the output activation cancels against the cost (softmax with cross-entropy, logistic
with binary cross-entropy), ``shortcut`` names it and ``bprop_shortcut`` gives the gradient
with respect to the pre-activation directly: simpler and numerically safer.
"""

from __future__ import annotations

from typing import Any

from neon.registry import Registry

__all__ = [
    "COSTS",
    "Cost",
    "CrossEntropyBinary",
    "CrossEntropyMulti",
    "MeanSquared",
    "SumSquared",
    "build_cost",
]

COSTS: Registry[Cost] = Registry("cost")

_EPS = 1e-12


def _rows(y: Any) -> int:
    return int(y.size // y.shape[-1]) if y.ndim > 1 else int(y.size)


class Cost:
    """Base class of costs."""

    registry_name = "cost"
    shortcut: str | None = None  # activation name the cost's gradient folds into
    needs_onehot = True  # integer labels are turned into one-hot targets

    def fprop(self, be: Any, y: Any, t: Any) -> float:
        raise NotImplementedError

    def bprop(self, be: Any, y: Any, t: Any, out: Any, scale: float = 1.0) -> Any:
        raise NotImplementedError

    def bprop_shortcut(self, be: Any, y: Any, t: Any, out: Any, scale: float = 1.0) -> Any:
        """Gradient w.r.t. the pre-activation of the ``shortcut`` activation: (y - t) / rows."""
        xp = be.xp
        xp.subtract(y, t, out=out)
        return xp.multiply(out, scale / _rows(y), out=out)

    def __repr__(self) -> str:
        return self.registry_name


@COSTS.register("cross_entropy", "cross_entropy_multi")
class CrossEntropyMulti(Cost):
    """-sum_k t_k log y_k, for softmax outputs and one-hot (or soft) targets."""

    shortcut = "softmax"

    def fprop(self, be: Any, y: Any, t: Any) -> float:
        return be.cross_entropy(y, t, _EPS) / _rows(y)

    def bprop(self, be: Any, y: Any, t: Any, out: Any, scale: float = 1.0) -> Any:
        xp = be.xp
        xp.divide(t, xp.maximum(y, _EPS), out=out)
        return xp.multiply(out, -scale / _rows(y), out=out)


@COSTS.register("cross_entropy_binary", "binary_cross_entropy")
class CrossEntropyBinary(Cost):
    """-sum t log y + (1 - t) log(1 - y), for logistic outputs and 0/1 targets."""

    shortcut = "logistic"
    needs_onehot = False

    def fprop(self, be: Any, y: Any, t: Any) -> float:
        xp = be.xp
        yc = xp.clip(y.astype(be.format.compute, copy=False), _EPS, 1 - 1e-7)
        return float(-(t * xp.log(yc) + (1 - t) * xp.log(1 - yc)).sum() / _rows(y))

    def bprop(self, be: Any, y: Any, t: Any, out: Any, scale: float = 1.0) -> Any:
        xp = be.xp
        yc = xp.clip(y, _EPS, 1 - 1e-7)
        xp.divide(yc - t, yc * (1 - yc), out=out)
        return xp.multiply(out, scale / _rows(y), out=out)


@COSTS.register("sum_squared")
class SumSquared(Cost):
    """0.5 * sum (y - t)^2 per row, averaged over rows."""

    needs_onehot = False

    def fprop(self, be: Any, y: Any, t: Any) -> float:
        d = y - t
        return float(0.5 * (d * d).sum() / _rows(y))

    def bprop(self, be: Any, y: Any, t: Any, out: Any, scale: float = 1.0) -> Any:
        return self.bprop_shortcut(be, y, t, out, scale)


@COSTS.register("mse", "mean_squared")
class MeanSquared(Cost):
    """Mean of (y - t)^2 over every element."""

    needs_onehot = False

    def fprop(self, be: Any, y: Any, t: Any) -> float:
        d = y - t
        return float((d * d).sum() / y.size)

    def bprop(self, be: Any, y: Any, t: Any, out: Any, scale: float = 1.0) -> Any:
        xp = be.xp
        xp.subtract(y, t, out=out)
        return xp.multiply(out, 2.0 * scale / y.size, out=out)


def build_cost(spec: Any) -> Cost:
    """A Cost from an instance, a registry name or a ``{type: ...}`` mapping."""
    if isinstance(spec, Cost):
        return spec
    return COSTS.build(spec, where="cost")
