"""Layers, registered by the ``type:`` name used in model YAML files.

Each module registers its classes with ``@LAYERS.register(...)``; all modules of this
package are imported here, so a new layer is one new file.
"""

from __future__ import annotations

from typing import Any

from neon.layers.layer import LAYERS, Layer, Param
from neon.registry import import_submodules

import_submodules(__name__, __path__)

from neon.layers.activation import ActivationLayer  # noqa: E402
from neon.layers.affine import Affine  # noqa: E402
from neon.layers.dropout import Dropout  # noqa: E402
from neon.layers.normalization import BatchNorm  # noqa: E402

__all__ = [
    "LAYERS",
    "ActivationLayer",
    "Affine",
    "BatchNorm",
    "Dropout",
    "Layer",
    "Param",
    "build_layer",
]


def build_layer(spec: Any, where: str | None = None) -> Layer:
    """A Layer from an instance or a ``{type: ...}`` mapping."""
    if isinstance(spec, Layer):
        return spec
    return LAYERS.build(spec, where=where)
