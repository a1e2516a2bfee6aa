"""Autoencoders: models trained to reproduce their input (targets = inputs).

``model: {type: autoencoder, layers: [...], cost: mse}`` in a model YAML. The training and
validation data's labels are ignored: each batch's target is its own (clean) input,
flattened to the model's output shape, so any dataset serves. A ``corrupt`` layer first
makes it a denoising autoencoder; ``tied_affine`` decoders reuse an encoder's weights
(transposed), linked here by layer name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from neon.errors import ConfigError
from neon.layers import Layer
from neon.layers.autoencoder import TiedAffine
from neon.models.model import History, Model

__all__ = ["Autoencoder", "ReconstructionTargets"]


class ReconstructionTargets:
    """Wraps a data iterator so that it yields ``(x, x)``, targets shaped ``out_shape``."""

    def __init__(self, data: Any, out_shape: tuple[int, ...]) -> None:
        self.data = data
        self.out_shape = tuple(out_shape)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for xb, _ in self.data:
            if math.prod(xb.shape[1:]) != math.prod(self.out_shape):
                raise ConfigError(
                    f"an autoencoder's output {self.out_shape} must have as many values as "
                    f"its input {tuple(xb.shape[1:])}", key="model.layers")
            yield xb, xb.reshape((len(xb), *self.out_shape))


class Autoencoder(Model):
    """A ``Model`` whose targets are its inputs; links ``tied_affine`` layers to their
    encoders and adds their share of the weight gradient after backpropagation."""

    def __init__(
        self,
        layers: Sequence[Layer | dict],
        cost: Any = "mse",
        be: Any = None,
        name: str = "autoencoder",
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(layers, cost, be=be, name=name, config=config)
        by_name = {layer.name: layer for layer in self.layers}
        self.tied: list[TiedAffine] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, TiedAffine):
                source = by_name.get(layer.tied_to)
                if source is None or self.layers.index(source) >= i:
                    raise ConfigError(
                        f"tied_to: no earlier layer named {layer.tied_to!r}; layers: "
                        + ", ".join(str(x.name) for x in self.layers[:i]),
                        key=f"model.layers ({layer.name})")
                layer.link(source)
                self.tied.append(layer)

    def bprop(self, delta: Any, timer: Any = None) -> None:
        for layer in self.tied:  # two layers share the gradient: it must be stored
            layer.source.W.fold = None
        super().bprop(delta, timer)
        with self.be.storing("gradients"):
            for layer in self.tied:  # the encoder's bprop has written its own share by now
                w = layer.source.W
                w.grad += layer.grad_W
                self.be.quantize(w.grad)

    def _wrap(self, data: Any) -> Any:
        if data is None or isinstance(data, ReconstructionTargets):
            return data
        if not self.initialized:
            self.initialize(data.shape)
        return ReconstructionTargets(data, self.out_shape)

    def fit(self, train: Any, optimizer: Any, epochs: int, callbacks: Any = None,
            valid: Any = None, metrics: Any = ("mse",), **kwargs: Any) -> History:
        """``Model.fit`` with every batch's target set to its input."""
        return super().fit(self._wrap(train), optimizer, epochs, callbacks=callbacks,
                           valid=self._wrap(valid), metrics=metrics, **kwargs)

    def eval(self, data: Any, metrics: Any = ("mse",)) -> dict[str, float]:
        return super().eval(self._wrap(data), metrics)
