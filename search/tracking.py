"""The tracker interface: where a sweep's runs are recorded besides the journal.

The controller calls these hooks from its single thread; the MLflow implementation lives in
``experiments.tracking`` (so the search package does not import MLflow). Only the
controller process writes to the store: workers stay light and SQLite never sees two
writers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MultiTracker", "Tracker"]


class Tracker:
    """No-op base class; every hook is optional."""

    def start_sweep(self, sweep: Any, resumed: bool, workdir: Any) -> None:
        """Before any trial starts (create, or on resume reopen, the sweep's parent run)."""

    def trial_started(self, trial: Any, config: dict[str, Any]) -> None:
        """A trial is dispatched with its resolved model ``config`` (create its run, or
        reopen the one in ``trial.run_id``; may set ``trial.run_id``)."""

    def log_epochs(self, trial: Any, records: list[dict[str, float]], first_epoch: int) -> None:
        """Per-epoch records of a trial; ``first_epoch`` is the 1-based epoch of records[0]."""

    def trial_finished(self, trial: Any) -> None:
        """The trial reached a final state (completed, failed, timed_out, pruned, killed)."""

    def reconcile(self, trials: list[Any]) -> None:
        """Resume: bring the records up to date with the journal's trials (the journal is
        the truth; writes lost in a crash are made again, never twice)."""

    def end_sweep(self, result: Any) -> None:
        """After the last trial (also after Ctrl-C, with the trials done so far)."""


class MultiTracker(Tracker):
    """Fan-out to several trackers."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def start_sweep(self, sweep: Any, resumed: bool, workdir: Any) -> None:
        for t in self.trackers:
            t.start_sweep(sweep, resumed, workdir)

    def trial_started(self, trial: Any, config: dict[str, Any]) -> None:
        for t in self.trackers:
            t.trial_started(trial, config)

    def log_epochs(self, trial: Any, records: list[dict[str, float]], first_epoch: int) -> None:
        for t in self.trackers:
            t.log_epochs(trial, records, first_epoch)

    def trial_finished(self, trial: Any) -> None:
        for t in self.trackers:
            t.trial_finished(trial)

    def reconcile(self, trials: list[Any]) -> None:
        for t in self.trackers:
            t.reconcile(trials)

    def end_sweep(self, result: Any) -> None:
        for t in self.trackers:
            t.end_sweep(result)
