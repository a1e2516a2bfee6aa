"""A trial: one point of the search space trained in one comparison cell (e.g. fp16)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Trial", "TrialState"]


class TrialState(StrEnum):
    """Life cycle: queued -> running -> completed | failed | timed_out | pruned | killed."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    PRUNED = "pruned"
    KILLED = "killed"

    @property
    def finished(self) -> bool:
        """Final states: a resumed sweep never re-runs these."""
        return self in (TrialState.COMPLETED, TrialState.FAILED, TrialState.TIMED_OUT,
                        TrialState.PRUNED)

    @property
    def ok(self) -> bool:
        """Trained without error (completed, or stopped early by the scheduler)."""
        return self in (TrialState.COMPLETED, TrialState.PRUNED)


@dataclass
class Trial:
    """Everything known about one trial; the journal stores ``to_json()`` snapshots."""

    number: int  # index of the point; the cells of one point share it
    cell: str
    point: dict[str, Any]
    overrides: dict[str, Any]
    seed: int
    state: TrialState = TrialState.QUEUED
    epochs: int = 0  # epochs trained and checkpointed
    target_epochs: int = 0  # where the current (or last) job trains to
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch records
    rung_values: dict[str, float | None] = field(default_factory=dict)  # epochs -> objective
    error: str | None = None
    traceback_path: str | None = None
    seconds: float = 0.0  # training time, all jobs together
    attempts: int = 0  # job starts, retries included
    run_id: str | None = None  # experiment-tracking run (MLflow)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def id(self) -> str:
        return f"{self.number}-{self.cell}"

    @property
    def name(self) -> str:
        return f"trial-{self.number}-{self.cell}"

    @property
    def metrics(self) -> dict[str, float]:
        """Final scalar metrics (the last epoch's record)."""
        if not self.history:
            return {}
        return {k: v for k, v in self.history[-1].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def value(self, metric: str) -> float | None:
        return self.metrics.get(metric)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        data = dict(data)
        data["state"] = TrialState(data["state"])
        return cls(**data)
