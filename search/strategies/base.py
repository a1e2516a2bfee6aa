"""The ask/tell interface every search strategy implements (minimization).

``ask(n)`` proposes points (n > 1 for parallel workers) and remembers them as *pending*
until ``tell`` (at any fidelity) or ``forget``.  ``tell(point, None)`` reports a failed
trial.  ``state_dict()`` is plain JSON so a controller can resume after a crash and
continue the very same sequence; the same ``seed`` gives the same sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.space import Point, SearchSpace, point_key

__all__ = ["Observation", "Strategy"]


@dataclass
class Observation:
    """One ``tell``: the point, its value (None = failed) and the fidelity (e.g. epochs)."""

    point: Point
    value: float | None
    fidelity: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point, "value": self.value, "fidelity": self.fidelity}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Observation:
        return cls(dict(d["point"]), d["value"], d.get("fidelity"))


def _fidelity_rank(fidelity: float | None) -> float:
    """None means "full fidelity": above every number."""
    return math.inf if fidelity is None else float(fidelity)


class Strategy:
    """Base class: bookkeeping of history, pending points, seed and state.

    Subclasses implement ``_suggest(n)`` and, when they keep more state than the random
    generator, ``_extra_state()`` / ``_load_extra_state(d)``.
    """

    registry_name: str = ""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = SearchSpace.coerce(space)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.history: list[Observation] = []
        self._pending: dict[str, Point] = {}
        self.n_asked = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.space)} dims, seed={self.seed})"

    # -- the interface --------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Point]:
        """``n`` new points to evaluate (fewer, possibly none, once ``exhausted``)."""
        if n < 1:
            raise ValueError(f"ask(n) needs n >= 1, got {n}")
        points = self._suggest(n)
        for point in points:
            self._pending[point_key(point)] = point
        self.n_asked += len(points)
        return points

    def tell(self, point: Point, value: float | None, fidelity: float | None = None) -> None:
        """Report the objective (minimized) of ``point``; None, NaN or inf = failed."""
        point = self.space.canonical(point)
        if value is not None:
            value = float(value)
            if not math.isfinite(value):
                value = None
        self.history.append(Observation(point, value, fidelity))
        self._pending.pop(point_key(point), None)

    def forget(self, point: Point) -> None:
        """Drop a pending point that will never be told (cancelled trial)."""
        self._pending.pop(point_key(self.space.canonical(point)), None)

    @property
    def pending(self) -> list[Point]:
        """Points asked but not yet told nor forgotten."""
        return list(self._pending.values())

    def _used_keys(self) -> set[str]:
        """``point_key``s of the points told or pending: not worth proposing again."""
        return set(self._pending) | {point_key(o.point) for o in self.history}

    @property
    def exhausted(self) -> bool:
        """True when the strategy has nothing left to propose (grid done)."""
        return False

    def _suggest(self, n: int) -> list[Point]:
        raise NotImplementedError

    # -- what model-based strategies fit --------------------------------------------------
    def model_observations(self, since: int = 0) -> list[Observation]:
        """The observations to fit a model on: the highest fidelity with at least
        ``dims + 2`` points (BOHB's rule), else the fidelity with the most points.

        Within a fidelity, the last value told for a point wins; ``since`` skips the
        first tells of the history.
        """
        by_fidelity: dict[float | None, dict[str, Observation]] = {}
        for obs in self.history[since:]:
            group = by_fidelity.setdefault(obs.fidelity, {})
            key = point_key(obs.point)
            group.pop(key, None)
            group[key] = obs
        if not by_fidelity:
            return []
        ordered = sorted(by_fidelity, key=_fidelity_rank, reverse=True)
        need = len(self.space) + 2
        for fidelity in ordered:
            if len(by_fidelity[fidelity]) >= need:
                return list(by_fidelity[fidelity].values())
        fullest = max(ordered, key=lambda f: (len(by_fidelity[f]), _fidelity_rank(f)))
        return list(by_fidelity[fullest].values())

    def best(self) -> Observation | None:
        """The successful observation with the lowest value (any fidelity)."""
        ok = [o for o in self.history if o.value is not None]
        return min(ok, key=lambda o: o.value) if ok else None

    # -- resuming -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same sequence; JSON-serializable."""
        return {
            "strategy": self.registry_name or type(self).__name__,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "n_asked": self.n_asked,
            "history": [o.to_json() for o in self.history],
            "pending": self.pending,
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` (e.g. after ``json.loads``)."""
        expected = self.registry_name or type(self).__name__
        if state.get("strategy") != expected:
            raise ValueError(f"state is for strategy {state.get('strategy')!r}, not {expected!r}")
        self.seed = int(state["seed"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.n_asked = int(state["n_asked"])
        self.history = [Observation.from_json(o) for o in state["history"]]
        self._pending = {point_key(p): dict(p) for p in state["pending"]}
        self._load_extra_state(state.get("extra") or {})

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        pass
