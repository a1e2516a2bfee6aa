"""Experiment records: MLflow tracking of sweeps and runs, comparisons, plots.

``experiments.load(experiment)`` gives a pandas DataFrame of trials and
``experiments.compare(df, by="numerics")`` the paired fp16-vs-fp32 table.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compare", "load"]


def load(experiment: str, tracking_uri: str | None = None) -> Any:
    """One row per trial of an MLflow experiment (see ``experiments.compare.load``)."""
    from experiments.compare import load as _load

    return _load(experiment, tracking_uri)


def compare(df: Any, by: str = "numerics", metric: str = "val_misclassification",
            **kwargs: Any) -> Any:
    """Paired or grouped comparison table (see ``experiments.compare.compare``)."""
    from experiments.compare import compare as _compare

    return _compare(df, by=by, metric=metric, **kwargs)
