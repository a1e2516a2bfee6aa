"""A layer that only applies an activation function (after batch norm, conv, ...)."""

from __future__ import annotations

from typing import Any

from neon.layers.layer import LAYERS, Layer
from neon.transforms.activation import Activation, build_activation

__all__ = ["ActivationLayer"]


@LAYERS.register("activation")
class ActivationLayer(Layer):
    """``y = f(x)`` elementwise (softmax over the last axis)."""

    registry_name = "activation"

    def __init__(self, transform: str | dict | Activation, name: str | None = None) -> None:
        super().__init__(name)
        self.transform = build_activation(transform)
        self.skip_act_bprop = False

    @property
    def activation(self) -> Activation:
        return self.transform

    def fprop(self, x: Any, inference: bool = False) -> Any:
        y = self.buffer("y", x.shape)
        self.transform.fprop(self.be, x, y)
        self.y = self.be.quantize(y)
        return y

    def bprop(self, delta: Any) -> Any:
        if not self.skip_act_bprop:
            self.transform.bprop(self.be, self.y, delta, delta)
            self.be.quantize(delta)
        return delta

    def describe(self) -> str:
        return f"{self.name}: {self.transform}"
