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
    """exp(mean -ln p(next symbol)) over a whole evaluation pass.

    Perplexity is not a mean of per-batch values, while ``Model.eval`` reports
    ``sum(batch sums) / sum(batch counts)``. The metric therefore keeps running totals of
    the pass and returns, for each batch, the change of ``perplexity_so_far * count_so_far``:
    those telescope to exactly ``exp(mean nll) * count``. A pass starts afresh when the
    backend's random stream was restarted (every training epoch does) or after ``reset()``;
    build a new instance (or call ``reset``) before evaluating the same data twice without
    training in between.
    """

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = float(eps)
        self.reset()

    def reset(self) -> None:
        self._nats = 0.0
        self._count = 0
        self._reported = 0.0
        self._stream: Any = None

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        if getattr(be, "rng", None) is not self._stream:
            self.reset()
            self._stream = getattr(be, "rng", None)
        nats, n = _nll_sum(be, y, labels, self.eps)
        self._nats += nats
        self._count += n
        total = math.exp(self._nats / max(1, self._count)) * self._count
        step, self._reported = total - self._reported, total
        return step, n
