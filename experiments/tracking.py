"""MLflow records: a parent run per sweep, a nested run per trial, or one run for ``neon``.

Only the controller process writes, from one background thread, so logging never blocks the
search loop and SQLite never sees two writers. Metrics go in batches (``log_batch``), one
call per epoch record, never one per value. Opening the store: ``experiments.store``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from experiments.store import KIND_TAG, client_for, experiment_id, resolve_uri, safe_key
from experiments.views import UI_PORT, VIEW_TAG, runs_page, save_view, sweep_view, view_key
from neon.backends.numerics import resolve_storage
from neon.callbacks import Callback
from neon.diagnostics import flatten_record
from neon.errors import ConfigError
from search.cli import command
from search.tracking import Tracker

__all__ = [
    "ARCH_TAG",
    "STATUS",
    "RunLogger",
    "SingleRunTracker",
    "SweepTracker",
    "architecture_params",
    "flatten_params",
    "storage_params",
]

ARCH_TAG = "neon_search.architecture"  # on a sweep run: JSON list of architecture params
STATUS = {  # trial state -> MLflow run status; the ``state`` tag tells completed from pruned
    "completed": "FINISHED",
    "pruned": "FINISHED",  # stopped early by the scheduler as planned: not a failure
    "killed": "KILLED",
    "failed": "FAILED",
    "timed_out": "FAILED",
    "running": "RUNNING",
    "queued": "SCHEDULED",
}
BATCH = 1000  # MLflow's limit of metrics per log_batch call


def architecture_params(space: Any) -> list[str]:
    """The parameters of ``space`` that choose an architecture, as logged: choices whose
    options are all layer lists (lists of ``{type: ...}`` mappings), the choice over
    ``model.layers``, or a choice named ``arch``."""
    def layer_list(option: Any) -> bool:
        return isinstance(option, (list, tuple)) and bool(option) and all(
            isinstance(layer, Mapping) and "type" in layer for layer in option)

    return [safe_key(d.name) for d in space if d.kind == "categorical" and (
        d.name == "arch" or d.name.rsplit(".", 1)[-1] == "layers"
        or all(layer_list(o) for o in d.options))]


def storage_params(backend: dict[str, Any]) -> dict[str, str]:
    """``recipe`` and ``storage.<tensor class>`` params of a trial's ``backend:`` section:
    which tensors were stored in which format (none for full-precision runs)."""
    try:
        storage = resolve_storage(backend.get("numerics", "fp32"), backend.get("recipe"),
                                  backend.get("storage"))
    except ConfigError:  # the trial itself reports it
        return {}
    return _storage_names(storage)


def _storage_names(storage: Any) -> dict[str, str]:
    if not storage.emulated:
        return {}
    return {"recipe": storage.recipe,
            **{f"storage.{k}": v for k, v in storage.names().items()}}


def flatten_params(config: Any, prefix: str = "") -> dict[str, str]:
    """Scalars of a nested config as ``{"optimizer.learning_rate": "0.1"}``."""
    out: dict[str, str] = {}
    if isinstance(config, dict):
        for k, v in config.items():
            out.update(flatten_params(v, f"{prefix}{k}."))
    elif isinstance(config, list):
        for i, v in enumerate(config):
            out.update(flatten_params(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = str(config)
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


class RunLogger:
    """Writes one MLflow run: params, per-epoch metric batches, tags, artifacts, status."""

    def __init__(self, client: Any, run_id: str, status: str | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.status = status  # as found when an existing run is reopened; None: created here
        self.last_step = 0 if status is None else -1  # -1: not looked up yet

    @classmethod
    def create(cls, client: Any, exp_id: str, name: str, tags: dict[str, str]) -> RunLogger:
        run = client.create_run(exp_id, run_name=name, tags=tags)
        return cls(client, run.info.run_id)

    def find_last_step(self) -> None:
        """For a reopened run, the last epoch logged (looked up once): steps up to it are
        not logged again."""
        if self.last_step < 0:
            history = self.client.get_metric_history(self.run_id, "train_loss")
            self.last_step = max((m.step for m in history), default=0)

    def resume(self) -> None:
        """Reopen a run to log more epochs."""
        self.find_last_step()
        self.client.update_run(self.run_id, status="RUNNING")
        self.status = "RUNNING"

    def params(self, params: dict[str, Any]) -> None:
        """Log ``params``; a reopened run keeps the values it has (MLflow's are immutable)."""
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params if self.status else {}
        items = [Param(safe_key(k), str(v)[:6000]) for k, v in params.items()
                 if safe_key(k) not in existing]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100], synchronous=True)

    def epochs(self, records: Iterable[dict[str, float]], first_epoch: int) -> None:
        """Log consecutive epochs from ``first_epoch``."""
        self.steps(enumerate(records, first_epoch))

    def steps(self, records: Iterable[tuple[int, dict[str, float]]]) -> None:
        """Log (epoch, metrics) pairs in increasing epoch order, in as few batches as
        possible; epochs already logged are skipped."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for step, record in records:
            if step <= self.last_step:
                continue
            self.last_step = step
            metrics += [Metric(safe_key(k), float(v), now, step) for k, v in record.items()
                        if _finite(v) and k != "epoch"]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + BATCH], synchronous=True)

    def tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, tags=items, synchronous=True)

    def final_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(safe_key(k), float(v), now, step) for k, v in values.items()
                 if _finite(v)]
        if items:
            self.client.log_batch(self.run_id, metrics=items, synchronous=True)

    def text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class _Writer:
    """A background thread that runs tracking calls in order; errors warn, never stop."""

    def __init__(self) -> None:
        self.calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.errors = 0
        self.thread = threading.Thread(target=self._loop, name="mlflow-writer", daemon=True)
        self.thread.start()

    def __call__(self, fn: Callable[[], None]) -> None:
        self.calls.put(fn)

    def _loop(self) -> None:
        while True:
            fn = self.calls.get()
            if fn is None:
                return
            try:
                fn()
            except Exception as exc:
                self.errors += 1
                if self.errors <= 3:
                    print(f"neon-search: warning: MLflow logging failed: {exc}",
                          file=sys.stderr)

    def flush(self) -> None:
        done = threading.Event()
        self.calls.put(done.set)
        done.wait()

    def close(self) -> None:
        self.flush()
        self.calls.put(None)
        self.thread.join(timeout=10)


def _yaml(config: Any) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)


class SweepTracker(Tracker):
    """MLflow for ``neon-search``: parent run per sweep, nested run ``trial-<n>-<cell>``."""

    def __init__(self, tracking_uri: str | None, experiment: str, sweep: Any = None) -> None:
        self.uri = resolve_uri(tracking_uri)
        self.experiment = experiment
        self.sweep = sweep
        self.client: Any = None
        self.exp_id: str | None = None
        self.parent: RunLogger | None = None
        self.runs: dict[str, RunLogger] = {}
        self.writer: _Writer | None = None
        self._pending_epochs: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self._pending_lock = threading.Lock()

    @classmethod
    def from_sweep(cls, sweep: Any, uri_override: str | None = None) -> SweepTracker:
        return cls(uri_override or sweep.tracking.get("uri"),
                   sweep.tracking.get("experiment") or sweep.name, sweep)

    # ------------------------------------------------------------------ hooks
    def start_sweep(self, sweep: Any, resumed: bool, workdir: Any) -> None:
        self.sweep = sweep
        self.client = client_for(self.uri)
        self.exp_id = experiment_id(self.client, self.experiment, self.uri)
        self.writer = _Writer()
        state = Path(workdir) / "tracking.json"
        saved = json.loads(state.read_text()) if state.exists() else {}
        if resumed and saved.get("uri") == self.uri and saved.get("parent_run_id"):
            self.parent = RunLogger(self.client, saved["parent_run_id"], status="RUNNING")
            self.client.update_run(self.parent.run_id, status="RUNNING")
            self._reopen_children()
            if VIEW_TAG + view_key(self.parent.run_id) not in self.client.get_experiment(
                    self.exp_id).tags:
                self._save_view(sweep)
            return
        self.parent = RunLogger.create(self.client, self.exp_id, sweep.name, {
            KIND_TAG: "sweep", "sweep": sweep.name,
            "strategy": json.dumps(sweep.search.strategy) if isinstance(
                sweep.search.strategy, dict) else str(sweep.search.strategy),
            "scheduler": json.dumps(sweep.search.scheduler) if isinstance(
                sweep.search.scheduler, dict) else str(sweep.search.scheduler),
            "objective": f"{sweep.objective.metric} ({sweep.objective.mode})",
            "cells": ",".join(c.name for c in sweep.cells),
            "neon_search.workdir": str(Path(workdir).resolve()),
            ARCH_TAG: json.dumps(architecture_params(sweep.space)),
        })
        self._save_view(sweep)
        Path(workdir).mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"uri": self.uri, "parent_run_id": self.parent.run_id,
                                     "experiment_id": self.exp_id}))
        parent = self.parent
        self.writer(lambda: self._sweep_artifacts(parent, sweep))

    def _save_view(self, sweep: Any) -> None:
        started = time.strftime("%Y-%m-%d %H:%M")
        save_view(self.client, self.exp_id, view_key(self.parent.run_id),
                  f"{sweep.name} sweep {started}", sweep_view(sweep, self.parent.run_id))

    def _reopen_children(self) -> None:
        runs = self.client.search_runs(
            [self.exp_id], f"tags.`mlflow.parentRunId` = '{self.parent.run_id}'",
            max_results=5000)
        for run in runs:
            trial_id = run.data.tags.get("trial_id")
            if trial_id:
                self.runs[trial_id] = RunLogger(self.client, run.info.run_id, run.info.status)

    def _sweep_artifacts(self, parent: RunLogger, sweep: Any) -> None:
        if sweep.path is not None and sweep.path.exists():
            parent.text(sweep.path.read_text(encoding="utf-8"), "sweep.yaml")
        if sweep.model_path is not None and sweep.model_path.exists():
            parent.text(sweep.model_path.read_text(encoding="utf-8"), "template.yaml")
        parent.text(sweep.space.table() + "\n", "space.txt")
        parent.params({"trials": sweep.search.trials, "parallel": sweep.search.parallel,
                       "seed": sweep.search.seed, "cells": ",".join(c.name for c in sweep.cells)})

    def trial_started(self, trial: Any, config: dict[str, Any]) -> None:
        logger = self.runs.get(trial.id)
        if logger is not None:
            trial.run_id = logger.run_id
            self.writer(logger.resume)
            return
        params = {**trial.point, **trial.overrides, "seed": trial.seed}
        resolved = dict(config)
        backend = dict(resolved.get("backend") or {})
        backend.update({k: v for k, v in trial.overrides.items() if k in ("numerics",)})
        if "backend" in trial.overrides:
            backend["name"] = trial.overrides["backend"]
        resolved["backend"] = backend
        params.setdefault("numerics", backend.get("numerics", "fp32"))
        params.setdefault("backend", backend.get("name", "cpu"))
        params.update(storage_params(backend))
        tags = {KIND_TAG: "trial", "mlflow.parentRunId": self.parent.run_id,
                "trial_id": trial.id, "number": str(trial.number), "cell": trial.cell,
                "state": "running", "sweep": self.sweep.name if self.sweep else ""}
        logger = RunLogger(self.client, "")
        self.runs[trial.id] = logger

        def create() -> None:
            run = self.client.create_run(self.exp_id, run_name=trial.name, tags=tags)
            logger.run_id = run.info.run_id
            logger.params(params)
            logger.text(_yaml(resolved), "model.yaml")

        self.writer(create)

    def reconcile(self, trials: list[Any]) -> None:
        """Log what the journal has and the store lacks: runs, epochs, final states."""
        for trial in trials:
            if trial.attempts == 0:
                continue
            if trial.id not in self.runs:
                self.trial_started(trial, self._config_of(trial))
            logger = self.runs[trial.id]
            history = [dict(r) for r in trial.history]

            def catch_up(logger: RunLogger = logger, history: list = history) -> None:
                logger.find_last_step()
                logger.epochs(history, 1)

            self.writer(catch_up)
            if trial.state.finished and logger.status in (None, "RUNNING", "SCHEDULED"):
                self.writer(self._finisher(trial, logger))

    def _config_of(self, trial: Any) -> dict[str, Any]:
        try:
            return self.sweep.space.expand(trial.point)
        except Exception:
            return {}

    def log_epochs(self, trial: Any, records: list[dict[str, float]], first_epoch: int) -> None:
        """Queue epochs; epochs that pile up while the writer is busy go in one batch."""
        logger = self.runs.get(trial.id)
        if logger is None:
            return
        with self._pending_lock:
            pending = self._pending_epochs.setdefault(trial.id, [])
            scheduled = bool(pending)
            pending.extend((first_epoch + i, dict(r)) for i, r in enumerate(records))
        if not scheduled:
            self.writer(lambda: self._flush_epochs(trial.id, logger))

    def _flush_epochs(self, trial_id: str, logger: RunLogger) -> None:
        with self._pending_lock:
            pending = self._pending_epochs.pop(trial_id, [])
        logger.steps(sorted(pending, key=lambda item: item[0]))

    def trial_finished(self, trial: Any) -> None:
        logger = self.runs.get(trial.id)
        if logger is not None:
            self.writer(self._finisher(trial, logger))

    def _finisher(self, trial: Any, logger: RunLogger) -> Callable[[], None]:
        """The calls that close a trial's run: tags, final metrics, traceback, status."""
        state = trial.state.value
        tags = {"state": state, "failure_reason": trial.error if not trial.state.ok else None,
                "rung": str(trial.epochs), "attempts": str(trial.attempts)}
        if state == "pruned":
            tags["failure_reason"] = f"stopped early by the scheduler at {trial.epochs} epochs"
        traceback_path = trial.traceback_path
        if traceback_path and os.path.exists(traceback_path):
            tags["traceback_file"] = traceback_path
        final = {"trial_seconds": trial.seconds, "trial_epochs": trial.epochs}
        step = max(trial.epochs, 1)

        def finish() -> None:
            logger.tags(tags)
            logger.final_metrics(final, step)
            if traceback_path and os.path.exists(traceback_path):
                logger.client.log_artifact(logger.run_id, traceback_path)
            logger.finish(STATUS.get(state, "FINISHED"))

        return finish

    def end_sweep(self, result: Any) -> None:
        if self.parent is None or self.writer is None:
            return
        parent = self.parent

        def summarize() -> None:
            import matplotlib.pyplot as plt

            from experiments.plots import sweep_figures
            from search.report import results_json

            interrupted = any(t.state.value == "killed" for t in result.trials)
            try:
                best = result.best
                if best is not None:
                    parent.params({f"best.{k}": v for k, v in best.point.items()})
                    parent.final_metrics({f"best_{k}": v for k, v in best.metrics.items()},
                                         best.epochs)
                    parent.tags({"best_trial": best.name})
                summary = results_json(result)
                parent.tags({"states": json.dumps(summary["states"])})
                self.client.log_dict(parent.run_id, summary, "results.json")
                for name, fig in sweep_figures(result).items():
                    self.client.log_figure(parent.run_id, fig, f"plots/{name}.png")
                    plt.close(fig)
            finally:
                parent.finish("KILLED" if interrupted else "FINISHED")

        self.writer(summarize)
        self.writer.close()

    def ui_hint(self) -> str:
        """Where to browse the sweep: its runs page, through ``neon-search ui`` for a store
        file, directly on a tracking server."""
        cmd = command("neon-search")
        uri, name = shlex.quote(self.uri), shlex.quote(self.experiment)
        page = runs_page(self.exp_id, view_key(self.parent.run_id) if self.parent else None)
        if self.uri.startswith(("http://", "https://")):
            browse = f"{self.uri.rstrip('/')}/{page}"
        else:
            browse = (f"{cmd} ui --tracking-uri {uri} --experiment {name}\n"
                      f"             then http://127.0.0.1:{UI_PORT}/{page}")
        return (f"MLflow: experiment '{self.experiment}' in {self.uri}\n"
                f"  browse it: {browse}\n"
                f"  compare:   {cmd} compare {name} --tracking-uri {uri}")


class SingleRunTracker:
    """``neon MODEL.yaml --mlflow``: one run with the same params/metrics layout."""

    def __init__(self, logger: RunLogger, uri: str) -> None:
        self.logger = logger
        self.uri = uri

    @classmethod
    def for_experiment(cls, exp: Any, model_path: str, uri: str | None) -> SingleRunTracker:
        uri = resolve_uri(uri)
        client = client_for(uri)
        name = str(exp.config.get("name") or Path(model_path).stem)
        exp_id = experiment_id(client, name, uri)
        logger = RunLogger.create(client, exp_id, name, {KIND_TAG: "single", "state": "running",
                                                         "model_file": str(model_path)})
        logger.params({**flatten_params({k: v for k, v in exp.config.items()
                                         if k not in ("description",)}),
                       "numerics": exp.be.numerics, "backend": exp.be.name, "seed": exp.seed,
                       **_storage_names(exp.be.storage)})
        logger.text(_yaml(exp.config), "model.yaml")
        return cls(logger, uri)

    def callback(self) -> Callback:
        logger = self.logger

        class _Log(Callback):
            def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
                logger.epochs([flatten_record(metrics)], epoch)

        return _Log()

    def finish(self, state: str, reason: str | None) -> None:
        self.logger.tags({"state": state, "failure_reason": reason})
        self.logger.finish(STATUS.get(state, "FINISHED"))
        print(f"MLflow run {self.logger.run_id} in {self.uri} "
              f"({command('neon-search')} ui --tracking-uri {self.uri})")

