"""Strategies: registry, determinism and resuming, pending points, failures, grid, TPE."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neon.errors import ConfigError
from search.space import SearchSpace, point_key
from search.strategies import STRATEGIES, Strategy, build_strategy

ALL = ["grid", "random", "tpe", "spearmint"]
# cheaper settings so the tests stay fast; the algorithms are the same
FAST = {
    "spearmint": {"burnin": 20, "mcmc_samples": 3, "grid_size": 256, "max_iter": 15,
                  "n_initial": 5},
    "tpe": {"n_startup_jobs": 5},
}

SPACE = SearchSpace.from_yaml("""\
optimizer:
  lr: !loguniform [1.0e-4, 1.0]
  momentum: !uniform [0.0, 1.0]
model:
  width: !randint [1, 8]
  keep: !quniform [0.5, 1.0, 0.1]
  act: !choice [relu, tanh]
  head: !choice
    - {type: deep, depth: !randint [1, 3], scale: !uniform [0.0, 2.0]}
    - {type: shallow}
""")


def objective(point: dict) -> float:
    value = (math.log10(point["optimizer.lr"]) + 2) ** 2 + (point["optimizer.momentum"] - 0.8) ** 2
    value += 0.1 * abs(point["model.width"] - 5) + (point["model.keep"] - 0.7) ** 2
    value += 0.3 * (point["model.act"] == "tanh")
    if point["model.head"] == 0:
        value += 0.2 * point["model.head[0].depth"] + (point["model.head[0].scale"] - 1) ** 2
    return value


def make(name: str, seed: int = 0, space: SearchSpace = SPACE, **options) -> Strategy:
    return STRATEGIES.build({"type": name, **FAST.get(name, {}), **options}, space=space,
                            seed=seed)


def drive(strategy: Strategy, steps: int, batch: int = 1, fail_every: int = 0) -> list[dict]:
    asked = []
    for _ in range(steps):
        for point in strategy.ask(batch):
            asked.append(point)
            failed = fail_every and len(asked) % fail_every == 0
            strategy.tell(point, None if failed else objective(point))
    return asked


def test_registry_knows_every_strategy() -> None:
    assert set(ALL) <= set(STRATEGIES.names())
    assert "tpe" in STRATEGIES
    strategy = build_strategy({"type": "random"}, SPACE, seed=1)
    assert strategy.registry_name == "random" and strategy.seed == 1
    assert build_strategy(strategy, SPACE) is strategy


def test_registry_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'spearmint'"):
        STRATEGIES.build("spearmitn", space=SPACE)
    with pytest.raises(ConfigError, match="did you mean 'grid_points'"):
        STRATEGIES.build({"type": "grid", "gridpoints": 3}, space=SPACE)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_sequence(name: str) -> None:
    first, second = make(name, seed=3), make(name, seed=3)
    a = drive(first, 14, fail_every=5)
    b = drive(second, 14, fail_every=5)
    assert a == b
    for point in a:
        SPACE.validate(point)
    if name != "grid":
        assert drive(make(name, seed=4), 14) != a


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_continues_the_same_sequence(name: str) -> None:
    original = make(name, seed=5)
    drive(original, 12, fail_every=4)
    pending = original.ask(2)  # outstanding work at the time of the "crash"
    state = json.loads(json.dumps(original.state_dict()))
    resumed = make(name, seed=999)
    resumed.load_state_dict(state)
    assert resumed.pending == pending and resumed.seed == 5
    for strategy in (original, resumed):
        for point in pending:
            strategy.tell(point, objective(point))
    assert drive(resumed, 6, batch=2) == drive(original, 6, batch=2)


@pytest.mark.parametrize("name", ALL)
def test_ask_batch_is_distinct_and_pending_until_told(name: str) -> None:
    strategy = make(name, seed=2)
    drive(strategy, 12)
    batch = strategy.ask(4)
    assert len({point_key(p) for p in batch}) == 4
    assert {point_key(p) for p in strategy.pending} == {point_key(p) for p in batch}
    strategy.tell(batch[0], objective(batch[0]), fidelity=1)  # any fidelity clears it
    strategy.forget(batch[1])
    assert {point_key(p) for p in strategy.pending} == {point_key(p) for p in batch[2:]}
    more = strategy.ask(2)
    keys = {point_key(p) for p in more}
    assert len(keys) == 2 and not keys & {point_key(p) for p in batch[2:]}


@pytest.mark.parametrize("name", ["random", "tpe", "spearmint"])
def test_failures_are_told_as_none(name: str) -> None:
    strategy = make(name, seed=1)
    drive(strategy, 16, fail_every=3)
    assert sum(o.value is None for o in strategy.history) == 5
    for point in strategy.ask(2):
        SPACE.validate(point)
    best = strategy.best()
    assert best is not None and best.value == min(
        o.value for o in strategy.history if o.value is not None)


def test_nan_and_inf_values_count_as_failures() -> None:
    strategy = make("random")
    a, b = strategy.ask(2)
    strategy.tell(a, float("nan"))
    strategy.tell(b, float("inf"))
    assert [o.value for o in strategy.history] == [None, None]


def test_tell_rejects_points_outside_the_space() -> None:
    strategy = make("random")
    point = strategy.ask()[0]
    with pytest.raises(ValueError):
        strategy.tell({**point, "optimizer.lr": 5.0}, 1.0)


def test_every_strategy_only_fails_with_a_clear_error_on_bad_state() -> None:
    state = make("random").state_dict()
    with pytest.raises(ValueError, match="not 'tpe'"):
        make("tpe").load_state_dict(state)


# -- multi-fidelity ----------------------------------------------------------------------
def test_model_observations_follow_bohbs_fidelity_rule() -> None:
    space = SearchSpace.from_dict({"x": ("uniform", 0, 1), "y": ("uniform", 0, 1)})
    strategy = make("random", space=space)
    need = len(space) + 2  # 4
    low = strategy.ask(need)
    for p in low:
        strategy.tell(p, 1.0, fidelity=1)
    high = low[:2]
    for p in high:  # promoted and measured again at a higher fidelity
        strategy.tell(p, 0.5, fidelity=3)
    assert [o.fidelity for o in strategy.model_observations()] == [1] * need
    for p in low[2:]:
        strategy.tell(p, 0.4, fidelity=3)
    chosen = strategy.model_observations()
    assert [o.fidelity for o in chosen] == [3] * need and chosen[-1].value == 0.4
    strategy.tell(low[0], 0.3, fidelity=3)  # re-told: the last value wins, no duplicate
    assert len(strategy.model_observations()) == need
    assert min(o.value for o in strategy.model_observations()) == 0.3


def test_none_fidelity_ranks_above_numbers_and_fallback_uses_fullest() -> None:
    space = SearchSpace.from_dict({"x": ("uniform", 0, 1)})
    strategy = make("random", space=space)
    a, b, c = strategy.ask(3)
    strategy.tell(a, 1.0, fidelity=1)
    strategy.tell(b, 1.0, fidelity=1)
    strategy.tell(c, 1.0)
    assert [o.point for o in strategy.model_observations()] == [a, b]  # fullest (< 3 each)
    strategy.tell(a, 2.0)
    strategy.tell(b, 2.0)
    assert {o.fidelity for o in strategy.model_observations()} == {None}


# -- grid ------------------------------------------------------------------------------
def test_grid_order_and_exhaustion() -> None:
    space = SearchSpace.from_dict({"a": ("choice", ["x", "y"]), "b": ("uniform", 0, 1)})
    grid = make("grid", space=space, grid_points=3)
    assert grid.size == 6
    points = grid.ask(4) + grid.ask(4)
    assert points == [
        {"a": "x", "b": 0.0}, {"a": "x", "b": 0.5}, {"a": "x", "b": 1.0},
        {"a": "y", "b": 0.0}, {"a": "y", "b": 0.5}, {"a": "y", "b": 1.0},
    ]
    assert grid.exhausted and grid.ask(3) == []


def test_grid_respects_conditional_spaces() -> None:
    space = SearchSpace.from_yaml(
        "head: !choice\n"
        "  - {depth: !randint [1, 2], lr: !loguniform [0.01, 1.0]}\n"
        "  - {type: shallow}\n"
        "seed: !choice [1, 2]\n"
    )
    grid = make("grid", space=space, grid_points=3)
    points = grid.ask(100)
    assert grid.size == len(points) == (2 * 3 + 1) * 2
    assert len({point_key(p) for p in points}) == len(points)
    for point in points:
        space.validate(point)
    assert sorted({p["head[0].lr"] for p in points if p["head"] == 0}) == pytest.approx(
        [0.01, 0.1, 1.0])
    assert points[-1] == {"head": 1, "seed": 2}


# -- TPE -------------------------------------------------------------------------------
def test_tpe_maps_choices_and_conditionals_to_hyperopt_and_back() -> None:
    from hyperopt import Domain

    from search.strategies.tpe import hyperopt_space

    domain = Domain(lambda _: 0.0, hyperopt_space(SPACE))
    assert set(domain.params) == set(SPACE.names)
    strategy = make("tpe", seed=0)
    points = drive(strategy, 40)
    options = {p["model.head"] for p in points}
    assert options == {0, 1}  # structured options: the index
    assert {p["model.act"] for p in points} == {"relu", "tanh"}  # scalar options: the value
    for point in points:
        SPACE.validate(point)  # inactive dimensions absent, integers and grid values exact
        assert ("model.head[0].depth" in point) == (point["model.head"] == 0)
    # after the random start-up TPE prefers the cheaper options
    late = points[20:]
    assert sum(p["model.head"] == 1 for p in late) > len(late) / 2
    assert sum(p["model.act"] == "relu" for p in late) > len(late) / 2


def test_tpe_treats_pending_points_as_running_trials() -> None:
    strategy = make("tpe", seed=0)
    drive(strategy, 10)
    batch = strategy.ask(3)
    trials = strategy._trials()
    states = [t["state"] for t in trials.trials]
    assert states.count(1) == 3  # JOB_STATE_RUNNING
    assert len(batch) == 3


def test_random_strategy_uses_scrambled_sobol() -> None:
    space = SearchSpace.from_dict({"x": ("uniform", 0, 1), "y": ("uniform", 0, 1)})
    points = make("random", space=space, seed=0).ask(64)
    xy = np.array([[p["x"], p["y"]] for p in points])
    # Sobol: each of the 8 x 8 cells holds exactly one of the first 64 points
    cells = {(int(x * 8), int(y * 8)) for x, y in xy}
    assert len(cells) == 64
