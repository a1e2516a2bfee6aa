"""Inverted dropout: keeps each unit with probability ``keep`` and rescales by 1/keep."""

from __future__ import annotations

from typing import Any

from neon.layers.layer import LAYERS, Layer

__all__ = ["Dropout"]


@LAYERS.register("dropout")
class Dropout(Layer):
    """Identity at inference; at training ``y = x * mask / keep`` with a fresh mask."""

    registry_name = "dropout"

    def __init__(self, keep: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.keep = float(keep)

    def fprop(self, x: Any, inference: bool = False) -> Any:
        if inference or self.keep == 1.0:
            self.mask = None
            return x
        mask = self.be.bernoulli_mask(x.shape, self.keep, out=self.buffer("mask", x.shape))
        mask *= 1.0 / self.keep
        self.mask = mask
        y = self.buffer("y", x.shape)
        self.be.xp.multiply(x, mask, out=y)
        return self.be.quantize(y)

    def bprop(self, delta: Any) -> Any:
        if self.mask is not None:
            delta *= self.mask
            self.be.quantize(delta)
        return delta

    def describe(self) -> str:
        return f"{self.name}: dropout keep={self.keep}"
