"""Embedding lookup: integer ids (N, T) -> vectors (N, T, nout)."""

from __future__ import annotations

from typing import Any

from neon.errors import ConfigError
from neon.initializers import Initializer, build_initializer
from neon.layers.layer import LAYERS, Layer

__all__ = ["Embedding"]


@LAYERS.register("embedding", "lookup_table")
class Embedding(Layer):
    """``y[n, t] = W[x[n, t]]`` with ``W`` of shape (vocab, nout).

    Inputs are integer ids stored as numbers (the model feeds inputs in the backend dtype);
    they must lie in ``[0, vocab)`` and be exact in the storage format (ids up to 2048 in
    fp16, 256 in bf16). The layer has no input gradient (ids are not differentiable); it is
    meant as the first layer.
    """

    registry_name = "embedding"

    def __init__(
        self,
        vocab: int,
        nout: int,
        init: str | dict | float | Initializer | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if vocab < 1 or nout < 1:
            raise ValueError(f"vocab and nout must be >= 1, got {vocab}, {nout}")
        self.vocab = int(vocab)
        self.nout = int(nout)
        self.init = build_initializer(init if init is not None else
                                      {"type": "uniform", "low": -0.1, "high": 0.1})

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        self.out_shape = (*self.in_shape, self.nout)
        return self.out_shape

    def allocate(self, be: Any) -> None:
        super().allocate(be)
        ids = be.storage.of("activations")  # the ids arrive as the model's input
        exact = 2 ** (ids.mantissa_bits + 1)
        if self.vocab > exact:
            raise ConfigError(
                f"vocab {self.vocab} > {exact}: ids are not exact in {ids.name} storage; "
                "use fp32 numerics or a smaller vocabulary", key=self.name)
        self.W = self.add_param("W", self.init(be, (self.vocab, self.nout), self.vocab,
                                               self.nout), decay=False)

    def fprop(self, x: Any, inference: bool = False) -> Any:
        xp = self.be.xp
        ids = x.reshape(-1).astype(xp.int64)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab):
            raise ValueError(f"{self.name}: ids must lie in [0, {self.vocab}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        self.ids = ids
        y = self.buffer("y", (ids.size, self.nout))
        xp.take(self.W.value, ids, axis=0, out=y)
        self.y = y.reshape((x.shape[0], *self.out_shape))
        return self.y

    def bprop(self, delta: Any) -> Any:
        be = self.be
        grad = self.W.grad
        grad.fill(0)
        be.xp.add.at(grad, self.ids, delta.reshape(-1, self.nout))
        be.quantize(grad)
        return None

    def describe(self) -> str:
        return f"{self.name}: embedding {self.vocab} ids -> {self.nout}, {self.in_shape}"
