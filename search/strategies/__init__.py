"""Search strategies (ask/tell) and their registry.

``STRATEGIES.build({"type": "tpe", ...}, space=space, seed=0)`` makes one by name.  Each
strategy module registers itself with ``@STRATEGIES.register("name")`` and is imported with
this package, so adding a strategy touches one file (plus its test). ``import search`` stays
light: this package (and hyperopt with it) loads on the first lookup of a strategy.
"""

from __future__ import annotations

from typing import Any

from neon.registry import Registry, import_submodules
from search.strategies.base import Strategy

__all__ = ["STRATEGIES", "Strategy", "build_strategy"]

STRATEGIES: Registry[Strategy] = Registry("strategy")


def build_strategy(spec: Any, space: Any, seed: int = 0) -> Strategy:
    """A strategy from a name, a ``{"type": ..., options}`` mapping, or an instance."""
    if isinstance(spec, Strategy):
        return spec
    return STRATEGIES.build(spec, space=space, seed=seed)


import_submodules(__name__, __path__)
