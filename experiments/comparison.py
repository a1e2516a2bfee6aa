"""Runs -> pandas: one row per trial, and paired comparisons of cells or architectures.

``load(experiment, sweep="latest")`` reads the trial runs of one sweep (a parent run) of an
MLflow experiment, or of all its sweeps; ``compare(df, by="numerics")`` pairs the cells of
each point (same sweep, same hyperparameters, same seed) and summarizes the differences of
the complete pairs with a 95% interval and a Wilcoxon signed-rank test; ``compare(df,
by=PARAM)`` groups by a (choice) parameter such as the architecture.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from neon.errors import UserError
from neon.registry import did_you_mean

__all__ = ["Comparison", "compare", "frame_from_runs", "load"]

META = ("run_id", "run_name", "trial_id", "number", "cell", "state", "status", "sweep",
        "sweep_name")
CELL_PARAMS = ("numerics", "backend", "seed")  # logged with every trial, not tuned


def frame_from_runs(runs: list[Any]) -> pd.DataFrame:
    """Trial runs as a DataFrame: meta columns (``sweep`` is the parent run id), param
    columns by dotted name (``optimizer.learning_rate``) and final metric columns
    (``val_misclassification``); ``df.attrs["params"]`` names the param columns."""
    rows = []
    params: dict[str, None] = {}
    for run in runs:
        tags = run.data.tags
        row: dict[str, Any] = {
            "run_id": run.info.run_id, "run_name": run.info.run_name,
            "trial_id": tags.get("trial_id"), "number": _int(tags.get("number")),
            "cell": tags.get("cell"), "state": tags.get("state"), "status": run.info.status,
            "sweep": tags.get("mlflow.parentRunId"), "sweep_name": tags.get("sweep"),
        }
        for k, v in run.data.params.items():
            row[k] = _number(v)
            params[k] = None
        row.update(run.data.metrics)
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["number", "cell"], na_position="last").reset_index(drop=True)
    df.attrs["params"] = list(params)
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


def load(experiment: str, tracking_uri: str | None = None, sweep: str = "latest",
         quiet: bool = False) -> pd.DataFrame:
    """One row per trial run of one sweep of ``experiment`` (params and final metrics as
    columns).

    ``sweep`` is ``"latest"`` (the sweep started last), ``"all"``, a sweep (parent run) name
    (the latest of that name) or a parent run id. Which sweep was read, and how many others
    the experiment holds, goes to ``df.attrs["sweep_note"]`` and, unless ``quiet``, to
    stderr. A missing store is a ``UserError``; nothing is written.
    """
    from experiments.store import KIND_TAG, client_for

    client = client_for(tracking_uri, create=False)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments(max_results=1000)
                 if e.name != "Default"]
        raise UserError(f"no experiment {experiment!r}{did_you_mean(experiment, names)} in "
                        f"{client.tracking_uri}; experiments: {', '.join(names) or 'none'}")
    sweeps = _search(client, exp.experiment_id, f"tags.`{KIND_TAG}` = 'sweep'",
                     ["attributes.start_time DESC"])
    chosen, note = _select(sweeps, str(sweep), experiment)
    where = f"tags.`{KIND_TAG}` = 'trial'"
    if chosen is not None:
        where += f" and tags.`mlflow.parentRunId` = '{chosen.info.run_id}'"
    df = frame_from_runs(_search(client, exp.experiment_id, where))
    if chosen is None and len(sweeps) > 1 and not df.empty:  # oldest sweep first
        started = {r.info.run_id: i for i, r in enumerate(reversed(sweeps))}
        order = df["sweep"].map(started).fillna(len(started))
        df = df.assign(_order=order).sort_values(["_order", "number", "cell"],
                                                 na_position="last", kind="stable")
        df = df.drop(columns="_order").reset_index(drop=True)
    df.attrs["sweep_note"] = f"{note}: {len(df)} trial runs" + _others(sweeps, chosen)
    df.attrs["architecture"] = _architecture_tags([chosen] if chosen else sweeps)
    if not quiet:
        print(f"experiments.load: {df.attrs['sweep_note']}", file=sys.stderr)
    return df


def _search(client: Any, exp_id: str, where: str, order: list[str] | None = None) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([exp_id], where, max_results=5000, order_by=order,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _started(run: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.info.start_time / 1000))


def _describe(run: Any) -> str:
    return f"sweep {run.info.run_name!r} (run {run.info.run_id[:8]}, started {_started(run)})"


def _select(sweeps: list[Any], sweep: str, experiment: str) -> tuple[Any | None, str]:
    """The parent run that ``sweep`` names (None: all trials) and what was read, in words.
    ``sweeps`` are newest first."""
    if not sweeps and sweep in ("latest", "all"):
        return None, f"experiment {experiment!r} (no sweep runs: all its trials)"
    if sweep == "all":
        return None, f"all {len(sweeps)} sweeps of experiment {experiment!r}"
    if sweep == "latest":
        return sweeps[0], _describe(sweeps[0])
    by_id = [r for r in sweeps if r.info.run_id == sweep
             or (len(sweep) >= 6 and r.info.run_id.startswith(sweep))]
    if len(by_id) == 1:
        return by_id[0], _describe(by_id[0])
    named = [r for r in sweeps if r.info.run_name == sweep]
    if named:
        text = _describe(named[0])
        if len(named) > 1:
            text += f", the latest of {len(named)} sweeps named {sweep!r}"
        return named[0], text
    if not sweeps:
        raise UserError(f"no sweep {sweep!r}: experiment {experiment!r} holds no sweep runs")
    listed = ", ".join(f"{r.info.run_name} (run {r.info.run_id[:8]}, {_started(r)})"
                       for r in sweeps[:10])
    more = f" and {len(sweeps) - 10} more" if len(sweeps) > 10 else ""
    raise UserError(f"no sweep {sweep!r} in experiment {experiment!r}"
                    f"{did_you_mean(sweep, [r.info.run_name for r in sweeps])}; sweeps, newest "
                    f"first: {listed}{more}; or latest, all")


def _others(sweeps: list[Any], chosen: Any | None) -> str:
    if chosen is None or len(sweeps) < 2:
        return ""
    n = len(sweeps) - 1
    return (f"; {n} other sweep{'s' if n > 1 else ''} in the experiment (--sweep / sweep=: "
            "all, a name or a run id)")


def _architecture_tags(sweeps: list[Any]) -> list[str]:
    """The architecture parameters the sweep runs name (``neon_search.architecture``)."""
    from experiments.tracking import ARCH_TAG

    names: dict[str, None] = {}
    for run in sweeps:
        try:
            names.update(dict.fromkeys(json.loads(run.data.tags.get(ARCH_TAG, "[]"))))
        except ValueError:
            continue
    return list(names)


@dataclass
class Comparison:
    """A comparison table plus its summary numbers and the sweep(s) it was made from."""

    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    by: str = "numerics"
    metric: str = "val_misclassification"
    source: str = ""

    def __str__(self) -> str:
        from neon.text import format_table

        flat = self.table.reset_index()
        rows = [{str(k): ("-" if _missing(v) else v) for k, v in r.items()}
                for r in flat.to_dict("records")]
        text = format_table(rows, [str(c) for c in flat.columns])
        lines = [self.source] if self.source else []
        lines += [f"{self.metric} by {self.by}:", text]
        if self.summary:
            lines.append("")
            lines += [f"{k}: {_fmt(v)}" for k, v in self.summary.items()]
        return "\n".join(lines)


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def trained_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of trials that trained their whole budget (completed, or pruned at a rung)."""
    return df[df["state"].isin(["completed", "pruned"])] if "state" in df else df


def pair_keys(df: pd.DataFrame) -> list[str]:
    """The columns that make a pair: the sweep (when the frame holds several), the point
    number and the seed (when it varies). Cells are paired within a sweep, never across."""
    keys = ["sweep"] if "sweep" in df and df["sweep"].nunique(dropna=False) > 1 else []
    keys.append("number")
    if "seed" in df and df["seed"].nunique(dropna=False) > 1:
        keys.append("seed")
    return keys


def param_columns(df: pd.DataFrame) -> list[str]:
    """The tuned parameters of the trials (``numerics``, ``backend``, ``seed`` left out)."""
    names = df.attrs.get("params")
    if names is None:  # a frame built by hand: non-metric columns
        names = [c for c in df.columns if c not in META and df[c].dtype.kind in "Oib"]
    return [c for c in names if c in df.columns and c not in CELL_PARAMS]


def compare(df: pd.DataFrame, by: str = "numerics", metric: str = "val_misclassification",
            baseline: str | None = None, within: float = 0.005) -> Comparison:
    """Paired table of cells (``by="numerics"`` or ``"backend"``/``"cell"``) or a per-option
    table of a parameter (``by="architecture"``: the choice over layer lists, or ``arch``).

    Every point is a row, an incomplete pair (a cell failed or missing) included; the
    summary uses the complete pairs and counts the others. ``within`` is the tolerance of
    "as good as the baseline" (0.005 = half a percentage point of a fraction such as
    misclassification).
    """
    source = str(df.attrs.get("sweep_note", ""))
    if df.empty:
        raise UserError(f"no trial runs to compare{f' ({source})' if source else ''}")
    if metric not in df.columns:
        raise UserError(_no_metric(df, metric))
    if by in ("numerics", "backend", "cell"):
        result = _paired(df, by if by in df.columns else "cell", metric, baseline, within)
    else:
        notes: dict[str, Any] = {}
        if by == "architecture":
            by, notes = _architecture(df)
        if by not in df.columns:
            params = param_columns(df)
            raise UserError(f"no parameter {by!r}{did_you_mean(by, params)}; try one of: "
                            f"numerics, architecture, {', '.join(params[:12])}")
        result = _grouped(trained_rows(df), by, metric)
        result.summary.update(notes)
    result.source = source
    return result


def _no_metric(df: pd.DataFrame, metric: str) -> str:
    """The metric names, the final ones before the per-layer diagnostics."""
    params = set(param_columns(df)) | set(CELL_PARAMS)
    metrics = [c for c in df.columns if c not in META and c not in params
               and df[c].dtype.kind == "f"]
    layered = sorted(m for m in metrics if "/" in m)
    plain = sorted((m for m in metrics if "/" not in m),
                   key=lambda m: (not m.startswith(("val_", "test_")), m))
    text = ", ".join(plain) or "none"
    if layered:
        text += f" (and {len(layered)} per-layer ones: {', '.join(layered[:3])}, ...)"
    return f"no metric {metric!r}{did_you_mean(metric, metrics)}; metrics: {text}"


def _architecture(df: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """The architecture parameter: a choice whose options are layer lists (the sweep run
    names them), else one named ``arch`` or ``...layers``."""
    names = [str(n) for n in df.attrs.get("architecture") or []]
    names += [c for c in param_columns(df) if c == "arch" or c.rsplit(".", 1)[-1] == "layers"]
    found = [n for n in dict.fromkeys(names) if n in df.columns]
    if not found:
        params = param_columns(df)
        raise UserError("no architecture parameter (a !choice whose options are layer lists, "
                        "or a parameter named 'arch'); give one of the parameters with --by: "
                        + (", ".join(params) or "none"))
    notes: dict[str, Any] = {}
    if len(found) > 1:
        notes["architecture parameters"] = ", ".join(found)
    if df[found[0]].dtype.kind in "iu":
        notes[found[0]] = "option index of the !choice (options: the sweep run's template.yaml)"
    return found[0], notes


def _paired(df: pd.DataFrame, by: str, metric: str, baseline: str | None,
            within: float) -> Comparison:
    keys = pair_keys(df)
    repeated = df[df.duplicated([*keys, by], keep=False)]
    if not repeated.empty:
        raise UserError(f"{len(repeated)} trials share a (point, {by}): the frame mixes sweeps "
                        "without a 'sweep' column; load one sweep or all of them with "
                        "experiments.load(EXPERIMENT, sweep=...)")
    frame = df.copy()
    if "sweep" in keys:  # short ids, in the frame's order (load: oldest sweep first)
        short = frame["sweep"].fillna("-").astype(str).str[:8]
        frame["sweep"] = pd.Categorical(short, categories=list(dict.fromkeys(short)))
    ok = trained_rows(frame)
    cells = list(dict.fromkeys(frame[by].dropna()))
    if len(cells) < 2:
        raise UserError(f"only one {by} value ({cells}); nothing to pair")
    base = baseline or ("fp32" if "fp32" in cells else cells[0])
    if base not in cells:
        raise UserError(f"no {by} {base!r}; values: {', '.join(map(str, cells))}")
    cells = [base] + [c for c in cells if c != base]
    points = pd.MultiIndex.from_frame(frame[keys].drop_duplicates().sort_values(keys)) \
        if len(keys) > 1 else pd.Index(sorted(frame[keys[0]].dropna().unique()), name=keys[0])

    def wide(column: str, rows: pd.DataFrame) -> pd.DataFrame:
        out = rows.pivot_table(index=keys, columns=by, values=column, aggfunc="first",
                               observed=True) \
            if column in rows and not rows.empty else pd.DataFrame(index=points)
        return out.reindex(index=points, columns=cells)

    values = wide(metric, ok)
    seconds = wide("trial_seconds", ok) if "trial_seconds" in ok else None
    overflow = wide("overflow_fraction", ok) if "overflow_fraction" in ok else None
    states = frame.set_index([*keys, by])["state"] if "state" in frame else None
    table = pd.DataFrame(index=points)
    table[str(base)] = values[base]
    summary: dict[str, Any] = {"baseline": base}
    for cell in cells[1:]:
        table[str(cell)] = values[cell]
        delta = values[cell] - values[base]
        table[f"delta {cell}"] = delta
        if seconds is not None:
            table[f"time {cell}/{base}"] = seconds[cell] / seconds[base]
        if overflow is not None:
            table[f"overflow {cell}"] = overflow[cell]
        summary.update(_paired_summary(delta, str(cell), within))
    table["incomplete"] = [_incomplete(point, values, cells, states) for point in points]
    if not table["incomplete"].any():
        table = table.drop(columns="incomplete")
    return Comparison(table, summary, by, metric)


def _incomplete(point: Any, values: pd.DataFrame, cells: list[Any],
                states: pd.Series | None) -> str:
    """``"fp16 failed"`` for the cells of ``point`` without a value: their trial's state,
    or ``missing`` when there is no trial."""
    key = point if isinstance(point, tuple) else (point,)
    out = []
    for cell in cells:
        if not _missing(values.at[point, cell]):
            continue
        state = "missing"
        if states is not None and (*key, cell) in states.index:
            state = str(states.loc[(*key, cell)])
        out.append(f"{cell} {state}")
    return ", ".join(out)


def _paired_summary(delta: pd.Series, cell: str, within: float) -> dict[str, Any]:
    """Statistics of the complete pairs (``delta`` not NaN), and how many were not."""
    from scipy import stats

    out: dict[str, Any] = {f"{cell}: pairs": int(delta.notna().sum()),
                           f"{cell}: incomplete pairs": int(delta.isna().sum())}
    delta = delta.dropna()
    n = int(delta.size)
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
