"""Binary restricted Boltzmann machine layer, trained by contrastive divergence.

As a layer in a model, ``fprop`` gives the hidden units' probabilities ``sigm(v W + hbias)``
(a feature extractor, differentiable like a logistic affine layer). Training uses
``cd_gradients`` instead of backpropagation: see ``neon.models.RBM`` and ``neon.models.DBN``.
"""

from __future__ import annotations

import math
from typing import Any

from neon.initializers import Initializer, build_initializer
from neon.layers.layer import LAYERS, Layer
from neon.transforms.activation import Logistic

__all__ = ["RBMLayer"]

_SIGMOID = Logistic()


@LAYERS.register("rbm")
class RBMLayer(Layer):
    """Bernoulli-Bernoulli RBM: energy ``E(v, h) = -v.vbias - h.hbias - v W h``.

    Parameters ``W`` (nvisible, nhidden), ``hbias`` (nhidden,), ``vbias`` (nvisible,).
    Visible data are binary or probabilities in [0, 1].
    """

    registry_name = "rbm"

    def __init__(
        self,
        nhidden: int,
        init: str | dict | float | Initializer | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if nhidden < 1:
            raise ValueError(f"nhidden must be >= 1, got {nhidden}")
        self.nhidden = int(nhidden)
        self.init = build_initializer(init if init is not None else
                                      {"type": "gaussian", "scale": 0.01})
        self.chain: Any = None  # persistent CD's fantasy particles (visible states)

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        self.nvisible = int(math.prod(self.in_shape))
        self.out_shape = (self.nhidden,)
        return self.out_shape

    def allocate(self, be: Any) -> None:
        super().allocate(be)
        nv, nh = self.nvisible, self.nhidden
        self.W = self.add_param("W", self.init(be, (nv, nh), nv, nh))
        self.hbias = self.add_param("hbias", be.zeros((nh,)), decay=False)
        self.vbias = self.add_param("vbias", be.zeros((nv,)), decay=False)

    # ----------------------------------------------------------------- conditionals
    def hidden_probs(self, v: Any, out: Any = None) -> Any:
        """P(h = 1 | v) = sigm(v W + hbias), rounded to storage."""
        out = self.be.dot(v, self.W.value, out=out)
        out += self.hbias.value
        return self.be.quantize(_SIGMOID.fprop(self.be, out, out))

    def visible_probs(self, h: Any, out: Any = None) -> Any:
        """P(v = 1 | h) = sigm(h W^T + vbias), rounded to storage."""
        out = self.be.dot(h, self.W.value, out=out, trans_b=True)
        out += self.vbias.value
        return self.be.quantize(_SIGMOID.fprop(self.be, out, out))

    def draw(self, shape: tuple[int, ...]) -> Any:
        """Uniform [0, 1) numbers from the backend's seeded stream (tests replace this)."""
        return self.be.uniform(shape)

    def sample(self, p: Any) -> Any:
        """Binary states with P(1) = p: ``draw(p.shape) < p``."""
        return (self.draw(p.shape) < p).astype(p.dtype)

    def reconstruct(self, v: Any) -> Any:
        """Mean-field reconstruction ``visible_probs(hidden_probs(v))`` (deterministic)."""
        return self.visible_probs(self.hidden_probs(v))

    # ----------------------------------------------------------------- training
    def cd_gradients(self, v0: Any, k: int = 1, persistent: bool = False) -> None:
        """Contrastive divergence (CD-k; Hinton 2002) or persistent CD (PCD; Tieleman 2008).

        ``ph0 = P(h | v0)``. The negative chain starts from ``h ~ ph0`` (CD) or from
        ``h ~ P(h | chain)`` (PCD; the chain starts as a copy of the first batch). Each of the
        k Gibbs steps draws ``v ~ P(v | h)``, then ``ph = P(h | v)`` and, except after the
        last step, ``h ~ ph``. Writes gradients of the negative log-likelihood estimate:
        ``dW = -(v0^T ph0 / n - v^T ph / m)``, ``dvbias = -(mean v0 - mean v)``,
        ``dhbias = -(mean ph0 - mean ph)`` (n data rows, m chain rows); PCD keeps the final
        ``v`` as the chain. Random numbers are drawn in that order through ``draw``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        be = self.be
        v0 = v0.reshape(v0.shape[0], -1)
        n = v0.shape[0]
        ph0 = self.hidden_probs(v0)
        if persistent:
            if self.chain is None:
                self.chain = v0.copy()
            h = self.sample(self.hidden_probs(self.chain))
        else:
            h = self.sample(ph0)
        for step in range(k):
            v = self.sample(self.visible_probs(h))
            ph = self.hidden_probs(v)
            if step < k - 1:
                h = self.sample(ph)
        m = v.shape[0]
        if persistent:
            self.chain = v
        with be.storing("gradients"):
            be.dot(v, ph, out=self.W.grad, trans_a=True)
            self.W.grad *= 1.0 / m
            pos = be.dot(v0, ph0, trans_a=True)
            pos *= 1.0 / n
            self.W.grad -= pos
            xp = be.xp
            xp.subtract(v.mean(axis=0), v0.mean(axis=0), out=self.vbias.grad)
            xp.subtract(ph.mean(axis=0), ph0.mean(axis=0), out=self.hbias.grad)
            for p in self.params:
                be.quantize(p.grad)

    def free_energy(self, v: Any) -> Any:
        """F(v) = -v.vbias - sum_j softplus(v W + hbias)_j per row (float64)."""
        xp = self.be.xp
        a = (v @ self.W.value + self.hbias.value).astype(xp.float64)
        softplus = xp.logaddexp(0.0, a).sum(axis=1)
        return -(v.astype(xp.float64) @ self.vbias.value.astype(xp.float64)) - softplus

    def pseudo_log_likelihood(self, v: Any, chunk: int = 4_000_000) -> Any:
        """Per row: sum_i log P(v_i | v_-i) of binarized ``v`` (> 0.5), exactly.

        ``log P(v_i | v_-i) = -softplus(F(v) - F(v with bit i flipped))``; flipping bit i
        adds ``(1 - 2 v_i) W_i`` to the hidden pre-activations, so each flip costs one
        (n, nhidden) softplus, computed in blocks of about ``chunk`` values.
        """
        xp = self.be.xp
        vb = (v.reshape(v.shape[0], -1) > 0.5).astype(xp.float64)
        w = self.W.value.astype(xp.float64)
        vbias = self.vbias.value.astype(xp.float64)
        a = vb @ w + self.hbias.value.astype(xp.float64)  # (n, nh)
        base = xp.logaddexp(0.0, a).sum(axis=1)  # -F(v) - v.vbias
        n, nv = vb.shape
        step = max(1, chunk // max(1, n * self.nhidden))
        total = xp.zeros(n)
        for lo in range(0, nv, step):
            hi = min(nv, lo + step)
            sign = 1.0 - 2.0 * vb[:, lo:hi]  # (n, b): +1 turns a 0 on, -1 turns a 1 off
            flipped = a[:, None, :] + sign[:, :, None] * w[None, lo:hi, :]
            # F(v) - F(v') = sign * vbias_i - softplus(a).sum + softplus(a').sum
            diff = sign * vbias[lo:hi] - base[:, None] + xp.logaddexp(0.0, flipped).sum(2)
            total -= xp.logaddexp(0.0, diff).sum(axis=1)
        return total

    # ----------------------------------------------------------------- as a layer
    def fprop(self, x: Any, inference: bool = False) -> Any:
        self.x = x.reshape(x.shape[0], -1)
        y = self.buffer("y", (x.shape[0], self.nhidden))
        self.y = self.hidden_probs(self.x, out=y)
        return self.y

    def bprop(self, delta: Any) -> Any:
        be = self.be
        _SIGMOID.bprop(be, self.y, delta, delta)
        be.quantize(delta)
        delta.sum(axis=0, out=self.hbias.grad)
        be.quantize(self.hbias.grad)
        self.vbias.grad.fill(0)
        be.dot(self.x, delta, out=self.W.grad, trans_a=True)
        if not self.need_input_grad:
            return None
        dx = self.buffer("dx", self.x.shape)
        be.dot(delta, self.W.value, out=dx, trans_b=True)
        return dx.reshape((delta.shape[0], *self.in_shape))

    def describe(self) -> str:
        return f"{self.name}: rbm {self.nvisible} visible, {self.nhidden} hidden"
