"""Executor: runs jobs (parts of trials) somewhere and reports what happened.

The controller submits ``Job``s and polls ``Event``s: ``epoch`` (a training epoch finished,
live progress), ``done`` (the job's result dict from ``search.worker.run_job``) and ``died``
(the worker vanished, e.g. killed by a signal). ``cancel`` ends a running job for good.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from neon.registry import Registry

__all__ = ["EXECUTORS", "Event", "Executor", "Job"]

EXECUTORS: Registry[Executor] = Registry("executor")


@dataclass
class Job:
    key: str
    trial_id: str
    spec: dict[str, Any]
    submitted_at: float = 0.0


@dataclass
class Event:
    kind: str  # "epoch" | "done" | "died"
    key: str
    payload: dict[str, Any] = field(default_factory=dict)


class Executor:
    """Base class: at most ``parallel`` jobs at once."""

    registry_name = "executor"

    def __init__(self, parallel: int = 1) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.parallel = int(parallel)
        self.jobs: dict[str, Job] = {}

    @property
    def free(self) -> int:
        return self.parallel - len(self.jobs)

    def threads_per_job(self) -> int:
        """BLAS/kernel threads per worker: the cores shared among parallel jobs."""
        return max(1, (os.cpu_count() or 1) // self.parallel)

    def start(self) -> None:
        """Start workers (called once before the first submit)."""

    def submit(self, job: Job) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> list[Event]:
        """Events since the last poll, waiting up to ``timeout`` seconds for the first."""
        raise NotImplementedError

    def cancel(self, key: str) -> None:
        """Stop a running job now (its worker is killed if need be)."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop every job and release the workers."""

    def describe(self) -> str:
        return f"{self.registry_name} x{self.parallel}"
