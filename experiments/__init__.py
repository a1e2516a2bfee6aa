"""Experiment records: MLflow tracking of sweeps and runs, comparisons, plots.

``experiments.load(experiment)`` gives a pandas DataFrame of the trials of the experiment's
latest sweep and ``experiments.compare(df, by="numerics")`` the paired fp16-vs-fp32 table.
The implementation is ``experiments.comparison`` (a submodule named ``compare`` would
replace this function as an attribute of the package once imported).
"""

from __future__ import annotations

from typing import Any

__all__ = ["compare", "load"]


def load(experiment: str, tracking_uri: str | None = None, sweep: str = "latest",
         quiet: bool = False) -> Any:
    """One row per trial of one sweep (``latest``, ``all``, a name or a parent run id) of an
    MLflow experiment (see ``experiments.comparison.load``)."""
    from experiments.comparison import load as _load

    return _load(experiment, tracking_uri, sweep=sweep, quiet=quiet)


def compare(df: Any, by: str = "numerics", metric: str = "val_misclassification",
            **kwargs: Any) -> Any:
    """Paired or grouped comparison table (see ``experiments.comparison.compare``)."""
    from experiments.comparison import compare as _compare

    return _compare(df, by=by, metric=metric, **kwargs)
