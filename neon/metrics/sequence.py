"""Language-model metrics over per-timestep softmax outputs: bits per character, perplexity.

Outputs (N, T, V) and integer labels (N, T): every time step counts as one prediction.
"""

from __future__ import annotations

import math
from typing import Any

from neon.metrics.metric import METRICS, Metric, rows

__all__ = ["BitsPerChar", "Perplexity"]


def _nll_sum(be: Any, y: Any, labels: Any, eps: float) -> tuple[float, int]:
    """(sum of -ln p(label), number of predictions)."""
    xp = be.xp
    y2 = rows(y)
    lab = labels.reshape(-1).astype(xp.int64)
    p = xp.take_along_axis(y2, lab[:, None], axis=1).astype(xp.float64)
    return float(-xp.log(xp.maximum(p, eps)).sum()), int(lab.shape[0])


@METRICS.register("bits_per_char", "bpc", "bits_per_symbol")
class BitsPerChar(Metric):
    """Mean of -log2 p(next symbol): the cross-entropy in bits (lower is better)."""

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = float(eps)

    @property
    def name(self) -> str:
        return "bits_per_char"

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        nats, n = _nll_sum(be, y, labels, self.eps)
        return nats / math.log(2.0), n


@METRICS.register("perplexity")
class Perplexity(Metric):
    """exp(mean -ln p(next symbol)) over a whole evaluation pass (not a mean of batches)."""

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = float(eps)

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        return _nll_sum(be, y, labels, self.eps)

    def value(self, total: float, count: int) -> float:
        return math.exp(total / count) if count else float("nan")
