"""Flatten (C, H, W) examples to vectors (Affine also flattens by itself)."""

from __future__ import annotations

import math
from typing import Any

from neon.layers.layer import LAYERS, Layer

__all__ = ["Flatten"]


@LAYERS.register("flatten")
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), a view without copying (row-major order)."""

    registry_name = "flatten"

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        self.out_shape = (math.prod(self.in_shape),)
        return self.out_shape

    def fprop(self, x: Any, inference: bool = False) -> Any:
        self.y = x.reshape(x.shape[0], *self.out_shape)
        return self.y

    def bprop(self, delta: Any) -> Any:
        if not self.need_input_grad:
            return None
        return delta.reshape(delta.shape[0], *self.in_shape)

    def describe(self) -> str:
        return f"{self.name}: flatten {'x'.join(map(str, self.in_shape))} -> {self.out_shape[0]}"
