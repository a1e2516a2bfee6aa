"""Text reports of a sweep: leaderboard, paired comparison of cells, JSON export."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from neon.text import format_table
from search.controller import SweepResult
from search.trial import Trial, TrialState

__all__ = [
    "leaderboard",
    "paired_table",
    "plural",
    "results_json",
    "summary_line",
    "write_results",
]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _row(t: Trial, metric: str) -> dict[str, Any]:
    return {"trial": t.name, metric: t.value(metric), "epochs": t.epochs, "seconds": t.seconds,
            "params": ", ".join(f"{k}={_short(v)}" for k, v in t.point.items())}


def leaderboard(result: SweepResult, top: int = 5) -> str:
    """The best ``top`` completed points of the objective cell with their parameters, then
    the pruned ones apart (their values are at fewer epochs, so they are not ranked with the
    completed)."""
    metric, mode = result.sweep.objective.metric, result.sweep.objective.mode
    ranking, pruned = result.ranking(), result.pruned()
    parts = []
    if ranking:
        rows = [{"rank": rank, **_row(t, metric)} for rank, t in enumerate(ranking[:top], 1)]
        top_of = f"top {len(rows)} of " if len(rows) < len(ranking) else ""
        parts.append(f"{top_of}{_count(len(ranking), 'completed trial')} (full budget) by "
                     f"{metric} ({mode}), cell {result.sweep.objective_cell}:\n"
                     + format_table(rows, ["rank", "trial", metric, "epochs", "seconds",
                                           "params"]))
    elif pruned:
        parts.append(f"no trial completed its full budget: none is ranked by {metric}")
    else:
        return "no trial finished with a value of " + metric
    if pruned:
        more = f"\n({len(pruned) - top} more)" if len(pruned) > top else ""
        parts.append(f"pruned early (best at their rung): {_count(len(pruned), 'trial')} "
                     f"stopped by the scheduler, by epochs reached, then {metric}:\n"
                     + format_table([_row(t, metric) for t in pruned[:top]],
                                    ["trial", "epochs", metric, "seconds", "params"]) + more)
    return "\n\n".join(parts)


def paired_table(result: SweepResult, limit: int = 10) -> str:
    """One row per point: each cell's objective metric and seconds, and the time ratio."""
    cells = [c.name for c in result.sweep.cells]
    if len(cells) < 2:
        return ""
    metric = result.sweep.objective.metric
    base = result.sweep.objective_cell
    others = [c for c in cells if c != base]
    by = {(t.number, t.cell): t for t in result.trials}
    rows = []
    for number in sorted(result.points):
        ref = by.get((number, base))
        if ref is None or not ref.state.ok:
            continue
        row: dict[str, Any] = {"point": number, base: ref.value(metric)}
        for cell in others:
            t = by.get((number, cell))
            if t is None or not t.state.ok or t.epochs != ref.epochs:
                row[cell] = "failed" if t is not None and not t.state.ok else "-"
                continue
            row[cell] = t.value(metric)
            if ref.value(metric) is not None and t.value(metric) is not None:
                row[f"delta {cell}"] = t.value(metric) - ref.value(metric)
            if ref.seconds > 0:
                row[f"time {cell}/{base}"] = t.seconds / ref.seconds
        row["epochs"] = ref.epochs
        rows.append(row)
    if not rows:
        return ""
    cols = ["point", "epochs", base]
    for cell in others:
        cols += [cell, f"delta {cell}", f"time {cell}/{base}"]
    shown = rows[:limit]
    more = f"\n({len(rows) - limit} more points)" if len(rows) > limit else ""
    return f"{metric} per point, paired by seed:\n" + format_table(shown, cols) + more


def summary_line(result: SweepResult) -> str:
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{plural(len(result.points), 'point')}, {plural(len(result.trials), 'trial')} " \
           f"({parts}) in {result.seconds:.1f} s"


def plural(n: int, word: str) -> str:
    """``1 point``, ``2 points``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def results_json(result: SweepResult) -> dict[str, Any]:
    """Every trial (id, point, cell, state, final metrics, epochs, seconds, error), the
    leaderboard's ``ranking`` of the completed (``best`` is its first) and the ``pruned``."""
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    trials = []
    for t in result.trials:
        trials.append({
            "id": t.id, "name": t.name, "number": t.number, "cell": t.cell,
            "point": t.point, "overrides": t.overrides, "seed": t.seed,
            "state": t.state.value, "epochs": t.epochs, "seconds": t.seconds,
            "metrics": {k: clean(v) for k, v in t.metrics.items()},
            "history": t.history, "error": t.error, "attempts": t.attempts,
        })
    metric = result.sweep.objective.metric

    def entry(t: Trial) -> dict[str, Any]:
        return {"id": t.id, "name": t.name, "value": clean(t.value(metric)), "epochs": t.epochs}

    best = result.best
    return {
        "sweep": result.sweep.name,
        "objective": {"metric": result.sweep.objective.metric,
                      "mode": result.sweep.objective.mode,
                      "cell": result.sweep.objective_cell},
        "best": None if best is None else {**entry(best), "point": best.point},
        "ranking": [{"rank": rank, **entry(t)} for rank, t in enumerate(result.ranking(), 1)],
        "pruned": [entry(t) for t in result.pruned()],
        "seconds": result.seconds,
        "states": {s.value: len(result.by_state(s)) for s in TrialState},
        "trials": trials,
    }


def write_results(result: SweepResult, path: str | os.PathLike[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(results_json(result), fh, indent=2, default=str)
