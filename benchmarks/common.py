"""Shared benchmark helpers: timing by median of repeats, machine description, JSON results."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], Any]) -> float:
    """Seconds of one call of ``fn``: what the call returns when that is a float (a
    ``PeerProcess`` times its step where it runs, without the pipe's round trip), else the
    wall time around it."""
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    return result if isinstance(result, float) else elapsed


def median_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn) for _ in range(repeats))


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 5,
                warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, timed in alternation so that load drifts hit all."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


# The peer's process binds numpy's OpenBLAS, not neon's oneMKL (whose OpenMP runtime PyTorch's
# OpenMP calls would bind to), and uses its own OpenMP block time.
PEER_ENV: dict[str, str | None] = {"NEON_BLAS": "openblas", "KMP_BLOCKTIME": None}


class PeerProcess:
    """A contender stepping in a child process of its own, so that its thread pools and
    neon's never share a process. ``factory(*args)`` builds the step there; each call runs
    one step and returns its seconds as the child measured them. Calls alternate with the
    parent's own contenders, so both see the same load. (Measured against PyTorch in neon's
    process, with neon on OpenBLAS: PyTorch's CIFAR step 41.9 ms here, 52.1 ms there.)"""

    def __init__(self, factory: Callable[..., Callable[[], Any]], *args: Any,
                 env: dict[str, str | None] | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_peer_main, args=(child, factory, args), daemon=True)
        saved = dict(os.environ)
        try:
            for key, value in (PEER_ENV if env is None else env).items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._proc.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        child.close()
        self._reply()  # built

    def _reply(self) -> Any:
        try:
            reply = self._conn.recv()
        except EOFError:
            self._proc.join(5)
            raise RuntimeError(f"benchmark peer process exited ({self._proc.exitcode})"
                               ) from None
        if isinstance(reply, BaseException):
            raise RuntimeError("benchmark peer process failed") from reply
        return reply

    @property
    def pid(self) -> int:
        return int(self._proc.pid or 0)

    def __call__(self) -> float:
        self._conn.send("step")
        return float(self._reply())

    def close(self) -> None:
        if self._proc.is_alive():
            # a child whose step failed exits on its own, maybe between the check and the send
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._conn.send("stop")
            self._proc.join(10)
        self._conn.close()


def _peer_main(conn: Any, factory: Callable[..., Callable[[], Any]], args: tuple) -> None:
    try:
        step = factory(*args)
        conn.send("ready")
    except BaseException as exc:  # reported to the parent, which raises
        conn.send(exc)
        return
    while conn.recv() == "step":
        try:
            conn.send(timed(step))
        except BaseException as exc:
            conn.send(exc)
            return


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
