"""Classification metrics: top-k misclassification and accuracy, log loss."""

from __future__ import annotations

from typing import Any

from neon.metrics.metric import METRICS, Metric, rows

__all__ = ["Accuracy", "LogLoss", "Misclassification"]


def _topk_hits(be: Any, y: Any, labels: Any, k: int) -> tuple[float, int]:
    xp = be.xp
    y2 = rows(y)
    lab = labels.reshape(-1)
    if k == 1:
        hits = y2.argmax(axis=1) == lab
    else:
        # the label is in the top k when fewer than k classes score strictly higher
        target = xp.take_along_axis(y2, lab[:, None].astype(xp.int64), axis=1)
        hits = (y2 > target).sum(axis=1) < k
    return float(hits.sum()), int(lab.shape[0])


class _TopK(Metric):
    """Shared by the top-k metrics: ``top_k`` and the ``top5_`` name prefix."""

    base_name = ""

    def __init__(self, top_k: int = 1) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = int(top_k)

    @property
    def name(self) -> str:
        return self.base_name if self.top_k == 1 else f"top{self.top_k}_{self.base_name}"


@METRICS.register("misclassification")
class Misclassification(_TopK):
    """Fraction of examples whose label is not among the top ``top_k`` outputs."""

    base_name = "misclassification"

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        hits, n = _topk_hits(be, y, labels, self.top_k)
        return n - hits, n


@METRICS.register("accuracy")
class Accuracy(_TopK):
    """Fraction of examples whose label is among the top ``top_k`` outputs."""

    base_name = "accuracy"
    higher_is_better = True

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        return _topk_hits(be, y, labels, self.top_k)


@METRICS.register("log_loss")
class LogLoss(Metric):
    """Mean negative log probability of the true class (nats)."""

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = float(eps)

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        xp = be.xp
        y2 = rows(y)
        lab = labels.reshape(-1).astype(xp.int64)
        p = xp.take_along_axis(y2, lab[:, None], axis=1).astype(xp.float64)
        return float(-xp.log(xp.maximum(p, self.eps)).sum()), int(lab.shape[0])
