"""Metric base class: per-batch sums that add up over an epoch."""

from __future__ import annotations

from typing import Any

from neon.registry import Registry

__all__ = ["METRICS", "Metric"]

METRICS: Registry[Metric] = Registry("metric")


class Metric:
    """``batch(be, y, labels) -> (sum, count)``; the epoch value is sum / count."""

    registry_name = "metric"
    higher_is_better = False

    @property
    def name(self) -> str:
        return self.registry_name

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        raise NotImplementedError

    def value(self, total: float, count: int) -> float:
        """The metric of a whole pass from its summed batch values (a mean by default)."""
        return total / count if count else float("nan")

    def __repr__(self) -> str:
        return self.name


def rows(y: Any) -> Any:
    """Outputs as (rows, classes): sequences (N, T, C) count every time step."""
    return y.reshape(-1, y.shape[-1])
