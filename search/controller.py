"""The search loop: ask -> dispatch -> collect -> tell -> record, with a journal for resume.

A *point* (one set of hyperparameters) becomes one trial per comparison cell; the cells of
a point share the training seed, so fp16 and fp32 see the same initialization and data
order. The scheduler gives each point a number of epochs (all of them for FIFO, rung by
rung for ASHA/Hyperband, continuing from checkpoints); the strategy is told the objective
cell's value at every rung it reaches, and None when it fails.
"""

from __future__ import annotations

import collections
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neon.errors import UserError
from search.executors import Event, Executor, Job
from search.journal import Journal
from search.schedulers import Scheduler, build_scheduler
from search.strategies import Strategy, build_strategy
from search.strategies.grid import GridSearch
from search.sweep import Sweep
from search.tracking import Tracker
from search.trial import Trial, TrialState

__all__ = ["Controller", "SweepInterrupted", "SweepResult", "source_digest"]

STRATEGY_SAVE_SECONDS = 5.0


def source_digest(sweep: Sweep) -> str | None:
    """Hash of the sweep file's text and its model file's: a resume notes edits that the
    fingerprint (the search itself) does not cover."""
    digest = hashlib.sha256()
    for path in (sweep.path, sweep.model_path):
        if path is not None and Path(path).is_file():
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16] if sweep.path or sweep.model_path else None


class SweepInterrupted(Exception):
    """Ctrl-C: running trials were ended and marked killed; ``--resume`` continues."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__("interrupted")
        self.result = result


@dataclass
class SweepResult:
    """All trials of a sweep, with the objective to rank them by."""

    sweep: Sweep
    trials: list[Trial]
    points: dict[int, dict[str, Any]]
    seconds: float
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Trial | None:
        """The leaderboard's first: the best completed trial of the objective cell."""
        ranking = self.ranking()
        return ranking[0] if ranking else None

    def by_state(self, state: TrialState) -> list[Trial]:
        return [t for t in self.trials if t.state == state]

    def objective_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.cell == self.sweep.objective_cell]

    def ranking(self) -> list[Trial]:
        """Objective-cell trials that trained their full budget (completed), best objective
        first: the leaderboard, whose first is ``best``."""
        metric = self.sweep.objective.metric
        done = [t for t in self.objective_trials()
                if t.state == TrialState.COMPLETED and t.value(metric) is not None]
        sign = 1.0 if self.sweep.objective.mode == "min" else -1.0
        return sorted(done, key=lambda t: (sign * t.value(metric), t.number))

    def pruned(self) -> list[Trial]:
        """Objective-cell trials the scheduler stopped early, apart from the ranking (their
        values are at fewer epochs): furthest rung first, then best value at it."""
        metric = self.sweep.objective.metric
        stopped = [t for t in self.objective_trials()
                   if t.state == TrialState.PRUNED and t.value(metric) is not None]
        sign = 1.0 if self.sweep.objective.mode == "min" else -1.0
        return sorted(stopped, key=lambda t: (-t.epochs, sign * t.value(metric), t.number))

    def ranked(self, completed_only: bool = True) -> list[Trial]:
        """``ranking()``, followed by ``pruned()`` unless ``completed_only``."""
        return self.ranking() + ([] if completed_only else self.pruned())


@dataclass
class _Running:
    trial_id: str
    target: int
    start_epoch: int
    started: float
    logged: int = 0  # epochs of this job already passed to the tracker


class Controller:
    """Runs a sweep to the end (or Ctrl-C) with the given executor and tracker."""

    def __init__(
        self,
        sweep: Sweep,
        workdir: Path,
        executor: Executor,
        tracker: Tracker | None = None,
        resume: bool = False,
        on_change: Callable[[Controller], None] | None = None,
        trials: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """``trials`` is the points budget (default: a resumed sweep's, else the file's);
        ``settings`` (JSON-able: the CLI's parallel, tracking store, output...) are recorded
        in the journal's start record, and a resume records the ones that changed."""
        self.sweep = sweep
        self.workdir = Path(workdir)
        self.executor = executor
        self.tracker = tracker or Tracker()
        self.resume = resume
        self.on_change = on_change or (lambda c: None)
        self.journal = Journal(self.workdir)
        self.recorded = self._recorded_settings()
        self.budget = int(trials or (self.recorded or {}).get("trials") or sweep.search.trials)
        self.settings = {**(settings or {}), "trials": self.budget,
                         "fingerprint": sweep.fingerprint(), "source": source_digest(sweep)}
        self.strategy: Strategy = build_strategy(sweep.search.strategy, sweep.space,
                                                 seed=sweep.search.seed)
        self.scheduler: Scheduler = build_scheduler(sweep.search.scheduler, sweep.base_epochs)
        self.multi_rung = len(self.scheduler.rungs) > 1
        self.points: dict[int, dict[str, Any]] = {}
        self.configs: dict[int, Any] = {}
        self.trials: dict[str, Trial] = {}
        self.pending: collections.deque[tuple[str, int]] = collections.deque()
        self.running: dict[str, _Running] = {}
        self.told: set[tuple[int, int]] = set()
        self.targets: dict[int, int] = {}  # epochs every cell of a point trains to
        self.started = time.time()
        self._strategy_saved = 0.0

    # ----------------------------------------------------------------- set-up
    @property
    def max_epochs(self) -> int:
        return self.scheduler.rungs[-1]

    def _final_epochs(self, number: int) -> int:
        """Epochs point ``number`` ends at: its own ``training.epochs`` where the template
        tunes it (FIFO only), else the scheduler's last rung."""
        return self.sweep.epochs_of(self.points[number]) or self.max_epochs

    def _fidelity(self, epochs: int) -> int:
        """The fidelity a value is told at: its epochs, but where the template tunes them,
        each point's own epochs are its final ones, one fidelity for all."""
        return self.max_epochs if self.sweep.epochs_tuned else epochs

    def _trial(self, number: int, cell: str) -> Trial:
        return self.trials[f"{number}-{cell}"]

    def _cells_of(self, number: int) -> list[Trial]:
        return [self._trial(number, c.name) for c in self.sweep.cells
                if f"{number}-{c.name}" in self.trials]

    def _recorded_settings(self) -> dict[str, Any] | None:
        """The journal's settings when resuming; refuses a journal that is not to be resumed
        (no ``resume``) or belongs to a different search."""
        if not self.journal.exists:
            return None
        if not self.resume:
            raise UserError(
                f"a previous run of this sweep is in {self.workdir}: add --resume to continue "
                "it or --fresh to start over", file=str(self.sweep.path or ""))
        recorded = self.journal.settings()
        if recorded and recorded.get("fingerprint") != self.sweep.fingerprint():
            raise UserError(
                "the sweep's space, cells, strategy or scheduler changed since its journal "
                f"was written ({self.journal.path}); use --fresh to start over",
                file=str(self.sweep.path or ""))
        return recorded

    def _open(self) -> None:
        self.journal.open()
        if self.resume and self.journal.seq:
            self._restore()
        else:
            self.journal.append("start", sweep=self.sweep.name, settings=self.settings)

    # ----------------------------------------------------------------- resume
    def _restore(self) -> None:
        events = list(self.journal.events())
        asks: list[tuple[int, list[dict[str, Any]], int]] = []
        for e in events:
            if e["event"] == "ask":
                asks.append((e["seq"], e["points"], e["first"]))
                for i, p in enumerate(e["points"]):
                    self.points[e["first"] + i] = p
            elif e["event"] == "trial":
                trial = Trial.from_json(e["trial"])
                self.trials[trial.id] = trial
            elif e["event"] == "tell":
                self.told.add((e["number"], e["epochs"]))
        saved = self.journal.load_strategy()
        since = 0
        if saved is not None:
            since, state = saved
            self.strategy.load_state_dict(state)
        for e in events:
            if e["seq"] < since:
                continue
            if e["event"] == "ask":
                again = self.strategy.ask(len(e["points"]))  # replays the same draws
                if [dict(p) for p in again] != e["points"]:
                    for p in again:
                        self.strategy.forget(p)
            elif e["event"] == "tell":
                self.strategy.tell(e["point"], e["value"], fidelity=self._fidelity(e["epochs"]))
        self.journal.save_strategy(self.strategy.state_dict())
        for number, point in sorted(self.points.items()):
            self._make_trials(number, point, journal=False)
        self._restore_scheduler()
        for trial in self.trials.values():
            self.targets[trial.number] = max(self.targets.get(trial.number, 0),
                                             trial.target_epochs)
        for trial in sorted(self.trials.values(), key=lambda t: (t.number, t.cell)):
            if trial.state in (TrialState.RUNNING, TrialState.KILLED) or (
                    trial.state == TrialState.QUEUED and trial.epochs < trial.target_epochs):
                trial.state = TrialState.QUEUED
                self.pending.append((trial.id, trial.target_epochs))
        recorded = self.recorded or {}
        changes = {k: v for k, v in self.settings.items() if recorded.get(k) != v}
        if changes:
            self.journal.append("settings", changes=changes)
        self.journal.append("resume", trials=len(self.trials), points=len(self.points))

    def _restore_scheduler(self) -> None:
        rungs = self.scheduler.rungs
        for number in sorted(self.points):
            trial = self.trials.get(f"{number}-{self.sweep.objective_cell}")
            if trial is None:
                continue
            reported = sorted(int(k) for k in trial.rung_values)
            for epochs in reported:
                self.scheduler.report(number, epochs, trial.rung_values[str(epochs)])
            for epochs in reported:
                if epochs in rungs and trial.target_epochs > epochs:
                    self.scheduler.mark_promoted(number, epochs)

    # ----------------------------------------------------------------- points and jobs
    def _make_trials(self, number: int, point: dict[str, Any], journal: bool = True) -> None:
        first = min(self.scheduler.first_target(number), self._final_epochs(number))
        self.targets.setdefault(number, first)
        for cell in self.sweep.cells:
            tid = f"{number}-{cell.name}"
            if tid in self.trials:
                continue
            trial = Trial(number=number, cell=cell.name, point=dict(point),
                          overrides=dict(cell.overrides), seed=self.sweep.seed_of(point),
                          target_epochs=first)
            self.trials[tid] = trial
            self.pending.append((tid, trial.target_epochs))
            if journal:
                self._record(trial)

    def _ask(self, free: int) -> bool:
        asked = len(self.points)
        if asked >= self.budget or self.strategy.exhausted:
            return False
        n = min(self.budget - asked, max(1, math.ceil(free / len(self.sweep.cells))))
        points = self.strategy.ask(n)
        if not points:
            return False
        self.journal.append("ask", first=asked, points=points)
        self._save_strategy()
        for i, point in enumerate(points):
            self.points[asked + i] = point
            self._make_trials(asked + i, point)
        return True

    def _config(self, number: int) -> Any:
        if number not in self.configs:
            self.configs[number] = self.sweep.space.expand(self.points[number])
        return self.configs[number]

    def _dispatch(self, trial_id: str, target: int) -> None:
        trial = self.trials[trial_id]
        if trial.state.finished:
            return
        try:
            config = self._config(trial.number)
        except Exception as exc:
            self._fail(trial, f"cannot expand the point: {exc}")
            return
        start_epoch = trial.epochs
        ckpt = self.workdir / "checkpoints" / f"{trial.id}.npz"
        spec = {
            "key": f"{trial.id}@{target}#{trial.attempts}",
            "config": config,
            "overrides": trial.overrides,
            "seed": trial.seed,
            "start_epoch": start_epoch,
            "epochs": target,
            "checkpoint_in": str(ckpt) if start_epoch > 0 else None,
            "checkpoint_out": str(ckpt) if self.multi_rung and target < self.max_epochs
            else None,
            "traceback_dir": str(self.workdir / "tracebacks"),
        }
        trial.attempts += 1
        trial.state = TrialState.RUNNING
        trial.target_epochs = target
        trial.started_at = trial.started_at or time.time()
        self.tracker.trial_started(trial, config)
        self._record(trial)
        self.executor.submit(Job(spec["key"], trial.id, spec))
        self.running[spec["key"]] = _Running(trial.id, target, start_epoch, time.time())

    def _fill(self) -> None:
        while self.executor.free > 0:
            if self.pending:
                self._dispatch(*self.pending.popleft())
                continue
            promo = self.scheduler.promotion()
            if promo is not None:
                number, target = promo
                self.targets[number] = target
                for trial in self._cells_of(number):
                    self._continue(trial)
                continue
            if not self._ask(self.executor.free):
                break

    def _continue(self, trial: Trial) -> None:
        """Queue an idle trial up to its point's current target (after a promotion)."""
        target = self.targets.get(trial.number, 0)
        if trial.state == TrialState.QUEUED and trial.epochs < target and not any(
                tid == trial.id for tid, _ in self.pending):
            self.pending.append((trial.id, target))

    # ----------------------------------------------------------------- events
    def _record(self, trial: Trial) -> None:
        self.journal.append("trial", trial=trial.to_json())

    def _on_event(self, event: Event) -> None:
        job = self.running.get(event.key)
        if job is None:
            return
        trial = self.trials[job.trial_id]
        if event.kind == "epoch":
            record = event.payload["record"]
            self.tracker.log_epochs(trial, [record], job.start_epoch + job.logged + 1)
            job.logged += 1
            return
        del self.running[event.key]
        if event.kind == "died":
            code = event.payload.get("exitcode")
            reason = f"worker died (signal {-code})" if isinstance(code, int) and code < 0 \
                else f"worker died ({event.payload.get('error') or f'exit code {code}'})"
            if trial.attempts <= self.sweep.search.retries:
                trial.state = TrialState.QUEUED
                trial.error = reason + "; retried"
                self._record(trial)
                self.pending.appendleft((trial.id, job.target))
            else:
                self._fail(trial, reason)
            return
        result = event.payload
        history = result.get("history") or []
        if len(history) > job.logged:
            self.tracker.log_epochs(trial, history[job.logged:],
                                    job.start_epoch + job.logged + 1)
        trial.history.extend(history)
        trial.seconds += float(result.get("seconds") or 0.0)
        if result.get("status") != "ok":
            trial.traceback_path = result.get("traceback")
            self._fail(trial, result.get("error") or "failed")
            return
        metric = self.sweep.objective.metric
        value = trial.value(metric)
        if value is None:
            self._fail(trial, f"the model did not report the objective metric {metric!r}")
            return
        trial.epochs = job.target
        trial.rung_values[str(job.target)] = self.sweep.objective.minimized(value)
        trial.state = TrialState.COMPLETED if trial.epochs >= self._final_epochs(trial.number) \
            else TrialState.QUEUED
        if trial.state.finished:
            trial.finished_at = time.time()
        self._record(trial)
        if trial.state.finished:
            self.tracker.trial_finished(trial)
        self._rung_done(trial.number, job.target)
        self._continue(trial)  # its point may have been promoted while it was running

    def _fail(self, trial: Trial, reason: str, state: TrialState = TrialState.FAILED) -> None:
        trial.state = state
        trial.error = reason
        trial.finished_at = time.time()
        self._record(trial)
        self.tracker.trial_finished(trial)
        self._rung_done(trial.number, trial.target_epochs)

    def _rung_done(self, number: int, epochs: int) -> None:
        """Tell the strategy and the scheduler once the objective cell has an outcome."""
        if (number, epochs) in self.told:
            return
        objective = self.trials.get(f"{number}-{self.sweep.objective_cell}")
        if objective is None:
            return
        if objective.state in (TrialState.FAILED, TrialState.TIMED_OUT):
            value = None
        elif objective.epochs >= epochs and str(epochs) in objective.rung_values:
            value = objective.rung_values[str(epochs)]
        else:
            return
        self.told.add((number, epochs))
        point = self.points[number]
        self.strategy.tell(point, value, fidelity=self._fidelity(epochs))
        self.journal.append("tell", number=number, point=point, value=value, epochs=epochs)
        self._save_strategy()
        self.scheduler.report(number, epochs, value)

    def _save_strategy(self, force: bool = False) -> None:
        """Snapshot the strategy now and then: resume replays the journal from there, so a
        stale snapshot costs replay time, never correctness."""
        now = time.time()
        if force or now - self._strategy_saved >= STRATEGY_SAVE_SECONDS:
            self.journal.save_strategy(self.strategy.state_dict())
            self._strategy_saved = now

    def _check_timeouts(self) -> None:
        limit = self.sweep.search.timeout_per_trial
        if not limit:
            return
        now = time.time()
        for key, job in list(self.running.items()):
            if now - job.started > limit:
                self.executor.cancel(key)
                del self.running[key]
                trial = self.trials[job.trial_id]
                trial.seconds += now - job.started
                self._fail(trial, f"timed out after {limit:g} s", TrialState.TIMED_OUT)

    # ----------------------------------------------------------------- the loop
    def run(self) -> SweepResult:
        """Run to completion; raises ``SweepInterrupted`` on Ctrl-C (after cleaning up)."""
        self._open()
        self.started = time.time()
        self.tracker.start_sweep(self.sweep, self.resume, self.workdir)
        if self.resume:
            self.tracker.reconcile(sorted(self.trials.values(), key=lambda t: t.id))
        try:
            self.executor.start()
            while True:
                self._fill()
                self.journal.sync()  # group commit: durable before waiting on workers
                if not self.running and not self.pending:
                    break
                for event in self.executor.poll(0.25):
                    self._on_event(event)
                self._check_timeouts()
                self.on_change(self)
        except KeyboardInterrupt:
            self._interrupt()
            self._save_strategy(force=True)
            result = self.result()
            self.tracker.end_sweep(result)
            self.journal.close()
            raise SweepInterrupted(result) from None
        finally:
            self.executor.shutdown()
        self._prune_leftovers()
        result = self.result()
        self.journal.append("end", seconds=result.seconds)
        self._save_strategy(force=True)
        self.journal.close()
        self.tracker.end_sweep(result)
        self.on_change(self)
        return result

    def _interrupt(self) -> None:
        for key in list(self.running):
            self.executor.cancel(key)
        self.running.clear()
        # also a trial being dispatched when Ctrl-C came (marked running, its job not yet
        # registered): the executor's shutdown ends its process
        for trial in self.trials.values():
            if trial.state == TrialState.RUNNING:
                trial.state = TrialState.KILLED
                trial.error = "killed by Ctrl-C"
                self._record(trial)
                self.tracker.trial_finished(trial)

    def _prune_leftovers(self) -> None:
        for trial in self.trials.values():
            if trial.state == TrialState.QUEUED and 0 < trial.epochs < self._final_epochs(
                    trial.number):
                trial.state = TrialState.PRUNED
                trial.finished_at = time.time()
                self._record(trial)
                self.tracker.trial_finished(trial)

    def result(self) -> SweepResult:
        trials = sorted(self.trials.values(), key=lambda t: (t.number, t.cell))
        return SweepResult(self.sweep, trials, dict(self.points), time.time() - self.started,
                           self.workdir)

    # ----------------------------------------------------------------- progress
    @property
    def points_planned(self) -> int:
        """The points this run will evaluate: the budget, or the grid's size if smaller."""
        if isinstance(self.strategy, GridSearch):
            return min(self.budget, self.strategy.size)
        return self.budget

    def counts(self) -> dict[str, Any]:
        """Numbers for a progress display."""
        busy = {self.trials[j.trial_id].number for j in self.running.values()}
        busy |= {self.trials[tid].number for tid, _ in self.pending}
        done = sum(1 for n in self.points if n not in busy)
        failed = sum(1 for t in self.trials.values()
                     if t.state in (TrialState.FAILED, TrialState.TIMED_OUT))
        best = None
        metric = self.sweep.objective.metric
        for t in self.trials.values():
            if t.cell == self.sweep.objective_cell and t.state.ok:
                v = t.value(metric)
                if v is not None and (best is None or self.sweep.objective.better(v, best)):
                    best = v
        return {"done": done, "total": self.points_planned, "running": len(self.running),
                "failed": failed, "best": best}
