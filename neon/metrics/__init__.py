"""Metrics by YAML name: misclassification (top-k), accuracy, log_loss, mse, ..."""

from __future__ import annotations

from typing import Any

from neon.metrics.metric import METRICS, Metric
from neon.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["METRICS", "Metric", "build_metric", "build_metrics"]


def build_metric(spec: Any) -> Metric:
    if isinstance(spec, Metric):
        return spec
    return METRICS.build(spec, where="metrics")


def build_metrics(specs: Any) -> list[Metric]:
    if specs is None:
        return []
    if isinstance(specs, (str, dict, Metric)):
        specs = [specs]
    return [build_metric(s) for s in specs]
