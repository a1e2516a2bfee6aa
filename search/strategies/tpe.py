"""TPE through hyperopt's public API, driven ask/tell style.

Each ``ask`` rebuilds a ``hyperopt.Trials`` from our own records (the model observations,
failures as ``STATUS_FAIL``, pending points as running trials, which TPE ranks as bad) and
calls ``hyperopt.tpe.suggest`` once per point, with a seed drawn from our generator.  No
hyperopt state outlives a call, so resuming and multi-fidelity need nothing special.

Mapping: uniform -> ``hp.uniform``, log -> ``hp.loguniform``, integer and quantized ->
``hp.quniform`` over the same grid (keeps TPE's ordinal model), choice -> ``hp.choice``
whose options are dicts of their conditional dimensions; ``hp.choice`` indices map back to
option values.
"""

from __future__ import annotations

import math
from typing import Any

from hyperopt import (
    JOB_STATE_DONE,
    JOB_STATE_RUNNING,
    STATUS_FAIL,
    STATUS_NEW,
    STATUS_OK,
    Domain,
    Trials,
    hp,
    tpe,
)

from search.space import Dimension, Point, SearchSpace, point_key
from search.strategies import STRATEGIES
from search.strategies.base import Strategy

__all__ = ["TPE", "hyperopt_space"]


def _hp_node(space: SearchSpace, dim: Dimension) -> Any:
    if dim.kind == "categorical":
        options = [
            {child.name: _hp_node(space, child) for child in space.children(dim.name, i)}
            for i in range(len(dim.options))
        ]
        return hp.choice(dim.name, options)
    if dim.discrete:
        step = dim.q if dim.q is not None else 1
        low, high = float(dim.value_at(0)), float(dim.value_at(dim.size - 1))
        # the half-step margins give the end values full-width bins after rounding
        return hp.quniform(dim.name, low - 0.4999 * step, high + 0.4999 * step, step)
    if dim.log:
        return hp.loguniform(dim.name, math.log(dim.low), math.log(dim.high))
    return hp.uniform(dim.name, dim.low, dim.high)


def hyperopt_space(space: SearchSpace) -> dict[str, Any]:
    """The hyperopt (pyll) space of a SearchSpace, labels = our parameter names."""
    return {dim.name: _hp_node(space, dim) for dim in space.roots}


@STRATEGIES.register("tpe", "hyperopt")
class TPE(Strategy):
    """Tree-structured Parzen estimator (Bergstra et al. 2011) from hyperopt.

    Options are hyperopt's: ``n_startup_jobs`` random points first, ``n_ei_candidates``
    samples scored per suggestion, ``gamma`` quantile of "good" points, ``prior_weight``.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        n_startup_jobs: int = 20,
        n_ei_candidates: int = 24,
        gamma: float = 0.25,
        prior_weight: float = 1.0,
        max_retries: int = 10,
    ) -> None:
        super().__init__(space, seed)
        self.options = {
            "n_startup_jobs": n_startup_jobs,
            "n_EI_candidates": n_ei_candidates,
            "gamma": gamma,
            "prior_weight": prior_weight,
        }
        self.max_retries = max_retries
        self._domain = Domain(lambda _: 0.0, hyperopt_space(self.space))

    # -- our records <-> hyperopt trial documents -----------------------------------------
    def _doc(self, trials: Trials, tid: int, point: Point, result: dict, state: int) -> dict:
        vals: dict[str, list] = {label: [] for label in self._domain.params}
        idxs: dict[str, list] = {label: [] for label in self._domain.params}
        for name, value in point.items():
            dim = self.space[name]
            vals[name] = [dim.index_of(value) if dim.kind == "categorical" else value]
            idxs[name] = [tid]
        misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": self._domain.workdir,
                "idxs": idxs, "vals": vals}
        [doc] = trials.new_trial_docs([tid], [None], [result], [misc])
        doc["state"] = state
        return doc

    def _trials(self) -> Trials:
        trials = Trials()
        docs = []
        for obs in self.model_observations():
            if obs.value is None:
                result = {"status": STATUS_FAIL}
            else:
                result = {"status": STATUS_OK, "loss": obs.value}
            docs.append(self._doc(trials, len(docs), obs.point, result, JOB_STATE_DONE))
        for point in self.pending:
            docs.append(self._doc(trials, len(docs), point, {"status": STATUS_NEW},
                                  JOB_STATE_RUNNING))
        trials.insert_trial_docs(docs)
        trials.refresh()
        return trials

    def _point(self, vals: dict[str, list]) -> Point:
        point: Point = {}
        for dim in self.space.dimensions:  # parents come before their options' dimensions
            raw = vals.get(dim.name) or []
            if raw and self.space.is_active(dim, point):
                value = raw[0]
                point[dim.name] = (
                    dim.value_at(int(value)) if dim.kind == "categorical" else dim.snap(value)
                )
        return point

    # -- ask ------------------------------------------------------------------------------
    def _suggest(self, n: int) -> list[Point]:
        trials = self._trials()
        seen = self._used_keys()
        points: list[Point] = []
        for _ in range(n):
            tid = len(trials.trials)
            for _attempt in range(self.max_retries):
                seed = int(self.rng.integers(2**31 - 1))
                [doc] = tpe.suggest([tid], self._domain, trials, seed, verbose=False,
                                    **self.options)
                point = self._point(doc["misc"]["vals"])
                if point_key(point) not in seen:
                    break
            seen.add(point_key(point))
            points.append(point)
            trials.insert_trial_docs(
                [self._doc(trials, tid, point, {"status": STATUS_NEW}, JOB_STATE_RUNNING)]
            )
            trials.refresh()
        return points
