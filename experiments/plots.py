"""Figures of a sweep: optimization history, learning curves, fp16-vs-fp32, parameters.

Each function returns a matplotlib Figure (Agg backend, no display needed); the sweep's
parent MLflow run gets them as PNG artifacts and ``neon-search compare --plots DIR``
writes them to files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

INACTIVE_Y = -0.08  # where a parameter that does not apply to a trial is drawn

__all__ = [
    "frame_figures",
    "learning_curves",
    "optimization_history",
    "paired_scatter",
    "parallel_coordinates",
    "save_figures",
    "sweep_figures",
]


def optimization_history(numbers: Sequence[int], values: Sequence[float], metric: str,
                         mode: str = "min") -> plt.Figure:
    """Each point's value and the best so far, in the order the points were proposed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    order = np.argsort(numbers)
    n = np.asarray(numbers)[order]
    v = np.asarray(values, dtype=float)[order]
    best = np.minimum.accumulate(v) if mode == "min" else np.maximum.accumulate(v)
    ax.scatter(n, v, s=14, alpha=0.6, label="trial")
    ax.step(n, best, where="post", color="C3", label="best so far")
    ax.set_xlabel("point (order proposed)")
    ax.set_ylabel(metric)
    ax.set_title("optimization history")
    ax.legend()
    fig.tight_layout()
    return fig


def learning_curves(curves: dict[str, tuple[Sequence[int], Sequence[float]]],
                    metric: str) -> plt.Figure:
    """``{label: (epochs, values)}`` of the top trials."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (epochs, values) in curves.items():
        ax.plot(epochs, values, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("learning curves of the top trials")
    if curves:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def paired_scatter(base: Sequence[float], other: Sequence[float], base_name: str,
                   other_name: str, metric: str) -> plt.Figure:
    """One dot per point: the baseline cell's value against the other cell's."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    x = np.asarray(base, dtype=float)
    y = np.asarray(other, dtype=float)
    ax.scatter(x, y, s=16, alpha=0.7)
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8, label="equal")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.legend()
    ax.set_xlabel(f"{metric} ({base_name})")
    ax.set_ylabel(f"{metric} ({other_name})")
    ax.set_title(f"{other_name} vs {base_name}, paired by seed")
    fig.tight_layout()
    return fig


def parallel_coordinates(params: pd.DataFrame, values: Sequence[float], metric: str,
                         mode: str = "min") -> plt.Figure:
    """Each trial a line across its (normalized) parameters, colored by the metric."""
    cols = list(params.columns)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(cols) + 2), 4))
    if not cols:
        ax.set_title("no parameters")
        return fig
    scaled = pd.DataFrame(index=params.index)
    labels = {}
    for c in cols:
        col = params[c]
        present = col.notna()
        numeric = pd.to_numeric(col, errors="coerce")
        if present.any() and numeric[present].notna().all():
            lo, hi = float(numeric.min()), float(numeric.max())
            logscale = lo > 0 and hi / lo > 100
            data = np.log10(numeric) if logscale else numeric
            lo2, hi2 = float(data.min()), float(data.max())
            scaled[c] = (data - lo2) / (hi2 - lo2) if hi2 > lo2 else data * 0 + 0.5
            labels[c] = f"{c}\n[{lo:.3g}, {hi:.3g}]" + (" log" if logscale else "")
        else:
            text = col.map(lambda v: "-" if pd.isna(v) else str(v))
            cats = sorted(text[present].unique())
            codes = text.map({k: i for i, k in enumerate(cats)})
            scaled[c] = codes / max(1, len(cats) - 1) if len(cats) > 1 else codes * 0 + 0.5
            labels[c] = f"{c}\n{{{', '.join(cats)}}}"
        scaled[c] = scaled[c].fillna(INACTIVE_Y)  # parameters of unselected options
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    norm = plt.Normalize(finite.min(), finite.max()) if finite.size else plt.Normalize(0, 1)
    cmap = plt.get_cmap("viridis_r" if mode == "min" else "viridis")
    x = np.arange(len(cols))
    for i, (_, row) in enumerate(scaled.iterrows()):
        color = cmap(norm(v[i])) if math.isfinite(v[i]) else (0.7, 0.7, 0.7, 0.5)
        ax.plot(x, row.values, color=color, alpha=0.8, lw=1.2)
    ax.set_xticks(x)
    ax.set_xticklabels([labels[c] for c in cols], fontsize=7)
    ax.set_yticks([])
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=metric)
    ax.set_title("parameters of every trial")
    fig.tight_layout()
    return fig


def sweep_figures(result: Any, top: int = 5) -> dict[str, plt.Figure]:
    """The four figures of a finished ``SweepResult`` (logged to the parent run)."""
    sweep = result.sweep
    metric, mode = sweep.objective.metric, sweep.objective.mode
    objective = [t for t in result.objective_trials() if t.value(metric) is not None]
    figs: dict[str, plt.Figure] = {}
    if not objective:
        return figs
    figs["optimization_history"] = optimization_history(
        [t.number for t in objective], [t.value(metric) for t in objective], metric, mode)
    curves = {}
    for t in result.ranked(completed_only=False)[:top]:
        pts = [(int(r["epoch"]), r[metric]) for r in t.history if metric in r]
        if pts:
            curves[t.name] = ([p[0] for p in pts], [p[1] for p in pts])
    figs["learning_curves"] = learning_curves(curves, metric)
    cells = [c.name for c in sweep.cells]
    if len(cells) > 1:
        base = sweep.objective_cell
        other = next(c for c in cells if c != base)
        by = {(t.number, t.cell): t for t in result.trials}
        pairs = [(by[(n, base)].value(metric), by[(n, other)].value(metric))
                 for n in result.points
                 if (n, base) in by and (n, other) in by and by[(n, base)].state.ok
                 and by[(n, other)].state.ok and by[(n, base)].epochs == by[(n, other)].epochs]
        if pairs:
            figs["paired_scatter"] = paired_scatter([p[0] for p in pairs],
                                                    [p[1] for p in pairs], base, other, metric)
    params = pd.DataFrame([t.point for t in objective])
    figs["parallel_coordinates"] = parallel_coordinates(
        params, [t.value(metric) for t in objective], metric, mode)
    return figs


def frame_figures(df: pd.DataFrame, metric: str, histories: dict[str, tuple[list, list]],
                  by: str = "cell", mode: str = "min") -> dict[str, plt.Figure]:
    """The same figures from ``experiments.load`` output (``compare --plots``)."""
    from experiments.comparison import META, pair_keys, trained_rows

    figs: dict[str, plt.Figure] = {}
    ok = trained_rows(df)
    ok = ok[ok[metric].notna()] if metric in ok else ok.iloc[0:0]
    if ok.empty:
        return figs
    cells = list(dict.fromkeys(ok[by].dropna())) if by in ok else []
    base = "fp32" if "fp32" in cells else (cells[0] if cells else None)
    first = ok[ok[by] == base] if base is not None else ok
    figs["optimization_history"] = optimization_history(
        first["number"].fillna(0).astype(int).tolist(), first[metric].tolist(), metric, mode)
    figs["learning_curves"] = learning_curves(histories, metric)
    if len(cells) > 1:
        other = next(c for c in cells if c != base)
        pivot = ok.pivot_table(index=pair_keys(ok), columns=by, values=metric, aggfunc="first")
        pivot = pivot.dropna(subset=[base, other])
        if not pivot.empty:
            figs["paired_scatter"] = paired_scatter(pivot[base], pivot[other], str(base),
                                                    str(other), metric)
    skip = set(META) | {"numerics", "backend", "seed"}
    params = [c for c in df.columns if "." in c and c not in skip and not c.startswith(
        ("time_", "overflow", "underflow", "range_"))]
    if params:
        figs["parallel_coordinates"] = parallel_coordinates(
            first[params].reset_index(drop=True), first[metric].tolist(), metric, mode)
    return figs


def save_figures(figs: dict[str, plt.Figure], folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
