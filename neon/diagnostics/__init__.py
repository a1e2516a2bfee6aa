"""Diagnostics of training: timing per layer and op, numeric ranges, overflow/underflow.

``Diagnostics(timing=True, ranges=True)`` switches them on for ``Model.fit``; the results
go into each epoch's record under ``"diagnostics"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neon.diagnostics.ranges import RangeRecorder
from neon.diagnostics.timing import LayerTimer

__all__ = ["Diagnostics", "LayerTimer", "RangeRecorder", "build_diagnostics", "flatten_record"]


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


def flatten_record(record: dict[str, Any]) -> dict[str, float]:
    """One epoch record as flat scalar metrics (for MLflow, tables and journals).

    Diagnostics become ``time_fprop_ms/<layer>``, ``overflow/<layer>``, ``underflow/<layer>``,
    ``overflow_fraction`` (all layers), ``underflow_fraction/<tensor class>`` (e.g.
    ``optimizer_state``) and ``range_max/<layer>/<tensor>``-style keys; non-numeric values
    are dropped.
    """
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "diagnostics" or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
    diag = record.get("diagnostics") or {}
    for layer, phases in (diag.get("timing") or {}).items():
        for phase, ms in phases.items():
            out[f"time_{phase}/{layer}"] = float(ms)
    for kind, frac in (diag.get("flow_total") or {}).items():
        out[f"{kind}_fraction"] = float(frac)
    for tensor_class, fractions in (diag.get("flow_classes") or {}).items():
        for kind, frac in fractions.items():
            out[f"{kind}_fraction/{tensor_class}"] = float(frac)
    for scope, fractions in (diag.get("flow") or {}).items():
        for kind, frac in fractions.items():
            out[f"{kind}/{scope}"] = float(frac)
    for layer, tensors in (diag.get("ranges") or {}).items():
        for tensor, stats in tensors.items():
            for stat in ("min", "max", "mean_abs"):
                value = stats.get(stat)
                if value is not None and value == value:
                    out[f"range_{stat}/{layer}/{tensor}"] = float(value)
    return out
