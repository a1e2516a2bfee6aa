"""Activation functions: ``fprop(be, x, out)`` and ``bprop(be, y, delta, out)``.

``bprop`` multiplies ``delta`` by the derivative expressed through the *output* ``y`` (as neon
does), so layers need not keep their pre-activations. ``out`` may alias the input.
"""

from __future__ import annotations

from typing import Any

from neon.registry import Registry

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Identity",
    "LeakyRectlin",
    "Logistic",
    "Rectlin",
    "Softmax",
    "Tanh",
    "build_activation",
]

ACTIVATIONS: Registry[Activation] = Registry("activation")


class Activation:
    """Base class; subclasses implement both directions in place-capable form."""

    registry_name = "activation"

    def fprop(self, be: Any, x: Any, out: Any) -> Any:
        raise NotImplementedError

    def bprop(self, be: Any, y: Any, delta: Any, out: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.registry_name


@ACTIVATIONS.register("identity", "linear")
class Identity(Activation):
    def fprop(self, be: Any, x: Any, out: Any) -> Any:
        if out is not x:
            out[...] = x
        return out

    def bprop(self, be: Any, y: Any, delta: Any, out: Any) -> Any:
        if out is not delta:
            out[...] = delta
        return out


@ACTIVATIONS.register("relu", "rectlin")
class Rectlin(Activation):
    def fprop(self, be: Any, x: Any, out: Any) -> Any:
        return be.xp.maximum(x, 0, out=out)

    def bprop(self, be: Any, y: Any, delta: Any, out: Any) -> Any:
        return be.xp.multiply(delta, y > 0, out=out)


@ACTIVATIONS.register("leaky_relu", "leaky_rectlin")
class LeakyRectlin(Activation):
    def __init__(self, slope: float = 0.01) -> None:
        if not 0 <= slope < 1:
            raise ValueError(f"slope must be in [0, 1), got {slope}")
        self.slope = float(slope)

    def fprop(self, be: Any, x: Any, out: Any) -> Any:
        xp = be.xp
        return xp.maximum(x, xp.multiply(x, self.slope), out=out)

    def bprop(self, be: Any, y: Any, delta: Any, out: Any) -> Any:
        xp = be.xp
        factor = xp.where(y > 0, 1.0, self.slope).astype(delta.dtype, copy=False)
        return xp.multiply(delta, factor, out=out)


@ACTIVATIONS.register("logistic", "sigmoid")
class Logistic(Activation):
    def fprop(self, be: Any, x: Any, out: Any) -> Any:
        xp = be.xp
        xp.negative(x, out=out)
        xp.exp(out, out=out)
        out += 1
        return xp.reciprocal(out, out=out)

    def bprop(self, be: Any, y: Any, delta: Any, out: Any) -> Any:
        xp = be.xp
        return xp.multiply(delta, y * (1 - y), out=out)


@ACTIVATIONS.register("tanh")
class Tanh(Activation):
    def fprop(self, be: Any, x: Any, out: Any) -> Any:
        return be.xp.tanh(x, out=out)

    def bprop(self, be: Any, y: Any, delta: Any, out: Any) -> Any:
        xp = be.xp
        return xp.multiply(delta, 1 - y * y, out=out)


@ACTIVATIONS.register("softmax")
class Softmax(Activation):
    """Softmax over the last axis (classes)."""

    def fprop(self, be: Any, x: Any, out: Any) -> Any:
        xp = be.xp
        xp.subtract(x, x.max(axis=-1, keepdims=True), out=out)
        xp.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
        return out

    def bprop(self, be: Any, y: Any, delta: Any, out: Any) -> Any:
        xp = be.xp
        inner = (delta * y).sum(axis=-1, keepdims=True)
        xp.subtract(delta, inner, out=out)
        return xp.multiply(out, y, out=out)


def build_activation(spec: Any) -> Activation:
    """An Activation from an instance, a registry name or a ``{type: ...}`` mapping."""
    if isinstance(spec, Activation):
        return spec
    if spec is None:
        return Identity()
    return ACTIVATIONS.build(spec, where="activation")
