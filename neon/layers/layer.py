"""Layer base class and the Param record that optimizers update.

Layers are configured with the per-example input shape, allocate their parameters on a
backend, and then run ``fprop``/``bprop`` on batches whose first axis is the batch. Output
and gradient buffers are reused between minibatches of the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from neon.backends.backend import Backend
from neon.registry import Registry

__all__ = ["LAYERS", "GradientFold", "Layer", "Param"]

LAYERS: Registry[Layer] = Registry("layer")


class GradientFold(NamedTuple):
    """An optimizer's request for one step: write ``alpha * grad + beta * target`` into
    ``target`` (its state) instead of storing the gradient (``Optimizer.fold_updates``)."""

    target: Any
    alpha: float
    beta: float


@dataclass(eq=False)
class Param:
    """A trainable array, its gradient and the optimizer's per-parameter state. ``fold``
    is an optimizer's request for the coming bprop; a layer that honours it (in its
    gradient GEMM or epilogue, through ``grad_target``) sets ``folded`` and leaves ``grad``
    alone. ``master`` is the wider copy the optimizer steps where the backend's storage
    keeps one (``Backend.attach_master``); layers read ``value``."""

    name: str
    value: Any
    grad: Any
    layer: str = ""
    decay: bool = True  # weight decay applies (not to biases and normalization scales)
    state: dict[str, Any] = field(default_factory=dict)
    fold: GradientFold | None = None
    folded: bool = False
    master: Any = None

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.name}"

    @property
    def primary(self) -> Any:
        """The array an optimizer steps: the master copy where there is one, else
        ``value``."""
        return self.value if self.master is None else self.master

    def grad_target(self) -> tuple[Any, float, float]:
        """``(array, alpha, beta)``: where a layer writes ``alpha * gradient + beta * array``
        this step. The fold's target (marking it ``folded``) when the optimizer asked for
        one, else ``grad`` with 1 and 0."""
        fold = self.fold
        if fold is None:
            return self.grad, 1.0, 0.0
        self.folded = True
        return fold


class Layer:
    """Base class of layers.

    Subclasses implement ``configure`` (shape inference), ``allocate`` (parameters),
    ``fprop`` and ``bprop``. ``need_input_grad`` is cleared by the model for the first layer
    so that it skips computing a gradient nobody reads.
    """

    registry_name = "layer"

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.be: Backend | None = None
        self.in_shape: tuple[int, ...] = ()
        self.out_shape: tuple[int, ...] = ()
        self.need_input_grad = True
        self.params: list[Param] = []
        self._buffers: dict[str, Any] = {}

    # ----------------------------------------------------------------- set-up
    def expand(self) -> list[Layer]:
        """The layers this spec stands for (e.g. affine + batch norm + activation)."""
        return [self]

    @staticmethod
    def with_batch_norm(base: Layer, activation: Any) -> list[Layer]:
        """``base`` (built without bias), batch norm, then ``activation`` if any: what
        ``batch_norm: true`` on a layer with a fused activation expands to."""
        from neon.layers.activation import ActivationLayer
        from neon.layers.normalization import BatchNorm

        layers: list[Layer] = [base, BatchNorm()]
        if activation is not None:
            layers.append(ActivationLayer(activation))
        return layers

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Record the per-example input shape and return the output shape."""
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = self.in_shape
        return self.out_shape

    def allocate(self, be: Backend) -> None:
        """Create parameters on ``be``; called once after ``configure``."""
        self.be = be

    def add_param(self, name: str, value: Any, decay: bool = True) -> Param:
        assert self.be is not None
        param = Param(name, value, self.be.zeros(value.shape), layer=self.name or "", decay=decay)
        self.params.append(param)
        return param

    def states(self) -> dict[str, Any]:
        """Non-trainable arrays saved with the model (e.g. batch norm's running statistics)."""
        return {}

    # ----------------------------------------------------------------- compute
    def fprop(self, x: Any, inference: bool = False) -> Any:
        raise NotImplementedError

    def bprop(self, delta: Any) -> Any:
        raise NotImplementedError

    # ----------------------------------------------------------------- helpers
    def buffer(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """A persistent array for ``key``, reallocated only when the shape changes."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != tuple(shape) or (dtype is not None and buf.dtype != dtype):
            assert self.be is not None, f"{self.name}: allocate() was not called"
            buf = self.be.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf

    @property
    def nparams(self) -> int:
        return sum(int(math.prod(p.value.shape)) for p in self.params)

    def describe(self) -> str:
        """One line for model summaries."""
        return f"{self.name}: {self.registry_name} {self.in_shape} -> {self.out_shape}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
