"""Runs one job of a trial in a worker: build the model from its config, train, report.

A job trains a trial from ``start_epoch`` (restored from a checkpoint) up to ``epochs``.
The spec is plain JSON (a config and names resolved through the registries): no user code
is pickled. Every outcome is a result dict, never an exception, so that a failing trial
cannot take the sweep down: ``status`` is ``ok`` or ``failed`` with the error's last line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neon.callbacks import Callback
from neon.diagnostics import flatten_record
from neon.errors import TrainingDiverged, UserError

__all__ = ["Reporter", "process_main", "run_job"]

Reporter = Callable[[dict[str, Any]], None]


class _EpochReporter(Callback):
    def __init__(self, key: str, report: Reporter | None, history: list[dict[str, Any]]):
        self.key = key
        self.report = report
        self.history = history

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        record = flatten_record(metrics)
        self.history.append(record)
        if self.report is not None:
            self.report({"type": "epoch", "key": self.key, "record": record})


def _last_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, UserError) else str(exc)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def run_job(spec: dict[str, Any], report: Reporter | None = None) -> dict[str, Any]:
    """Train as ``spec`` says; returns ``{key, status, error, history, seconds, numerics,
    ...}`` (``numerics``: ``Backend.describe()``, with the format of each tensor class)."""
    from neon.config import apply_overrides, build_experiment
    from neon.serialize import load_weights

    key = spec["key"]
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    result: dict[str, Any] = {"type": "done", "key": key, "status": "ok", "error": None,
                              "traceback": None, "history": history, "pid": os.getpid()}
    try:
        cfg = apply_overrides(spec["config"], seed=spec.get("seed"), epochs=spec["epochs"],
                              **spec.get("overrides", {}))
        if spec.get("threads"):
            cfg.setdefault("backend", {})["threads"] = int(spec["threads"])
        exp = build_experiment(cfg)
        result["numerics"] = exp.be.describe()  # the recipe and each tensor class's format
        if spec.get("checkpoint_in"):
            load_weights(exp.model, spec["checkpoint_in"], exp.optimizer)
        exp.model.epoch = int(spec.get("start_epoch", 0))
        exp.run(callbacks=[_EpochReporter(key, report, history)])
        if spec.get("checkpoint_out"):
            exp.model.save(spec["checkpoint_out"], exp.optimizer)
    except TrainingDiverged as exc:
        result.update(status="failed", error=f"diverged at epoch {exc.epoch}")
    except Exception as exc:
        result.update(status="failed", error=_last_line(exc))
        result["traceback"] = _save_traceback(spec, traceback.format_exc())
    result["seconds"] = time.perf_counter() - start
    return result


def _save_traceback(spec: dict[str, Any], text: str) -> str | None:
    folder = spec.get("traceback_dir")
    if not folder:
        return None
    path = Path(folder) / f"{spec['key'].replace('/', '_')}.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return str(path)


def process_main(jobs: Any, queue: Any) -> None:
    """Entry point of a local worker process, started ahead of need: it waits for its one
    job's spec on ``jobs`` (a pipe; None means "not needed") and reports through ``queue``.

    Ctrl-C belongs to the controller (it ends workers itself), so workers ignore SIGINT.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        spec = jobs.recv()
    except EOFError:  # the controller is gone
        return
    if spec is None:
        return
    finishing = threading.Event()
    threading.Thread(target=_exit_when_closed, args=(jobs, finishing), name="controller-link",
                     daemon=True).start()
    os.environ.update(spec.get("env") or {})  # e.g. CUDA_VISIBLE_DEVICES, before CUDA starts
    result = run_job(spec, report=queue.put)
    finishing.set()  # before the put: the controller may close the link as soon as it has it
    queue.put(result)


EXIT_GRACE_S = 10.0  # a finished worker's normal exit (flushing its queue) takes milliseconds


def _exit_when_closed(link: Any, finishing: threading.Event) -> None:
    """End this process when the controller closes its end of ``link``, which the system does
    when the controller dies. A worker of a killed controller would otherwise train on, and
    then wait forever to flush its queue into a pipe nobody reads (seen: workers of a killed
    sweep still alive an hour later).

    The controller itself closes the link once it has the job's result. Then the process is
    already exiting, and it must not be cut short: its queue's feeder may still hold the lock
    that every worker's messages pass through. So after the result, it gets ``EXIT_GRACE_S``.
    (A cancelled job's process is killed before its link is closed.)"""
    with contextlib.suppress(EOFError, OSError):
        link.recv()
    if finishing.is_set():
        time.sleep(EXIT_GRACE_S)
    os._exit(0)


def dask_main(spec: dict[str, Any], queue_name: str) -> dict[str, Any]:
    """Entry point of a job on a Dask worker: epochs go to a ``distributed.Queue``."""
    from distributed import Queue

    progress = Queue(queue_name)
    return run_job(spec, report=progress.put)
