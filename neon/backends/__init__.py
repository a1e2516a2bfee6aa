"""Compute backends (CPU numpy, GPU CuPy) and numeric representations.

``gen_backend(name, numerics, stochastic_rounding, seed)`` is the one entry point; backends
register themselves by name in ``BACKENDS``.
"""

from __future__ import annotations

import sys
from typing import Any

from neon.backends.backend import Backend, FlowCounter, MaxPoolArrays
from neon.backends.numerics import (
    FORMATS,
    RECIPES,
    TENSOR_CLASSES,
    Format,
    Storage,
    get_format,
    resolve_storage,
)
from neon.registry import Registry

__all__ = ["BACKENDS", "FORMATS", "RECIPES", "TENSOR_CLASSES", "Backend", "FlowCounter",
           "Format", "MaxPoolArrays", "Storage", "gen_backend", "get_format",
           "resolve_storage"]

BACKENDS: Registry[Backend] = Registry("backend", key="name")


def _cpu(**kwargs: Any) -> Backend:
    if "neon.backends.cpu" not in sys.modules:  # its first import compiles the kernels
        from neon.backends.kernel_cache import announce

        announce()
    from neon.backends.cpu import CPUBackend

    return CPUBackend(**kwargs)


def _gpu(**kwargs: Any) -> Backend:
    from neon.backends.gpu import GPUBackend

    return GPUBackend(**kwargs)


BACKENDS.register("cpu")(_cpu)
BACKENDS.register("gpu")(_gpu)


def gen_backend(
    name: str = "cpu",
    numerics: str = "fp32",
    stochastic_rounding: bool = False,
    seed: int = 0,
    recipe: str | None = None,
    storage: dict[str, str] | None = None,
    **options: Any,
) -> Backend:
    """Make a backend: ``gen_backend('cpu', 'fp16', stochastic_rounding=True, seed=0)``.

    ``recipe`` (``mixed``, the default for fp16/bf16, or ``pure``) and ``storage``
    (``{tensor class: format}`` overrides) say which tensors are stored in which format
    (``numerics.resolve_storage``)."""
    resolve_storage(numerics, recipe, storage)  # validate early with a clear message
    factory = BACKENDS.get(name)
    return factory(
        numerics=numerics, stochastic_rounding=stochastic_rounding, seed=seed, recipe=recipe,
        storage=storage, **options
    )
