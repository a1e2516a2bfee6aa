"""Fully connected layer with optional bias, fused activation and batch norm expansion."""

from __future__ import annotations

import math
from typing import Any

from neon.initializers import Initializer, build_initializer
from neon.layers.layer import LAYERS, Layer, Param
from neon.transforms.activation import Activation, build_activation

__all__ = ["Affine", "activation_bias_grad"]


def activation_bias_grad(be: Any, y: Any, delta: Any, activation: Any, b: Param | None) -> None:
    """``Backend.activation_bias_grad`` into the gradient of bias ``b``, or into its
    optimizer state where the optimizer folds its step in (``Param.grad_target``)."""
    if b is None:
        be.activation_bias_grad(y, delta, activation, None)
        return
    target, alpha, beta = b.grad_target()
    be.activation_bias_grad(y, delta, activation, target, alpha, beta)
    be.quantize(target)


@LAYERS.register("affine", "linear", "dense")
class Affine(Layer):
    """``y = act(x @ W + b)`` with ``W`` of shape (nin, nout).

    Inputs with more than one per-example axis are flattened (after a convolution), unless
    ``flatten`` is false: then the layer maps the last axis and keeps the others (per time
    step for sequences). ``batch_norm: true`` expands into affine (no bias), batch norm and
    the activation, as in neon.
    """

    registry_name = "affine"

    def __init__(
        self,
        nout: int,
        init: str | dict | float | Initializer = "glorot",
        bias: bool | float = True,
        activation: str | dict | Activation | None = None,
        batch_norm: bool = False,
        flatten: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if nout < 1:
            raise ValueError(f"nout must be >= 1, got {nout}")
        self.nout = int(nout)
        self.init = build_initializer(init)
        self.bias = bias
        self.activation = build_activation(activation) if activation is not None else None
        self.batch_norm = bool(batch_norm)
        self.flatten = bool(flatten)
        self.skip_act_bprop = False  # set by the model when the cost folds the activation in

    def expand(self) -> list[Layer]:
        if not self.batch_norm:
            return [self]
        base = Affine(self.nout, self.init, bias=False, flatten=self.flatten, name=self.name)
        return self.with_batch_norm(base, self.activation)

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        if self.flatten or len(self.in_shape) == 1:
            self.nin = int(math.prod(self.in_shape))
            self.out_shape = (self.nout,)
        else:
            self.nin = self.in_shape[-1]
            self.out_shape = (*self.in_shape[:-1], self.nout)
        return self.out_shape

    def allocate(self, be: Any) -> None:
        super().allocate(be)
        self.W = self.add_param("W", self.init(be, (self.nin, self.nout), self.nin, self.nout))
        self.b = None
        if self.bias is not False:
            value = 0.0 if self.bias is True else float(self.bias)
            self.b = self.add_param("b", be.quantize(be.full((self.nout,), value)), decay=False)

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        self.x2 = x.reshape(-1, self.nin)
        rows = self.x2.shape[0]
        y = self.buffer("y", (rows, self.nout))
        be.gemm(self.x2, self.W.value, y)
        be.bias_activation(y, None if self.b is None else self.b.value, self.activation)
        be.quantize(y)
        self.y = y
        return y.reshape((x.shape[0], *self.out_shape))

    def bprop(self, delta: Any) -> Any:
        be = self.be
        d = delta.reshape(-1, self.nout)
        activation_bias_grad(be, self.y, d, None if self.skip_act_bprop else self.activation,
                             self.b)
        if self.W.fold is None:
            be.dot(self.x2, d, out=self.W.grad, trans_a=True)
        else:  # the optimizer's step, in this GEMM (see Optimizer.fold_updates)
            target, alpha, beta = self.W.grad_target()
            be.gemm(self.x2, d, target, trans_a=True, alpha=alpha, beta=beta)
        if not self.need_input_grad:
            return None
        dx = self.buffer("dx", self.x2.shape)
        be.dot(d, self.W.value, out=dx, trans_b=True)
        return dx.reshape((delta.shape[0], *self.in_shape))

    def describe(self) -> str:
        act = f", {self.activation}" if self.activation is not None else ""
        return f"{self.name}: affine {self.nin} -> {self.nout}{act}"
