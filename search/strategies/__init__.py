"""Search strategies (ask/tell) and their registry.

``STRATEGIES.build({"type": "tpe", ...}, space=space, seed=0)`` makes one by name.  Each
strategy module registers itself with ``@STRATEGIES.register("name")``; the modules of this
package are imported on the first registry lookup, so adding a strategy touches one file
(plus its test) and importing this package stays cheap (hyperopt loads only when needed).
"""

from __future__ import annotations

from typing import Any

from neon.registry import Registry, import_submodules
from search.strategies.base import Strategy

__all__ = ["STRATEGIES", "Strategy", "build_strategy"]


class _DiscoveringRegistry(Registry[Strategy]):
    """A registry that imports every module of this package before its first lookup."""

    _loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            import_submodules(__name__, __path__)

    def names(self) -> list[str]:
        self._load()
        return super().names()

    def __contains__(self, name: object) -> bool:
        self._load()
        return super().__contains__(name)

    def get(self, name: Any, *args: Any, **kwargs: Any) -> Any:
        self._load()
        return super().get(name, *args, **kwargs)


STRATEGIES: Registry[Strategy] = _DiscoveringRegistry("strategy")


def build_strategy(spec: Any, space: Any, seed: int = 0) -> Strategy:
    """A strategy from a name, a ``{"type": ..., options}`` mapping, or an instance."""
    if isinstance(spec, Strategy):
        return spec
    return STRATEGIES.build(spec, space=space, seed=seed)
