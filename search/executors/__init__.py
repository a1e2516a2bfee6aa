"""Executors by name: ``local`` (process per trial) and ``dask`` (a distributed cluster)."""

from __future__ import annotations

from typing import Any

from neon.registry import import_submodules
from search.executors.base import EXECUTORS, Event, Executor, Job

import_submodules(__name__, __path__)

__all__ = ["EXECUTORS", "Event", "Executor", "Job", "build_executor"]


def build_executor(spec: Any, parallel: int) -> Executor:
    return EXECUTORS.build(spec, where="executor", parallel=parallel)
