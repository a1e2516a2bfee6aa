"""search.minimize: the black-box API."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time

import pytest

import search
from neon.errors import ConfigError
from search import Result, SearchSpace, minimize
from search.strategies import STRATEGIES


def quadratic(point: dict) -> float:
    return (point["x"] - 0.3) ** 2 + (math.log10(point["lr"]) + 2) ** 2


SPACE = {"x": ("uniform", 0, 1), "lr": ("loguniform", 1e-4, 1.0)}


@pytest.mark.parametrize("strategy", ["random", "tpe", {"type": "spearmint", "burnin": 20}])
def test_minimize_finds_a_good_point(strategy) -> None:
    result = minimize(quadratic, SPACE, strategy=strategy, trials=25, seed=1)
    assert isinstance(result, Result) and len(result.history) == 25
    assert result.best_value == min(e.value for e in result.history)
    assert result.best_value == quadratic(result.best_point)
    assert result.best_value < 0.5


def test_space_as_yaml_text_and_instance() -> None:
    text = "x: !uniform [0, 1]\nlr: !loguniform [1.0e-4, 1.0]\n"
    a = minimize(quadratic, text, strategy="random", trials=5)
    b = minimize(quadratic, SearchSpace.from_yaml(text), strategy="random", trials=5)
    assert [e.point for e in a.history] == [e.point for e in b.history]


def test_exceptions_and_nan_are_failures() -> None:
    def flaky(point: dict) -> float:
        if point["x"] < 0.2:
            raise RuntimeError("diverged")
        if point["x"] > 0.8:
            return float("nan")
        return point["x"]

    result = minimize(flaky, {"x": ("uniform", 0, 1)}, strategy="random", trials=32)
    failed = [e for e in result.history if e.value is None]
    assert result.n_failed == len(failed) > 5
    assert any("RuntimeError: diverged" in e.error for e in failed)
    assert any("nan" in e.error for e in failed)
    assert 0.2 <= result.best_value < 0.25


def test_all_failures_give_no_best() -> None:
    result = minimize(lambda p: 1 / 0, {"x": ("uniform", 0, 1)}, strategy="tpe", trials=3)
    assert result.best_value is None and result.best_point is None and result.n_failed == 3


def test_parallel_evaluates_batches_concurrently_and_reproducibly() -> None:
    active, peak, lock = [0], [0], threading.Lock()

    def slow(point: dict) -> float:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return quadratic(point)

    a = minimize(slow, SPACE, strategy="tpe", trials=12, parallel=4, seed=2)
    b = minimize(quadratic, SPACE, strategy="tpe", trials=12, parallel=4, seed=2)
    assert peak[0] > 1
    assert [e.point for e in a.history] == [e.point for e in b.history]
    assert len({str(sorted(e.point.items())) for e in a.history}) == 12


def test_grid_stops_when_exhausted() -> None:
    result = minimize(lambda p: p["x"], {"x": ("choice", [3, 1, 2])}, strategy="grid",
                      trials=10)
    assert len(result.history) == 3 and result.best_point == {"x": 1}


def test_strategy_instance_and_bad_arguments() -> None:
    space = SearchSpace.from_dict(SPACE)
    strategy = STRATEGIES.build("random", space=space, seed=0)
    assert len(minimize(quadratic, space, strategy=strategy, trials=4).history) == 4
    with pytest.raises(ValueError):
        minimize(quadratic, SPACE, trials=-1)
    with pytest.raises(TypeError):
        minimize(quadratic, 42)


def test_package_import_stays_light() -> None:
    code = (
        "import sys, search; heavy = {'hyperopt', 'matplotlib', 'mlflow', 'dask', 'torch',"
        " 'scipy'}; print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    assert set(search.__all__) == {"SearchSpace", "minimize", "Result"}


def test_mapping_form_space_is_searched() -> None:
    """The issue's space: a mapping per parameter, not an empty space called with {}."""
    seen = []

    def fn(point: dict) -> float:
        seen.append(point)
        return (point["x"] - 2) ** 2

    result = minimize(fn, {"x": {"type": "uniform", "low": -5, "high": 10}},
                      strategy="random", trials=20)
    assert len(seen) == 20 and all(-5 <= p["x"] <= 10 for p in seen)
    assert len({p["x"] for p in seen}) == 20 and result.best_value < 1


@pytest.mark.parametrize("space", [{"x": {"type": "uniforn", "low": -5, "high": 10}},
                                   "x: 3\n", SearchSpace.from_yaml("a: 1\n")])
def test_empty_space_is_refused(space) -> None:
    calls = []
    with pytest.raises(ConfigError, match="no tunable parameter"):
        minimize(calls.append, space, strategy="random", trials=3)
    assert calls == []
