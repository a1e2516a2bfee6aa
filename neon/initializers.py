"""Weight initializers: ``init(be, shape, fan_in, fan_out) -> device array``.

Random values are drawn on the host from the backend's seeded generator, so a seed gives the
same initial weights on every backend.
"""

from __future__ import annotations

import math
from typing import Any

from neon.registry import Registry

__all__ = [
    "INITIALIZERS",
    "Constant",
    "Gaussian",
    "GlorotUniform",
    "Initializer",
    "Kaiming",
    "Uniform",
    "build_initializer",
]

INITIALIZERS: Registry[Initializer] = Registry("initializer")


class Initializer:
    """Base class of initializers."""

    registry_name = "initializer"

    def __call__(self, be: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{self.registry_name}({fields})"


@INITIALIZERS.register("constant")
class Constant(Initializer):
    def __init__(self, val: float = 0.0) -> None:
        self.val = float(val)

    def __call__(self, be: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return be.quantize(be.full(shape, self.val))


@INITIALIZERS.register("gaussian", "normal")
class Gaussian(Initializer):
    def __init__(self, loc: float = 0.0, scale: float = 1.0) -> None:
        if scale < 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        self.loc, self.scale = float(loc), float(scale)

    def __call__(self, be: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return be.normal(shape, self.loc, self.scale)


@INITIALIZERS.register("uniform")
class Uniform(Initializer):
    def __init__(self, low: float = -1.0, high: float = 1.0) -> None:
        if high < low:
            raise ValueError(f"high ({high}) must be >= low ({low})")
        self.low, self.high = float(low), float(high)

    def __call__(self, be: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return be.uniform(shape, self.low, self.high)


@INITIALIZERS.register("glorot", "glorot_uniform", "xavier")
class GlorotUniform(Initializer):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""

    def __call__(self, be: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return be.uniform(shape, -bound, bound)


@INITIALIZERS.register("kaiming", "he")
class Kaiming(Initializer):
    """Gaussian with std sqrt(2 / fan_in) (He et al. 2015), for ReLU networks."""

    def __init__(self, gain: float = 2.0) -> None:
        self.gain = float(gain)

    def __call__(self, be: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        return be.normal(shape, 0.0, math.sqrt(self.gain / fan_in))


def build_initializer(spec: Any) -> Initializer:
    """An Initializer from an instance, a registry name, a number (constant) or a mapping."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(spec)
    return INITIALIZERS.build(spec, where="init")
