"""Probability that a point does not fail, for steering Bayesian optimization away from
crashing regions (the objective's GP only sees successful trials).

A kernel-smoothed Beta-Bernoulli estimate: with Matern 5/2 weights ``k_i(z)`` over every
observed input, ``P(z) = (c * r + sum k_i s_i) / (c + sum k_i)``, where ``s_i`` is 1 for a
success, ``r`` the overall (Laplace-smoothed) success rate and ``c`` a pseudo-count.  The
isotropic length scale is chosen by leave-one-out likelihood of the observed outcomes.
"""

from __future__ import annotations

import numpy as np

from search.strategies.gp import _matern52_dr2, _sqdist, matern52

__all__ = ["SuccessModel"]

_LENGTH_SCALES = np.geomspace(0.02, 2.0, 15)


class SuccessModel:
    """P(success) over GP inputs, fitted on ``inputs`` (n, d) with outcomes ``success``."""

    def __init__(self, inputs: np.ndarray, success: np.ndarray, prior: float = 0.25) -> None:
        self.inputs, self.success, self.prior = inputs, success.astype(float), prior
        self.rate = (self.success.sum() + 1.0) / (len(self.success) + 2.0)
        self.length_scale = self._loo_length_scale()

    def _loo_length_scale(self) -> float:
        d2 = _sqdist(self.inputs, self.inputs)
        s = self.success
        best, best_ll = float(_LENGTH_SCALES[-1]), -np.inf
        for ls in _LENGTH_SCALES:
            k = matern52(d2 / ls**2)
            np.fill_diagonal(k, 0.0)
            p = (self.prior * self.rate + k @ s) / (self.prior + k.sum(1))
            p = np.clip(p, 1e-12, 1 - 1e-12)
            ll = float((s * np.log(p) + (1 - s) * np.log1p(-p)).sum())
            if ll > best_ll + 1e-9:
                best, best_ll = float(ls), ll
        return best

    def log_prob(self, z: np.ndarray, grad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """log P(success) at rows ``z`` (m,) and its gradient (m, d) when ``grad``."""
        ls = self.length_scale
        r2 = _sqdist(z, self.inputs) / ls**2
        k = matern52(r2)
        num = self.prior * self.rate + k @ self.success
        den = self.prior + k.sum(1)
        value = np.log(num) - np.log(den)
        if not grad:
            return value, None
        dk = (2.0 * _matern52_dr2(r2))[:, :, None] * (
            z[:, None, :] - self.inputs[None, :, :]
        ) / ls**2
        dnum = np.einsum("mnd,n->md", dk, self.success)
        return value, dnum / num[:, None] - dk.sum(1) / den[:, None]
