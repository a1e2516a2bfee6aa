"""Search-quality benchmark: grid, random, TPE and Spearmint on standard test functions.

Branin, Hartmann3, Hartmann6, six-hump camelback and 4-D Rosenbrock on their standard
domains, several seeds each, all strategies in the same run.  Reports the best value after
25/50/100/200 evaluations (median, mean, std over seeds), the median seconds per ``ask``
at 50/100/200 observations, and PASS/FAIL for the project's targets with the ratio against
the peers measured in the same run.  Writes ``benchmarks/results/search_quality.json``.

    python benchmarks/search_quality.py            # full run (~20 min on 2 cores)
    python benchmarks/search_quality.py --quick    # ~2 min subset
"""

from __future__ import annotations

import os

# one BLAS thread per worker process: the workers already use every core
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.space import Point, SearchSpace  # noqa: E402
from search.strategies import STRATEGIES  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "search_quality.json"
CHECKPOINTS = (25, 50, 100, 200)
ASK_AT = (50, 100, 200)
STRATEGY_NAMES = ("grid", "random", "tpe", "spearmint")
NO_RESTART = "spearmint_no_restart"
"""Timing control: Spearmint without restarts keeps every observation in one GP."""


# -- test functions -----------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A test function on its standard domain, with its known global minimum."""

    name: str
    bounds: tuple[tuple[float, float], ...]
    optimum: float
    fn: Callable[[np.ndarray], float]

    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(
            {f"x{i}": ("uniform", lo, hi) for i, (lo, hi) in enumerate(self.bounds)}
        )

    def __call__(self, point: Point) -> float:
        return float(self.fn(np.array([point[f"x{i}"] for i in range(len(self.bounds))])))


def branin(x: np.ndarray) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * math.cos(x[0]) + s


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470],
                         [1091, 8732, 5547], [381, 5743, 8828]])
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886],
                         [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650],
                         [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann3(x: np.ndarray) -> float:
    return float(-(_H_ALPHA * np.exp(-(_H3_A * (x - _H3_P) ** 2).sum(1))).sum())


def hartmann6(x: np.ndarray) -> float:
    return float(-(_H_ALPHA * np.exp(-(_H6_A * (x - _H6_P) ** 2).sum(1))).sum())


def camelback(x: np.ndarray) -> float:
    x1, x2 = x
    return (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2


def rosenbrock(x: np.ndarray) -> float:
    return float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


PROBLEMS = {
    p.name: p
    for p in (
        Problem("branin", ((-5.0, 10.0), (0.0, 15.0)), 0.397887357729739, branin),
        Problem("hartmann3", ((0.0, 1.0),) * 3, -3.862782147820756, hartmann3),
        Problem("hartmann6", ((0.0, 1.0),) * 6, -3.322368011415515, hartmann6),
        Problem("camelback", ((-3.0, 3.0), (-2.0, 2.0)), -1.031628453489877, camelback),
        Problem("rosenbrock4", ((-5.0, 10.0),) * 4, 0.0, rosenbrock),
    )
}


# -- one run ------------------------------------------------------------------------------
def run_one(task: tuple[str, str, int, int, dict[str, Any]]) -> dict[str, Any]:
    """One strategy on one problem with one seed: values of every evaluation, ask times."""
    problem_name, label, seed, budget, options = task
    strategy = "spearmint" if label == NO_RESTART else label
    problem = PROBLEMS[problem_name]
    space = problem.space()
    if strategy == "grid":
        return _run_grid(problem, space, budget)
    searcher = STRATEGIES.build({"type": strategy, **options}, space=space, seed=seed)
    values: list[float] = []
    ask_seconds: dict[str, float] = {}
    started = time.perf_counter()
    while len(values) < budget:
        t0 = time.perf_counter()
        [point] = searcher.ask()
        if len(values) in ASK_AT:
            ask_seconds[str(len(values))] = time.perf_counter() - t0
        value = problem(point)
        searcher.tell(point, value)
        values.append(value)
    if budget in ASK_AT:  # the ask made with ``budget`` observations
        t0 = time.perf_counter()
        searcher.ask()
        ask_seconds[str(budget)] = time.perf_counter() - t0
    return {"problem": problem_name, "strategy": label, "seed": seed, "values": values,
            "ask_seconds": ask_seconds, "seconds": time.perf_counter() - started}


def _run_grid(problem: Problem, space: SearchSpace, budget: int) -> dict[str, Any]:
    """Grids are deterministic: for each checkpoint B, the finest grid with <= B points."""
    best: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for checkpoint in (c for c in CHECKPOINTS if c <= budget):
        points_per_dim = max(1, math.floor(checkpoint ** (1 / len(space)) + 1e-9))
        grid = STRATEGIES.build({"type": "grid", "grid_points": points_per_dim}, space=space)
        points = grid.ask(grid.size)
        best[str(checkpoint)] = min(problem(p) for p in points)
        sizes[str(checkpoint)] = len(points)
    return {"problem": problem.name, "strategy": "grid", "seed": 0, "grid_best": best,
            "grid_sizes": sizes, "ask_seconds": {}, "seconds": 0.0}


# -- aggregation --------------------------------------------------------------------------
def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median": float(statistics.median(xs)),
        "mean": float(statistics.fmean(xs)),
        "std": float(statistics.pstdev(xs)) if len(xs) > 1 else 0.0,
        "n": len(xs),
        "per_seed": [float(x) for x in xs],
    }


def aggregate(runs: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for run in runs:
        entry = results.setdefault(run["problem"], {}).setdefault(
            run["strategy"], {"best": {}, "ask_seconds": {}, "_runs": []}
        )
        entry["_runs"].append(run)
    for problem_results in results.values():
        for strategy, entry in problem_results.items():
            runs_here = entry.pop("_runs")
            for checkpoint in (c for c in CHECKPOINTS if c <= budget):
                key = str(checkpoint)
                if strategy == "grid":
                    bests = [r["grid_best"][key] for r in runs_here]
                    entry.setdefault("grid_size", {})[key] = runs_here[0]["grid_sizes"][key]
                else:
                    bests = [min(r["values"][:checkpoint]) for r in runs_here]
                entry["best"][key] = _stats(bests)
            for key in (str(a) for a in ASK_AT if a <= budget):
                times = [r["ask_seconds"][key] for r in runs_here if key in r["ask_seconds"]]
                if times:
                    entry["ask_seconds"][key] = float(statistics.median(times))
            entry["seconds_per_run"] = float(statistics.fmean(r["seconds"] for r in runs_here))
    return results


def _regret_ratio(results: dict, problem: str, peer: str, stat: str, key: str) -> float | None:
    """Peer's regret over Spearmint's (> 1: Spearmint closer to the optimum)."""
    try:
        ours = results[problem]["spearmint"]["best"][key][stat]
        theirs = results[problem][peer]["best"][key][stat]
    except KeyError:
        return None
    optimum = PROBLEMS[problem].optimum
    return (theirs - optimum) / max(ours - optimum, 1e-12)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's targets, each with PASS/FAIL and peer ratios (n/a if not measured)."""
    out: list[dict[str, Any]] = []

    def best_target(label: str, problem: str, stat: str, key: str, threshold: float) -> None:
        entry = results.get(problem, {}).get("spearmint", {}).get("best", {}).get(key)
        value = entry[stat] if entry else None
        out.append({
            "target": label,
            "value": value,
            "threshold": threshold,
            "status": "n/a" if value is None else ("PASS" if value <= threshold else "FAIL"),
            "peers": {
                peer: results.get(problem, {}).get(peer, {}).get("best", {}).get(key, {}).get(stat)
                for peer in ("tpe", "random")
            },
            "regret_ratio": {
                peer: _regret_ratio(results, problem, peer, stat, key) for peer in ("tpe", "random")
            },
        })

    best_target("branin: spearmint median best @50 <= 0.3990", "branin", "median", "50", 0.3990)
    best_target("hartmann6: spearmint mean best @200 <= -3.30", "hartmann6", "mean", "200", -3.30)
    best_target("hartmann6: spearmint mean best @100 <= -3.25", "hartmann6", "mean", "100", -3.25)
    for problem in PROBLEMS:
        tpe = results.get(problem, {}).get("tpe", {}).get("best", {}).get("100", {}).get("mean")
        best_target(f"{problem}: spearmint mean best @100 < tpe's", problem, "mean", "100",
                    tpe if tpe is not None else math.nan)
        if tpe is None or out[-1]["value"] is None:
            out[-1]["status"] = "n/a"
        else:
            out[-1]["status"] = "PASS" if out[-1]["value"] < tpe else "FAIL"
    worst = None
    peers: dict[str, float | None] = {"tpe": None, "random": None}
    for problem, entry in results.items():
        for variant in ("spearmint", NO_RESTART):
            seconds = entry.get(variant, {}).get("ask_seconds", {}).get("200")
            if seconds is not None and (worst is None or seconds > worst[2]):
                worst = (problem, variant, seconds)
                peers = {p: entry.get(p, {}).get("ask_seconds", {}).get("200") for p in peers}
    out.append({
        "target": "spearmint median ask seconds @200 observations <= 1.0 (slowest: "
                  + (f"{worst[1]} on {worst[0]})" if worst else "-)"),
        "value": worst[2] if worst else None,
        "threshold": 1.0,
        "status": "n/a" if worst is None else ("PASS" if worst[2] <= 1.0 else "FAIL"),
        "peers": peers,
        "time_ratio": {p: (worst[2] / t if worst and t else None) for p, t in peers.items()},
    })
    return out


# -- reporting ----------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if abs(x) < 1e4 else f"{x:.3g}"


def table(results: dict[str, Any], target_rows: list[dict[str, Any]], budget: int) -> str:
    checkpoints = [str(c) for c in CHECKPOINTS if c <= budget]
    lines = []
    header = f"{'problem':<12} {'strategy':<20} " + " ".join(
        f"{'@' + c + ' med/mean/std':>28}" for c in checkpoints
    ) + "  ask s @50/100/200"
    lines += [header, "-" * len(header)]
    for problem, by_strategy in results.items():
        for strategy in (*STRATEGY_NAMES, NO_RESTART):
            entry = by_strategy.get(strategy)
            if entry is None:
                continue
            cells = []
            for c in checkpoints:
                s = entry["best"].get(c)
                cells.append(f"{_fmt(s['median'])}/{_fmt(s['mean'])}/{_fmt(s['std'], 3)}"
                             if s else "-")
            asks = "/".join(_fmt(entry["ask_seconds"].get(str(a)), 3) for a in ASK_AT)
            lines.append(f"{problem:<12} {strategy:<20} "
                         + " ".join(f"{c:>28}" for c in cells) + f"  {asks}")
    lines.append("")
    lines.append("targets (regret ratio = peer regret / spearmint regret; > 1 favours spearmint)")
    for row in target_rows:
        peers = ", ".join(f"{k} {_fmt(v)}" for k, v in row["peers"].items())
        ratios = row.get("regret_ratio") or row.get("time_ratio") or {}
        ratio_name = "regret ratio" if "regret_ratio" in row else "time ratio spearmint/peer"
        ratio_text = ", ".join(f"{k} {_fmt(v, 2)}" for k, v in ratios.items())
        lines.append(f"  [{row['status']:>4}] {row['target']}: {_fmt(row['value'])} "
                     f"(peers: {peers}; {ratio_name}: {ratio_text})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a ~2-minute subset: 3 seeds, 50 evaluations")
    parser.add_argument("--seeds", type=int, help="seeds per problem and strategy (default 10)")
    parser.add_argument("--budget", type=int, help="evaluations per run (default 200)")
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), help="subset")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGY_NAMES, help="subset")
    parser.add_argument("--spearmint-options", type=json.loads, default={},
                        help="JSON options for the spearmint strategy")
    parser.add_argument("--timing-seeds", type=int,
                        help="seeds of spearmint without restarts on hartmann6, a timing "
                             "control with all observations in one GP (default 3, quick 0)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON path")
    args = parser.parse_args(argv)

    seeds = args.seeds or (3 if args.quick else 10)
    budget = args.budget or (50 if args.quick else 200)
    problems = args.problems or list(PROBLEMS)
    strategies = args.strategies or list(STRATEGY_NAMES)
    tasks = []
    for problem in problems:
        for strategy in strategies:
            options = args.spearmint_options if strategy == "spearmint" else {}
            for seed in range(1 if strategy == "grid" else seeds):
                tasks.append((problem, strategy, seed, budget, options))
    timing_seeds = args.timing_seeds if args.timing_seeds is not None else (
        0 if args.quick else 3)
    if "spearmint" in strategies and "hartmann6" in problems:
        for seed in range(timing_seeds):
            options = {**args.spearmint_options, "restart": False}
            tasks.append(("hartmann6", NO_RESTART, seed, budget, options))
    # the slow ones first so the pool stays busy to the end
    tasks.sort(key=lambda t: (not t[1].startswith("spearmint"), -len(PROBLEMS[t[0]].bounds)))

    started = time.perf_counter()
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            runs = pool.map(run_one, tasks, chunksize=1)
    else:
        runs = [run_one(t) for t in tasks]
    elapsed = time.perf_counter() - started

    results = aggregate(runs, budget)
    target_rows = targets(results)
    report = {
        "config": {"seeds": seeds, "budget": budget, "problems": problems,
                   "strategies": strategies, "spearmint_options": args.spearmint_options,
                   "workers": args.workers, "quick": args.quick},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "elapsed_seconds": elapsed,
        "optima": {p: PROBLEMS[p].optimum for p in problems},
        "results": results,
        "targets": target_rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table(results, target_rows, budget))
    print(f"\n{len(tasks)} runs in {elapsed:.0f} s on {args.workers} workers -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
