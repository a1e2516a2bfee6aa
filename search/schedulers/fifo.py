"""FIFO: every point trains for the full number of epochs; no early stopping."""

from __future__ import annotations

from search.schedulers.base import SCHEDULERS, Scheduler

__all__ = ["FIFOScheduler"]


@SCHEDULERS.register("fifo")
class FIFOScheduler(Scheduler):
    registry_name = "fifo"
