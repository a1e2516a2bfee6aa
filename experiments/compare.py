"""Runs -> pandas: one row per trial, and paired comparisons of cells or architectures.

``load(experiment)`` reads the trial runs of an MLflow experiment; ``compare(df,
by="numerics")`` pairs the cells of each point (same hyperparameters, same seed) and
summarizes the differences with a 95% interval and a Wilcoxon signed-rank test;
``compare(df, by=PARAM)`` groups by a (choice) parameter such as the architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from neon.errors import UserError
from neon.registry import did_you_mean

__all__ = ["Comparison", "compare", "frame_from_runs", "load"]

META = ("run_id", "run_name", "trial_id", "number", "cell", "state", "status", "sweep")


def frame_from_runs(runs: list[Any]) -> pd.DataFrame:
    """Trial runs as a DataFrame: meta columns, ``params.<name>``-free param columns
    (``optimizer.learning_rate``), final metric columns (``val_misclassification``)."""
    rows = []
    for run in runs:
        tags = run.data.tags
        row: dict[str, Any] = {
            "run_id": run.info.run_id, "run_name": run.info.run_name,
            "trial_id": tags.get("trial_id"), "number": _int(tags.get("number")),
            "cell": tags.get("cell"), "state": tags.get("state"), "status": run.info.status,
            "sweep": tags.get("sweep"),
        }
        for k, v in run.data.params.items():
            row[k] = _number(v)
        row.update(run.data.metrics)
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["number", "cell"], na_position="last").reset_index(drop=True)
    return df


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value: str) -> Any:
    """Params are strings in MLflow; numbers come back as numbers."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f


def load(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per trial run of ``experiment`` (params and final metrics as columns)."""
    from experiments.tracking import KIND_TAG, client_for

    client = client_for(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments(max_results=1000)]
        raise UserError(f"no experiment {experiment!r}{did_you_mean(experiment, names)} in "
                        f"{client.tracking_uri}; experiments: {', '.join(names) or 'none'}")
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = 'trial'",
                                  max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return frame_from_runs(runs)


@dataclass
class Comparison:
    """A comparison table plus its summary numbers."""

    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    by: str = "numerics"
    metric: str = "val_misclassification"

    def __str__(self) -> str:
        from neon.cli import format_table

        rows = self.table.reset_index().to_dict("records")
        cols = [str(c) for c in self.table.reset_index().columns]
        text = format_table([{str(k): v for k, v in r.items()} for r in rows], cols)
        lines = [f"{self.metric} by {self.by}:", text]
        if self.summary:
            lines.append("")
            lines += [f"{k}: {_fmt(v)}" for k, v in self.summary.items()]
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def trained_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of trials that trained their whole budget (completed, or pruned at a rung)."""
    return df[df["state"].isin(["completed", "pruned"])] if "state" in df else df


def _usable(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        raise UserError("no trial runs to compare")
    return trained_rows(df)


def compare(df: pd.DataFrame, by: str = "numerics", metric: str = "val_misclassification",
            baseline: str | None = None, within: float = 0.005) -> Comparison:
    """Paired table of cells (``by="numerics"`` or ``"backend"``/``"cell"``) or a per-option
    table of a parameter (``by="architecture"`` picks the ``*layers*`` choice parameter).

    ``within`` is the tolerance of "as good as the baseline" (0.005 = half a percentage
    point of a fraction such as misclassification).
    """
    ok = _usable(df)
    if metric not in df.columns:
        metrics = [c for c in df.columns if c not in META and df[c].dtype.kind == "f"]
        raise UserError(f"no metric {metric!r}{did_you_mean(metric, metrics)}; metrics: "
                        + ", ".join(sorted(metrics)[:20]))
    if by in ("numerics", "backend", "cell"):
        return _paired(ok, by if by in df.columns else "cell", metric, baseline, within)
    if by == "architecture":
        candidates = [c for c in df.columns if "layers" in c and c not in META]
        if not candidates:
            raise UserError("no architecture parameter (a choice over 'layers'); give the "
                            "parameter name with --by")
        by = candidates[0]
    if by not in df.columns:
        params = [c for c in df.columns if c not in META and df[c].dtype.kind in "Oi"]
        raise UserError(f"no parameter {by!r}{did_you_mean(by, list(df.columns))}; try one "
                        f"of: numerics, architecture, {', '.join(params[:10])}")
    return _grouped(ok, by, metric)


def _paired(df: pd.DataFrame, by: str, metric: str, baseline: str | None,
            within: float) -> Comparison:
    values = df.pivot_table(index="number", columns=by, values=metric, aggfunc="last")
    cells = list(values.columns)
    if len(cells) < 2:
        raise UserError(f"only one {by} value ({cells}); nothing to pair")
    base = baseline or ("fp32" if "fp32" in cells else cells[0])
    if base not in cells:
        raise UserError(f"no {by} {base!r}; values: {', '.join(map(str, cells))}")
    other = [c for c in cells if c != base]
    table = pd.DataFrame(index=values.index)
    table[str(base)] = values[base]
    seconds = df.pivot_table(index="number", columns=by, values="trial_seconds",
                             aggfunc="last") if "trial_seconds" in df else None
    overflow = df.pivot_table(index="number", columns=by, values="overflow_fraction",
                              aggfunc="last") if "overflow_fraction" in df else None
    summary: dict[str, Any] = {"baseline": base}
    for cell in other:
        table[str(cell)] = values[cell]
        delta = values[cell] - values[base]
        table[f"delta {cell}"] = delta
        if seconds is not None and cell in seconds and base in seconds:
            table[f"time {cell}/{base}"] = seconds[cell] / seconds[base]
        if overflow is not None and cell in overflow:
            table[f"overflow {cell}"] = overflow[cell]
        summary.update(_paired_summary(delta.dropna(), str(cell), within))
    table = table.dropna(subset=[str(base)])
    return Comparison(table, summary, by, metric)


def _paired_summary(delta: pd.Series, cell: str, within: float) -> dict[str, Any]:
    from scipy import stats

    n = int(delta.size)
    out: dict[str, Any] = {f"{cell}: pairs": n}
    if n == 0:
        return out
    mean = float(delta.mean())
    out[f"{cell}: mean delta"] = mean
    if n > 1:
        sem = float(delta.std(ddof=1)) / math.sqrt(n)
        half = float(stats.t.ppf(0.975, n - 1)) * sem
        out[f"{cell}: 95% interval"] = (mean - half, mean + half)
        nonzero = delta[delta != 0]
        if nonzero.size > 0:
            out[f"{cell}: wilcoxon p"] = float(stats.wilcoxon(delta, zero_method="wilcox").pvalue)
        else:
            out[f"{cell}: wilcoxon p"] = 1.0
    out[f"{cell}: share within {within:g}"] = float((delta.abs() <= within + 1e-12).mean())
    return out


def _grouped(df: pd.DataFrame, by: str, metric: str) -> Comparison:
    """Per option of ``by`` (per cell too when there are several): count, best, median."""
    keys = [by, "cell"] if "cell" in df and df["cell"].nunique() > 1 else [by]
    groups = df.groupby(keys)[metric]
    table = pd.DataFrame({
        "trials": groups.size(),
        "best": groups.min(),
        "median": groups.median(),
        "mean": groups.mean(),
    })
    if "trial_seconds" in df:
        table["mean seconds"] = df.groupby(keys)["trial_seconds"].mean()
    summary: dict[str, Any] = {}
    if not table.empty:
        best = table["best"].idxmin()
        summary["best option"] = best[0] if isinstance(best, tuple) else best
    options = list(dict.fromkeys(df[by].dropna()))
    if len(options) == 2:
        from scipy import stats

        a, b = (df[df[by] == k][metric].dropna() for k in options)
        if len(a) >= 2 and len(b) >= 2:
            summary["mann-whitney p"] = float(stats.mannwhitneyu(a, b).pvalue)
    return Comparison(table, summary, by, metric)
