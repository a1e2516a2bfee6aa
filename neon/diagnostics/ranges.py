"""Numeric ranges of each layer's tensors: min, max, mean |x| and non-finite counts.

Tensors are a layer's output, its parameters (``W``), their gradients (``dW``), the
optimizer's state of each parameter (``W.velocity``, ``W.m``, ``W.v``, ...) and the master
copy of the weights where the storage keeps one (``W.master``). How many stored values of
each tensor class over- or underflowed is the backend's ``FlowCounter`` (``flow_classes``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["RangeRecorder"]


class RangeRecorder:
    """Running min/max/mean-|x| per ``(layer, tensor)`` over the sampled minibatches."""

    def __init__(self, be: Any) -> None:
        self.be = be
        self.stats: dict[str, dict[str, list[float]]] = {}

    def observe(self, layer: str, tensor: str, x: Any) -> None:
        if x is None:
            return
        lo, hi, mean_abs, bad = self.be.range_stats(x)
        row = self.stats.setdefault(layer, {})
        acc = row.get(tensor)
        if acc is None:
            row[tensor] = [lo, hi, mean_abs, bad, 1]
            return
        if not math.isnan(lo):
            acc[0] = lo if math.isnan(acc[0]) else min(acc[0], lo)
            acc[1] = hi if math.isnan(acc[1]) else max(acc[1], hi)
        acc[2] += mean_abs if not math.isnan(mean_abs) else 0.0
        acc[3] += bad
        acc[4] += 1

    def observe_param_state(self, layer: str, p: Any) -> None:
        """The optimizer state arrays of parameter ``p`` and its master copy, if any."""
        for slot, arr in p.state.items():
            self.observe(layer, f"{p.name}.{slot}", arr)
        if p.master is not None:
            self.observe(layer, f"{p.name}.master", p.master)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{layer: {tensor: {"min", "max", "mean_abs", "nonfinite"}}}``."""
        return {
            layer: {
                tensor: {"min": a[0], "max": a[1], "mean_abs": a[2] / a[4], "nonfinite": a[3]}
                for tensor, a in tensors.items()
            }
            for layer, tensors in self.stats.items()
        }

    def reset(self) -> None:
        self.stats.clear()
