"""2-D convolution (cross-correlation, as in every framework) on NCHW batches.

The work is in ``be.conv_fprop``/``be.conv_bprop`` (see their contract in
``neon/backends/backend.py``): generically im2col + one GEMM per channel group into a
channel-major matrix, moved to NCHW with the bias and a fused ReLU in one pass, and the
mirror image for the gradients; the CPU backend unfolds along the width only where it pays
(row-shifted GEMMs). The backend keeps its work arrays in the layer's ``_ws`` between
fprop and bprop and reuses them for the next minibatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neon.backends.backend import MaxPoolArrays
from neon.initializers import Initializer, build_initializer
from neon.layers.layer import LAYERS, Layer
from neon.transforms.activation import Activation, Rectlin, build_activation

if TYPE_CHECKING:
    from neon.layers.pooling import Pool

__all__ = ["Conv", "PooledDelta", "conv_output_size", "pair"]


def pair(value: Any, what: str) -> tuple[int, int]:
    """``(h, w)`` from an int or a two-element list (as YAML gives them)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an int or [h, w], got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{what} must be an int or [h, w], got {value!r}")


def conv_output_size(size: int, f: int, stride: int, pad: int) -> int:
    """Output positions of a window ``f`` sliding by ``stride`` over ``size + 2*pad``."""
    return (size + 2 * pad - f) // stride + 1


@dataclass(frozen=True)
class PooledDelta:
    """What a fused max pool (see ``Model.initialize``) hands the convolution before it
    instead of a dense gradient: its output gradient and arrays, for
    ``Backend.max_unpool_cn`` to expand straight into the convolution's GEMM operand."""

    delta: Any
    pool: MaxPoolArrays


@LAYERS.register("conv", "convolution", "conv2d")
class Conv(Layer):
    """``y = act(conv(x, W) + b)`` for ``x`` (N, C, H, W), ``W`` (K, C/groups, R, S).

    ``fshape``, ``strides`` and ``padding`` are an int or ``[h, w]``; ``padding: same``
    keeps the spatial size for odd filters at stride 1. ``groups`` splits input and
    output channels into that many independent convolutions (AlexNet's two towers).
    ``batch_norm: true`` expands into conv (no bias), spatial batch norm and the
    activation, as in neon. The default init is Kaiming (He) with fan_in = C/groups*R*S.
    """

    registry_name = "conv"

    def __init__(
        self,
        nfilters: int,
        fshape: int | list = 3,
        strides: int | list = 1,
        padding: int | list | str = 0,
        groups: int = 1,
        bias: bool | float = True,
        init: str | dict | float | Initializer = "kaiming",
        activation: str | dict | Activation | None = None,
        batch_norm: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if nfilters < 1:
            raise ValueError(f"nfilters must be >= 1, got {nfilters}")
        if groups < 1 or nfilters % groups:
            raise ValueError(f"groups must be >= 1 and divide nfilters ({nfilters}), "
                             f"got {groups}")
        self.nfilters = int(nfilters)
        self.fshape = pair(fshape, "fshape")
        self.strides = pair(strides, "strides")
        if padding == "same":
            if any(f % 2 == 0 for f in self.fshape) or self.strides != (1, 1):
                raise ValueError("padding 'same' needs odd filter sizes and stride 1")
            self.padding = (self.fshape[0] // 2, self.fshape[1] // 2)
        elif isinstance(padding, str):
            raise ValueError(f"padding must be an int, [h, w] or 'same', got {padding!r}")
        else:
            self.padding = pair(padding, "padding")
        if min(self.fshape) < 1 or min(self.strides) < 1 or min(self.padding) < 0:
            raise ValueError("fshape and strides must be >= 1, padding >= 0")
        self.groups = int(groups)
        self.init = build_initializer(init)
        self.bias = bias
        self.activation = build_activation(activation) if activation is not None else None
        self.batch_norm = bool(batch_norm)
        self.skip_act_bprop = False  # set by the model when the cost folds the activation in
        self.fused_pool: Pool | None = None  # set by the model: the max pool computed here

    def expand(self) -> list[Layer]:
        if not self.batch_norm:
            return [self]
        base = Conv(self.nfilters, list(self.fshape), list(self.strides), list(self.padding),
                    self.groups, bias=False, init=self.init, name=self.name)
        return self.with_batch_norm(base, self.activation)

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        if len(self.in_shape) != 3:
            raise ValueError(f"conv needs (channels, height, width) inputs, got {self.in_shape}")
        c, h, w = self.in_shape
        if c % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide the input channels ({c})")
        (r, s), (sh, sw), (ph, pw) = self.fshape, self.strides, self.padding
        p, q = conv_output_size(h, r, sh, ph), conv_output_size(w, s, sw, pw)
        if p < 1 or q < 1:
            raise ValueError(f"filter {r}x{s} with padding {ph}x{pw} does not fit the "
                             f"{h}x{w} input")
        self.P, self.Q = p, q
        self.nchan = c
        self.kg = self.nfilters // self.groups  # filters per group
        self.crs = (c // self.groups) * r * s  # GEMM reduction size per group
        self.out_shape = (self.nfilters, p, q)
        return self.out_shape

    def allocate(self, be: Any) -> None:
        super().allocate(be)
        self._ws: dict[str, Any] = {}  # the backend's work arrays, kept between minibatches
        r, s = self.fshape
        shape = (self.nfilters, self.nchan // self.groups, r, s)
        fan_in = self.crs
        fan_out = self.kg * r * s
        self.W = self.add_param("W", self.init(be, shape, fan_in, fan_out))
        self.b = None
        if self.bias is not False:
            value = 0.0 if self.bias is True else float(self.bias)
            self.b = self.add_param("b", be.quantize(be.full((self.nfilters,), value)),
                                    decay=False)

    @property
    def _fused_relu(self) -> bool:
        return isinstance(self.activation, Rectlin)

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        y = self.buffer("y", (x.shape[0], *self.out_shape))
        relu = self._fused_relu
        final = self.activation is None or relu  # nothing follows: the backend rounds y
        pool = self.fused_pool.arrays(x.shape[0]) if self.fused_pool is not None else None
        be.conv_fprop(x, self.W.value, self.b.value if self.b is not None else None, y,
                      self.fshape, self.strides, self.padding, self.groups, relu, self._ws,
                      quantize=final, pool=pool)
        if not final:
            self.activation.fprop(be, y, y)
            be.quantize(y)
        self.y = y
        return y

    @property
    def can_fuse_pool(self) -> bool:
        """Whether this layer may compute the max pool after it and take a ``PooledDelta``:
        the backend fuses both and no activation other than the ReLU is due."""
        act = self.activation is not None and not self.skip_act_bprop
        return self.be.fuses_max_unpool and (not act or self._fused_relu)

    def bprop(self, delta: Any) -> Any:
        be = self.be
        act = self.activation is not None and not self.skip_act_bprop
        relu = act and self._fused_relu
        db = self.b.grad if self.b is not None else None
        if isinstance(delta, PooledDelta):
            be.max_unpool_cn(delta.delta, delta.pool, self.y, self._ws, relu, db)
            delta = None
        elif act and not relu:
            self.activation.bprop(be, self.y, delta, delta)
        dx = self.buffer("dx", (self.y.shape[0], *self.in_shape)) if self.need_input_grad \
            else None
        be.conv_bprop(delta, self.W.value, self.W.grad, db, dx, self.fshape, self.strides,
                      self.padding, self.groups, self.y if relu else None, self._ws,
                      quantize=True)  # dx comes back rounded
        if self.b is not None:
            be.quantize(self.b.grad)
        be.quantize(self.W.grad)
        return dx

    def describe(self) -> str:
        (r, s), (sh, sw), (ph, pw) = self.fshape, self.strides, self.padding
        c, h, w = self.in_shape
        groups = f", {self.groups} groups" if self.groups > 1 else ""
        act = f", {self.activation}" if self.activation is not None else ""
        return (f"{self.name}: conv {r}x{s}/{sh}x{sw} pad {ph}x{pw}{groups}: "
                f"{c}x{h}x{w} -> {'x'.join(map(str, self.out_shape))}{act}")

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of one example's forward pass."""
        return 2 * math.prod(self.out_shape) * self.crs
