"""Black-box minimization: ``search.minimize(fn, space, strategy="spearmint", trials=50)``.

``fn(point) -> float`` is called on points of the space; an exception or a NaN/inf result
counts as a failed trial (told to the strategy as None).  ``parallel > 1`` evaluates
batches of ``ask(parallel)`` points on a thread pool (for functions that release the GIL
or wait on something else); the results are told in order, so runs stay reproducible.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from neon.errors import ConfigError
from search.space import Point, SearchSpace

__all__ = ["Evaluation", "Result", "minimize"]


@dataclass(frozen=True)
class Evaluation:
    """One call of the objective: the point, its value (None = failed) and why it failed."""

    point: Point
    value: float | None
    error: str | None = None


@dataclass
class Result:
    """What ``minimize`` found: the best value and point, and every evaluation in order."""

    best_value: float | None
    best_point: Point | None
    history: list[Evaluation] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(e.value is None for e in self.history)


def _evaluate(fn: Callable[[Point], float], point: Point) -> Evaluation:
    try:
        value = float(fn(dict(point)))
    except Exception as exc:
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Evaluation(point, None, last)
    if not math.isfinite(value):
        return Evaluation(point, None, f"objective returned {value}")
    return Evaluation(point, value)


def minimize(
    fn: Callable[[Point], float],
    space: SearchSpace | Mapping[str, Any] | str,
    strategy: str | Mapping[str, Any] | Any = "spearmint",
    trials: int = 50,
    seed: int = 0,
    parallel: int = 1,
) -> Result:
    """Minimize ``fn`` over ``space`` with ``trials`` evaluations.

    ``space``: a SearchSpace, a ``SearchSpace.from_dict`` mapping (tag objects, tuples
    ``("uniform", -5, 10)`` or mappings ``{"type": "uniform", "low": -5, "high": 10}``), or
    YAML text / a path; one without any tunable parameter raises ``ConfigError``.
    ``strategy``: a registry name (grid, random, tpe, spearmint), a ``{"type": ...,
    options}`` mapping, or a Strategy instance.  Stops early when a grid is exhausted.
    """
    from search.strategies import build_strategy  # loads hyperopt: not at import time

    if trials < 0 or parallel < 1:
        raise ValueError("trials must be >= 0 and parallel >= 1")
    space = SearchSpace.coerce(space)
    if not len(space):
        raise ConfigError("the search space has no tunable parameter: fn would be called "
                          "with {} every time")
    searcher = build_strategy(strategy, space, seed)
    result = Result(None, None)
    pool = ThreadPoolExecutor(parallel) if parallel > 1 else None
    try:
        while len(result.history) < trials and not searcher.exhausted:
            points = searcher.ask(min(parallel, trials - len(result.history)))
            if not points:
                break
            if pool is None:
                evaluations = [_evaluate(fn, p) for p in points]
            else:
                evaluations = list(pool.map(lambda p: _evaluate(fn, p), points))
            for evaluation in evaluations:
                searcher.tell(evaluation.point, evaluation.value)
                result.history.append(evaluation)
                if evaluation.value is not None and (
                    result.best_value is None or evaluation.value < result.best_value
                ):
                    result.best_value, result.best_point = evaluation.value, evaluation.point
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return result
