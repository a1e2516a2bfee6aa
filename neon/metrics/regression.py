"""Regression/reconstruction metrics."""

from __future__ import annotations

from typing import Any

from neon.metrics.metric import METRICS, Metric

__all__ = ["MeanSquaredError"]


@METRICS.register("mse")
class MeanSquaredError(Metric):
    """Mean over elements of (y - t)^2."""

    def batch(self, be: Any, y: Any, targets: Any) -> tuple[float, int]:
        d = (y - targets.reshape(y.shape)).astype(be.xp.float64)
        return float((d * d).sum()), int(d.size)
