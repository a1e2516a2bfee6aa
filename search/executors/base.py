"""Executor: runs jobs (parts of trials) somewhere and reports what happened.

The controller submits ``Job``s and polls ``Event``s: ``epoch`` (a training epoch finished,
live progress), ``done`` (the job's result dict from ``search.worker.run_job``) and ``died``
(the worker vanished, e.g. killed by a signal). ``cancel`` ends a running job for good.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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


def visible_gpus() -> list[str]:
    """GPU ids this machine offers workers, without initializing CUDA here:
    ``CUDA_VISIBLE_DEVICES`` if set, else what ``nvidia-smi`` lists, else none."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def needs_gpu(spec: dict[str, Any]) -> bool:
    backend = (spec.get("config") or {}).get("backend") or {}
    name = spec.get("overrides", {}).get("backend") or (
        backend.get("name") if isinstance(backend, dict) else None)
    return name == "gpu"


class GPUSlots:
    """Spreads GPU jobs over the visible GPUs: each job gets the least busy one, pinned
    with ``CUDA_VISIBLE_DEVICES`` in its worker (so it sees it as device 0)."""

    def __init__(self) -> None:
        self.gpus: list[str] | None = None
        self.busy: dict[str, str] = {}  # job key -> gpu id

    def assign(self, job: Job) -> None:
        if not needs_gpu(job.spec):
            return
        if self.gpus is None:
            self.gpus = visible_gpus()
        if not self.gpus:
            return  # the trial fails with the backend's own "no GPU" message
        load = {g: 0 for g in self.gpus}
        for g in self.busy.values():
            load[g] += 1
        gpu = min(self.gpus, key=load.__getitem__)  # the first of the least loaded
        self.busy[job.key] = gpu
        job.spec.setdefault("env", {})["CUDA_VISIBLE_DEVICES"] = gpu

    def release(self, key: str) -> None:
        self.busy.pop(key, None)


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
