"""Per-layer fprop/bprop (and optimizer update) wall time, averaged per minibatch."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["LayerTimer"]


class LayerTimer:
    """Accumulates seconds per ``(layer, phase)``; synchronizes the device around each span."""

    def __init__(self, be: Any) -> None:
        self.be = be
        self.seconds: dict[str, dict[str, float]] = {}
        self.batches = 0

    @contextlib.contextmanager
    def span(self, layer: str, phase: str) -> Iterator[None]:
        self.be.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.be.synchronize()
            row = self.seconds.setdefault(layer, {})
            row[phase] = row.get(phase, 0.0) + time.perf_counter() - start

    def summary(self) -> dict[str, dict[str, float]]:
        """``{layer: {phase + "_ms": milliseconds per batch}}``."""
        n = max(1, self.batches)
        return {
            layer: {f"{phase}_ms": 1e3 * s / n for phase, s in phases.items()}
            for layer, phases in self.seconds.items()
        }

    def reset(self) -> None:
        self.seconds.clear()
        self.batches = 0
