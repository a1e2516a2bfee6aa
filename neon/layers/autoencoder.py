"""Layers for autoencoders: input corruption (denoising) and a decoder tied to an encoder.

``{type: corrupt, kind: mask, level: 0.3}`` corrupts its input during training only (the
clean input stays the target, see ``neon.models.Autoencoder``); ``{type: tied_affine,
tied_to: enc}`` decodes with the transpose of the weights of the affine layer named ``enc``
(it owns only its bias). Tied layers are linked by ``neon.models.Autoencoder`` (``type:
autoencoder`` in the model YAML), which also adds the decoder's share of the gradient to
the encoder's weights.
"""

from __future__ import annotations

from typing import Any, Literal

from neon.errors import ConfigError
from neon.layers.affine import activation_bias_grad
from neon.layers.layer import LAYERS, Layer
from neon.transforms.activation import Activation, build_activation

__all__ = ["Corrupt", "TiedAffine"]


@LAYERS.register("corrupt", "corruption", "noise")
class Corrupt(Layer):
    """Training-time corruption of the input; the identity at inference.

    ``kind: mask`` zeroes each value with probability ``level`` (masking noise, Vincent et
    al. 2008); ``kind: gaussian`` adds N(0, level^2) noise. The gradient passes through the
    kept values (mask) or unchanged (gaussian).
    """

    registry_name = "corrupt"

    def __init__(
        self,
        level: float = 0.2,
        kind: Literal["mask", "gaussian"] = "mask",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if kind not in ("mask", "gaussian"):
            raise ValueError(f"kind must be mask or gaussian, got {kind!r}")
        if kind == "mask" and not 0.0 <= level < 1.0:
            raise ValueError(f"mask level must be in [0, 1), got {level}")
        if level < 0:
            raise ValueError(f"level must be >= 0, got {level}")
        self.level = float(level)
        self.kind = kind

    def fprop(self, x: Any, inference: bool = False) -> Any:
        self.mask = None
        if inference or self.level == 0.0:
            return x
        be = self.be
        y = self.buffer("y", x.shape)
        if self.kind == "mask":
            mask = be.bernoulli_mask(x.shape, 1.0 - self.level, out=self.buffer("mask", x.shape))
            be.xp.multiply(x, mask, out=y)
            self.mask = mask
        else:
            be.xp.add(x, be.normal(x.shape, 0.0, self.level), out=y)
        return be.quantize(y)

    def bprop(self, delta: Any) -> Any:
        if self.mask is not None:
            delta *= self.mask
        return delta

    def describe(self) -> str:
        return f"{self.name}: corrupt {self.kind} {self.level}"


@LAYERS.register("tied_affine", "tied_decoder")
class TiedAffine(Layer):
    """``y = act(x @ W.T + b)`` where ``W`` (nin, nout) belongs to the affine layer named
    ``tied_to``: maps that layer's output size back to its input size. Only ``b`` is a
    parameter of this layer; ``grad_W`` holds this layer's share of dL/dW after ``bprop``.
    """

    registry_name = "tied_affine"

    def __init__(
        self,
        tied_to: str,
        activation: str | dict | Activation | None = None,
        bias: bool | float = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.tied_to = str(tied_to)
        self.activation = build_activation(activation) if activation is not None else None
        self.bias = bias
        self.source: Layer | None = None
        self.skip_act_bprop = False

    def link(self, source: Layer) -> None:
        if not hasattr(source, "nout") or getattr(source, "flatten", True) is False:
            raise ConfigError(f"tied_to: {self.tied_to!r} must name an affine layer",
                              key=self.name)
        self.source = source

    def _weights(self) -> Any:
        if self.source is None:
            raise ConfigError(f"tied_affine {self.name!r} is not linked to {self.tied_to!r}: "
                              "tied layers need a model of type: autoencoder", key=self.name)
        return self.source.W

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        if self.source is None:
            self._weights()
        src = self.source
        if len(self.in_shape) != 1 or self.in_shape[0] != src.nout:
            raise ConfigError(f"input {self.in_shape} does not match the output ({src.nout},) "
                              f"of {self.tied_to!r}", key=self.name)
        self.nin, self.nout = src.nout, src.nin
        self.out_shape = (self.nout,)
        return self.out_shape

    def allocate(self, be: Any) -> None:
        super().allocate(be)
        self.b = None
        if self.bias is not False:
            value = 0.0 if self.bias is True else float(self.bias)
            self.b = self.add_param("b", be.quantize(be.full((self.nout,), value)), decay=False)
        self.grad_W = be.zeros((self.nout, self.nin))

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        self.x = x
        y = self.buffer("y", (x.shape[0], self.nout))
        be.gemm(x, self._weights().value, y, trans_b=True)
        be.bias_activation(y, None if self.b is None else self.b.value, self.activation)
        self.y = be.quantize(y)
        return y

    def bprop(self, delta: Any) -> Any:
        be = self.be
        activation_bias_grad(be, self.y, delta,
                             None if self.skip_act_bprop else self.activation, self.b)
        be.dot(delta, self.x, out=self.grad_W, trans_a=True)
        if not self.need_input_grad:
            return None
        dx = self.buffer("dx", self.x.shape)
        return be.dot(delta, self._weights().value, out=dx)

    def describe(self) -> str:
        act = f", {self.activation}" if self.activation is not None else ""
        return f"{self.name}: tied_affine {self.in_shape} -> {self.out_shape} " \
               f"(W of {self.tied_to}{act})"
