"""Metrics of unsupervised models: reconstruction error (autoencoders, RBMs) and the RBM's
pseudo-likelihood.

An RBM model evaluates a metric with ``rbm_batch(be, rbm_layer, v)`` when it has one, and
otherwise with ``batch(be, reconstruction, v)`` on its mean-field reconstruction (so ``mse``
works for RBMs too).
"""

from __future__ import annotations

from typing import Any

from neon.errors import ConfigError
from neon.metrics.metric import METRICS, Metric

__all__ = ["PseudoLikelihood", "ReconstructionError"]


@METRICS.register("reconstruction_error", "recon_error")
class ReconstructionError(Metric):
    """Squared error summed over an example's values, averaged over examples (rows: every
    axis but the last)."""

    @property
    def name(self) -> str:
        return "reconstruction_error"

    def batch(self, be: Any, y: Any, targets: Any) -> tuple[float, int]:
        d = (y - targets.reshape(y.shape)).astype(be.xp.float64)
        rows = int(y.size // y.shape[-1]) if y.ndim > 1 else 1
        return float((d * d).sum()), rows

    def rbm_batch(self, be: Any, rbm: Any, v: Any) -> tuple[float, int]:
        v2 = v.reshape(v.shape[0], -1)
        return self.batch(be, rbm.reconstruct(v2), v2)


@METRICS.register("pseudo_likelihood", "pseudo_log_likelihood")
class PseudoLikelihood(Metric):
    """Mean over examples of sum_i log P(v_i | v_-i) under an RBM, for the binarized data
    (exact: every visible unit is flipped). Higher is better."""

    higher_is_better = True

    @property
    def name(self) -> str:
        return "pseudo_likelihood"

    def batch(self, be: Any, y: Any, labels: Any) -> tuple[float, int]:
        raise ConfigError("pseudo_likelihood applies to rbm models only", key="metrics")

    def rbm_batch(self, be: Any, rbm: Any, v: Any) -> tuple[float, int]:
        return float(rbm.pseudo_log_likelihood(v).sum()), int(v.shape[0])
