"""Diagnostics of training: timing per layer and op, numeric ranges, overflow/underflow.

``Diagnostics(timing=True, ranges=True)`` switches them on for ``Model.fit``; the results
go into each epoch's record under ``"diagnostics"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neon.diagnostics.ranges import RangeRecorder
from neon.diagnostics.timing import LayerTimer

__all__ = ["Diagnostics", "LayerTimer", "RangeRecorder", "build_diagnostics"]


@dataclass
class Diagnostics:
    """What to measure. Ranges are sampled on about ``samples`` minibatches per epoch."""

    timing: bool = False
    ranges: bool = False
    samples: int = 10

    @property
    def enabled(self) -> bool:
        return self.timing or self.ranges


def build_diagnostics(spec: Any) -> Diagnostics:
    from neon.errors import ConfigError
    from neon.registry import Registry

    if isinstance(spec, Diagnostics):
        return spec
    if spec is None or spec is False:
        return Diagnostics()
    if spec is True:
        return Diagnostics(timing=True, ranges=True)
    if not isinstance(spec, dict):
        raise ConfigError(f"expected a mapping or true/false, got {spec!r}", key="diagnostics")
    return Registry("diagnostics").instantiate(Diagnostics, dict(spec), spec=spec,
                                               where="diagnostics")
