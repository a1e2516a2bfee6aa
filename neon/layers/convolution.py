"""2-D convolution (cross-correlation, as in every framework) on NCHW batches.

The layer is im2col + GEMM: ``be.im2col`` unfolds the input into a (C*R*S, N*P*Q) matrix,
one GEMM per channel group multiplies it by the filters into a channel-major (K, N*P*Q)
matrix, and ``be.cn_to_nchw`` moves that to NCHW while adding the bias and applying a
ReLU in the same pass. Back-propagation mirrors it (``be.nchw_to_cn`` fuses the ReLU
derivative and the bias gradient; ``be.col2im`` folds the input gradient back). All
device-specific work is in those backend methods; buffers are reused between minibatches.
"""

from __future__ import annotations

import math
from typing import Any

from neon.initializers import Initializer, build_initializer
from neon.layers.layer import LAYERS, Layer
from neon.transforms.activation import Activation, Rectlin, build_activation

__all__ = ["Conv", "conv_output_size", "pair"]


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

    def expand(self) -> list[Layer]:
        if not self.batch_norm:
            return [self]
        from neon.layers.activation import ActivationLayer
        from neon.layers.normalization import BatchNorm

        base = Conv(self.nfilters, list(self.fshape), list(self.strides), list(self.padding),
                    self.groups, bias=False, init=self.init, name=self.name)
        layers: list[Layer] = [base, BatchNorm()]
        if self.activation is not None:
            layers.append(ActivationLayer(self.activation))
        return layers

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

    def _gemm(self, a: Any, b: Any, out: Any, trans_a: bool = False,
              trans_b: bool = False) -> None:
        """``out = op(a) @ op(b)`` per channel group (operands are 2-D, groups stacked by row)."""
        matmul = self.be.xp.matmul
        g = self.groups
        if g == 1:
            matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
            return
        a3 = a.reshape(g, -1, a.shape[1])
        b3 = b.reshape(g, -1, b.shape[1])
        matmul(a3.transpose(0, 2, 1) if trans_a else a3,
               b3.transpose(0, 2, 1) if trans_b else b3,
               out=out.reshape(g, -1, out.shape[1]))

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        n = x.shape[0]
        npq = n * self.P * self.Q
        col = self.buffer("col", (self.groups * self.crs, npq))
        be.im2col(x, self.fshape, self.strides, self.padding, out=col)
        cn = self.buffer("cn", (self.nfilters, npq))
        self._gemm(self.W.value.reshape(self.nfilters, self.crs), col, cn)
        y = self.buffer("y", (n, *self.out_shape))
        relu = self._fused_relu
        be.cn_to_nchw(cn, y, bias=self.b.value if self.b is not None else None, relu=relu)
        if self.activation is not None and not relu:
            self.activation.fprop(be, y, y)
        self.y = be.quantize(y)
        return y

    def bprop(self, delta: Any) -> Any:
        be = self.be
        n = delta.shape[0]
        act = self.activation is not None and not self.skip_act_bprop
        relu = act and self._fused_relu
        if act and not relu:
            self.activation.bprop(be, self.y, delta, delta)
        cn = self.buffer("cn", (self.nfilters, n * self.P * self.Q))
        be.nchw_to_cn(delta, cn, relu_y=self.y if relu else None,
                      bias_grad=self.b.grad if self.b is not None else None)
        if self.b is not None:
            be.quantize(self.b.grad)
        col = self._buffers["col"]
        self._gemm(cn, col, self.W.grad.reshape(self.nfilters, self.crs), trans_b=True)
        be.quantize(self.W.grad)
        if not self.need_input_grad:
            return None
        # the unfolded input is no longer needed: its buffer receives the unfolded gradient
        self._gemm(self.W.value.reshape(self.nfilters, self.crs), cn, col, trans_a=True)
        dx = self.buffer("dx", (n, *self.in_shape))
        be.col2im(col, dx, self.fshape, self.strides, self.padding)
        return be.quantize(dx)

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
