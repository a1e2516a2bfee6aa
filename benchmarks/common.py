"""Shared benchmark helpers: timing by median of repeats, machine description, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 5,
                warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, timed in alternation so that load drifts hit all."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import numpy

        from neon.backends import cpu_blas

        info["numpy"] = numpy.__version__
        info["cpu_blas"] = cpu_blas.BLAS.source  # the library behind the CPU engine's GEMMs
    except ImportError:  # pragma: no cover
        pass
    return info


def write_result(name: str, payload: dict[str, Any], path: str | os.PathLike[str] | None = None
                 ) -> Path:
    """Write ``payload`` (plus machine info) to ``benchmarks/results/<name>.json``."""
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **payload}
    out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def check_targets(ratios: dict[str, float], targets: dict[str, tuple[str, float]]
                  ) -> dict[str, bool]:
    """Print each ratio against its (">=" | "<=", bound) target, or as "(info)" when it
    has none; returns pass/fail per target."""
    passed = {k: (ratios[k] >= t if op == ">=" else ratios[k] <= t)
              for k, (op, t) in targets.items()}
    for k, r in ratios.items():
        if k in targets:
            op, t = targets[k]
            print(f"  {k:24s} {r:6.3f}  (target {op} {t})  {verdict(passed[k])}")
        else:
            print(f"  {k:24s} {r:6.3f}  (info)")
    return passed


def targets_text(targets: dict[str, tuple[str, float]]) -> dict[str, str]:
    """The targets as the JSON files hold them: ``{"name": ">= 1.0"}``."""
    return {k: f"{op} {t}" for k, (op, t) in targets.items()}
