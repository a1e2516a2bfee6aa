"""Schedulers by name: ``fifo``, ``asha``, ``hyperband``."""

from __future__ import annotations

from neon.registry import import_submodules
from search.schedulers.base import SCHEDULERS, Scheduler, build_scheduler

import_submodules(__name__, __path__)

__all__ = ["SCHEDULERS", "Scheduler", "build_scheduler"]
