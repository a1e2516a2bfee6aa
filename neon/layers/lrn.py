"""Local response normalization across channels (Krizhevsky et al. 2012, AlexNet)."""

from __future__ import annotations

from typing import Any

from neon.layers.layer import LAYERS, Layer

__all__ = ["LRN"]


@LAYERS.register("lrn", "local_response_norm")
class LRN(Layer):
    """``y = x / (k + alpha/depth * sum_window x**2)**beta`` over ``depth`` channels.

    Convention: alpha is divided by the window size, as in Caffe and neon (so Caffe's
    AlexNet ``local_size: 5, alpha: 1e-4, beta: 0.75``, with k = 2 from the paper, is
    ``{type: lrn, depth: 5, alpha: 1.0e-4, beta: 0.75, k: 2}``; the paper's own alpha of
    1e-4 without the division is ``alpha: 5.0e-4`` here). The window of channel c is
    [c - depth//2, c + depth//2], clipped to the existing channels.
    """

    registry_name = "lrn"

    def __init__(self, depth: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 name: str | None = None) -> None:
        super().__init__(name)
        if depth < 1 or depth % 2 == 0:
            raise ValueError(f"depth must be an odd number >= 1, got {depth}")
        if alpha < 0 or k <= 0:
            raise ValueError(f"need alpha >= 0 and k > 0, got alpha={alpha}, k={k}")
        self.depth = int(depth)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        if len(self.in_shape) < 2:
            raise ValueError(f"lrn needs (channels, ...) inputs with spatial axes, got "
                             f"{self.in_shape}")
        return self.out_shape

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        y = self.buffer("y", x.shape)
        # scale is kept in the compute dtype for bprop; only the output is stored rounded
        scale = self.buffer("scale", x.shape)
        be.lrn_fprop(x, y, scale, self.depth, self.alpha, self.beta, self.k)
        self.x, self.scale = x, scale
        self.y = be.quantize(y)
        return y

    def bprop(self, delta: Any) -> Any:
        if not self.need_input_grad:
            return None
        be = self.be
        dx = self.buffer("dx", delta.shape)
        be.lrn_bprop(self.x, self.y, self.scale, delta, dx, self.depth, self.alpha, self.beta,
                     self.k)
        return be.quantize(dx)

    def describe(self) -> str:
        return (f"{self.name}: lrn depth={self.depth} alpha={self.alpha:g} beta={self.beta:g} "
                f"k={self.k:g}")
