"""Max and average pooling over (height, width) of NCHW batches."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from neon.backends.backend import MaxPoolArrays
from neon.layers.convolution import PooledDelta, conv_output_size, pair
from neon.layers.layer import LAYERS, Layer

__all__ = ["AvgPool", "MaxPool", "Pool"]


@LAYERS.register("pool", "pooling")
class Pool(Layer):
    """Max or average pooling; ``strides`` defaults to ``fshape`` (non-overlapping).

    Windows are clipped to the input: padding is never the maximum and is not counted in
    the average (neon's and cuDNN's "exclude padding" semantics), so padding must be
    smaller than the window. Output sizes round down, as for convolution.
    """

    registry_name = "pool"

    def __init__(
        self,
        fshape: int | list = 2,
        op: Literal["max", "avg"] = "max",
        strides: int | list | None = None,
        padding: int | list = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if op not in ("max", "avg"):
            raise ValueError(f"op must be 'max' or 'avg', got {op!r}")
        self.op = op
        self.fshape = pair(fshape, "fshape")
        self.strides = pair(strides, "strides") if strides is not None else self.fshape
        self.padding = pair(padding, "padding")
        if min(self.fshape) < 1 or min(self.strides) < 1:
            raise ValueError("fshape and strides must be >= 1")
        if not all(0 <= p < f for p, f in zip(self.padding, self.fshape)):
            raise ValueError(f"padding {list(self.padding)} must be >= 0 and smaller than "
                             f"the window {list(self.fshape)}")
        # set by the model: the convolution before computes this pool's output in its last
        # pass, and bprop hands it the gradient unexpanded (a PooledDelta)
        self.fused = False

    @property
    def non_overlapping_max(self) -> bool:
        """Max pooling whose windows share no input (each input gets at most one gradient)."""
        return self.op == "max" and all(st >= f for st, f in zip(self.strides, self.fshape))

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        if len(self.in_shape) != 3:
            raise ValueError(f"pooling needs (channels, height, width) inputs, got "
                             f"{self.in_shape}")
        c, h, w = self.in_shape
        (r, s), (sh, sw), (ph, pw) = self.fshape, self.strides, self.padding
        p, q = conv_output_size(h, r, sh, ph), conv_output_size(w, s, sw, pw)
        if p < 1 or q < 1:
            raise ValueError(f"window {r}x{s} does not fit the {h}x{w} input")
        self.out_shape = (c, p, q)
        return self.out_shape

    def arrays(self, n: int) -> MaxPoolArrays:
        """This pool's output and argmax buffers for a batch of ``n`` (now ``self.y`` and
        ``self.argmax``) and its window: what a fused convolution writes."""
        self.y = self.buffer("y", (n, *self.out_shape))
        self.argmax = self.buffer("argmax", self.y.shape, dtype=np.int32)
        return MaxPoolArrays(self.y, self.argmax, self.fshape, self.strides, self.padding)

    def fprop(self, x: Any, inference: bool = False) -> Any:
        if self.fused:  # the convolution that produced x has written self.y
            return self.y
        be = self.be
        n = x.shape[0]
        y = self.buffer("y", (n, *self.out_shape))
        argmax = self.buffer("argmax", y.shape, dtype=np.int32) if self.op == "max" else None
        self.argmax = argmax
        be.pool_fprop(x, y, argmax, self.op, self.fshape, self.strides, self.padding,
                      quantize=True)
        self.y = y
        return y

    def bprop(self, delta: Any) -> Any:
        if not self.need_input_grad:
            return None
        if self.fused:
            return PooledDelta(delta, self.arrays(delta.shape[0]))
        be = self.be
        dx = self.buffer("dx", (delta.shape[0], *self.in_shape))
        return be.pool_bprop(delta, dx, self.argmax, self.op, self.fshape, self.strides,
                             self.padding, quantize=True)

    def describe(self) -> str:
        (r, s), (sh, sw), (ph, pw) = self.fshape, self.strides, self.padding
        pad = f" pad {ph}x{pw}" if ph or pw else ""
        return (f"{self.name}: {self.op} pool {r}x{s}/{sh}x{sw}{pad}: "
                f"{'x'.join(map(str, self.in_shape))} -> {'x'.join(map(str, self.out_shape))}")


@LAYERS.register("max_pool", "maxpool")
class MaxPool(Pool):
    """``{type: max_pool, fshape, strides, padding}``: ``pool`` with ``op: max``."""

    registry_name = "max_pool"

    def __init__(self, fshape: int | list = 2, strides: int | list | None = None,
                 padding: int | list = 0, name: str | None = None) -> None:
        super().__init__(fshape, "max", strides, padding, name)


@LAYERS.register("avg_pool", "avgpool", "average_pool")
class AvgPool(Pool):
    """``{type: avg_pool, fshape, strides, padding}``: ``pool`` with ``op: avg``."""

    registry_name = "avg_pool"

    def __init__(self, fshape: int | list = 2, strides: int | list | None = None,
                 padding: int | list = 0, name: str | None = None) -> None:
        super().__init__(fshape, "avg", strides, padding, name)
