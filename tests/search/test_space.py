"""SearchSpace: parsing every tag, sampling distributions, encoding, conditional spaces."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from neon.errors import ConfigError
from search.space import INACTIVE, SearchSpace, point_key
from search.template import Choice, LogUniform, QUniform, RandInt, Uniform

TEMPLATE = """\
backend: {name: cpu}
model:
  layers: !choice
    - [{type: affine, nout: !randint [32, 512], activation: relu},
       {type: affine, nout: 10, activation: softmax}]
    - [{type: affine, nout: 10, activation: !choice [relu, tanh]}]
optimizer:
  learning_rate: !loguniform {low: 1.0e-4, high: 1.0e-1, name: lr}
  momentum: !uniform [0.5, 0.99]
  keep: !quniform [0.5, 1.0, 0.05]
  batch: !quniform [16, 256, 16]
  decay: !hyperopt wd FLOAT 0.01 0.1
  steps: !hyperopt n INT 10 100
"""


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_yaml(TEMPLATE)


def test_dimensions_names_kinds_and_conditions(space: SearchSpace) -> None:
    dims = {d.name: d for d in space}
    assert list(dims) == [
        "model.layers", "model.layers[0].0.nout", "model.layers[1].0.activation",
        "lr", "optimizer.momentum", "optimizer.keep", "optimizer.batch", "wd", "n",
    ]
    assert dims["model.layers"].kind == "categorical" and not dims["model.layers"].by_value
    assert dims["model.layers[0].0.nout"].condition == ("model.layers", 0)
    assert dims["model.layers[1].0.activation"].condition == ("model.layers", 1)
    assert dims["model.layers[1].0.activation"].options == ("relu", "tanh")
    assert dims["lr"].log and (dims["lr"].low, dims["lr"].high) == (1e-4, 1e-1)
    assert dims["optimizer.keep"].kind == "float" and dims["optimizer.keep"].q == 0.05
    assert dims["optimizer.batch"].kind == "int" and dims["optimizer.batch"].q == 16
    assert dims["wd"].kind == "float" and (dims["wd"].low, dims["wd"].high) == (0.01, 0.1)
    assert dims["n"].kind == "int" and (dims["n"].low, dims["n"].high) == (10, 100)
    assert dims["lr"].line == 8 and dims["lr"].file is None


def test_template_keeps_tag_objects_with_location(tmp_path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(TEMPLATE)
    space = SearchSpace.from_yaml(path)
    lr = space.template["optimizer"]["learning_rate"]
    assert isinstance(lr, LogUniform) and lr.name == "lr"
    assert lr.file == str(path) and lr.line == 8
    assert isinstance(space.template["model"]["layers"], Choice)


def test_expand_gives_plain_config_for_each_option(space: SearchSpace) -> None:
    point = {"model.layers": 0, "model.layers[0].0.nout": 100, "lr": 0.01,
             "optimizer.momentum": 0.9, "optimizer.keep": 0.75, "optimizer.batch": 32,
             "wd": 0.05, "n": 10}
    config = space.expand(point)
    assert type(config) is dict and type(config["model"]["layers"]) is list
    assert config["model"]["layers"][0] == {"type": "affine", "nout": 100, "activation": "relu"}
    assert config["model"]["layers"][1]["nout"] == 10
    assert config["optimizer"] == {"learning_rate": 0.01, "momentum": 0.9, "keep": 0.75,
                                   "batch": 32, "decay": 0.05, "steps": 10}
    other = {k: v for k, v in point.items() if k != "model.layers[0].0.nout"}
    other.update({"model.layers": 1, "model.layers[1].0.activation": "tanh"})
    layers = space.expand(other)["model"]["layers"]
    assert layers == [{"type": "affine", "nout": 10, "activation": "tanh"}]
    json.dumps(space.expand(other))  # nothing but plain data left


def test_samples_are_valid_and_inactive_dims_absent(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    seen_options = set()
    for _ in range(200):
        point = space.sample(rng)
        space.validate(point)
        seen_options.add(point["model.layers"])
        if point["model.layers"] == 0:
            assert "model.layers[1].0.activation" not in point
            assert isinstance(point["model.layers[0].0.nout"], int)
        else:
            assert "model.layers[0].0.nout" not in point
        assert all(isinstance(v, (int, float, str, bool)) for v in point.values())
    assert seen_options == {0, 1}


def test_loguniform_is_uniform_in_log_space() -> None:
    space = SearchSpace.from_dict({"lr": ("loguniform", 1e-5, 1e-1)})
    rng = np.random.default_rng(1)
    logs = np.log10([space.sample(rng)["lr"] for _ in range(2000)])
    assert stats.kstest(logs, stats.uniform(loc=-5, scale=4).cdf).pvalue > 0.01
    assert stats.kstest(10**logs, stats.uniform(loc=1e-5, scale=0.1).cdf).pvalue < 1e-6


def test_uniform_sampling_ks() -> None:
    space = SearchSpace.from_dict({"m": Uniform(0.5, 0.99)})
    rng = np.random.default_rng(2)
    xs = [space.sample(rng)["m"] for _ in range(2000)]
    assert stats.kstest(xs, stats.uniform(loc=0.5, scale=0.49).cdf).pvalue > 0.01


def test_quantized_values_lie_on_the_grid_and_cover_it() -> None:
    space = SearchSpace.from_dict({"keep": ("quniform", 0.5, 1.0, 0.05)})
    rng = np.random.default_rng(3)
    xs = [space.sample(rng)["keep"] for _ in range(3000)]
    assert all(isinstance(x, float) for x in xs)
    assert all(abs(x / 0.05 - round(x / 0.05)) < 1e-9 and 0.5 <= x <= 1.0 for x in xs)
    values, counts = np.unique(xs, return_counts=True)
    assert len(values) == 11 and values[0] == 0.5 and values[-1] == 1.0
    assert stats.chisquare(counts).pvalue > 0.001  # every grid value equally likely
    assert space["keep"].snap(0.6800000001) == 0.7 and space["keep"].snap(7.0) == 1.0


def test_randint_is_inclusive_and_uniform() -> None:
    space = SearchSpace.from_dict({"n": RandInt(3, 7)})
    rng = np.random.default_rng(4)
    xs = [space.sample(rng)["n"] for _ in range(5000)]
    assert all(type(x) is int for x in xs)
    values, counts = np.unique(xs, return_counts=True)
    assert values.tolist() == [3, 4, 5, 6, 7]
    assert stats.chisquare(counts).pvalue > 0.001


def test_integer_quniform_gives_ints() -> None:
    space = SearchSpace.from_dict({"b": QUniform(16, 64, 16)})
    assert space["b"].kind == "int"
    assert sorted({space.sample(np.random.default_rng(i))["b"] for i in range(200)}) == [
        16, 32, 48, 64]


def test_unit_encoding_round_trip(space: SearchSpace) -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        point = space.sample(rng)
        u = space.to_unit(point)
        assert u.shape == (len(space),) and np.all((u >= 0) & (u <= 1))
        back = space.from_unit(u)
        assert back.keys() == point.keys()
        for key, value in point.items():
            assert back[key] == (pytest.approx(value, rel=1e-12) if type(value) is float
                                 else value)
        if point["model.layers"] == 0:
            assert u[space.names.index("model.layers[1].0.activation")] == INACTIVE
    with pytest.raises(ValueError):
        space.from_unit(np.zeros(3))


def test_active_and_validate(space: SearchSpace) -> None:
    point = space.sample(np.random.default_rng(6))
    point = {**point, "model.layers": 1, "model.layers[1].0.activation": "relu",
             "model.layers[0].0.nout": 64}
    assert "model.layers[0].0.nout" not in space.active(point)
    with pytest.raises(ValueError, match="inactive"):
        space.validate(point)
    good = space.active(point)
    space.validate(good)
    for bad, match in [
        ({**good, "lr": 1.0}, "outside"),
        ({**good, "optimizer.keep": 0.52}, "outside"),
        ({**good, "n": 5}, "outside"),
        ({**good, "model.layers[1].0.activation": "gelu"}, "outside"),
        ({**good, "typo": 1}, "unknown parameter"),
        ({k: v for k, v in good.items() if k != "lr"}, "missing"),
    ]:
        with pytest.raises(ValueError, match=match):
            space.validate(bad)


def test_canonical_makes_equal_points_equal(space: SearchSpace) -> None:
    point = space.active(space.sample(np.random.default_rng(7)))
    floaty = {k: (float(v) if type(v) is int else v) for k, v in point.items()}
    assert point_key(space.canonical(floaty)) == point_key(space.canonical(point))


def test_table_lists_every_dimension(space: SearchSpace) -> None:
    text = space.table()
    lines = text.splitlines()
    assert len(lines) == 2 + len(space)
    assert "lr" in text and "log" in text and "model.layers = 1" in text and ":8" in text


def test_from_dict_tuple_syntax_nesting_and_tag_classes() -> None:
    space = SearchSpace.from_dict({
        "optimizer": {"lr": ("loguniform", 1e-4, 1e-1), "momentum": 0.9},
        "act": ("choice", ["relu", "tanh"]),
        "arch": Choice([{"depth": ("randint", 1, 3)}, {"width": Uniform(0, 1, name="w")}],
                       name="arch"),
        "mapped": ("uniform", {"low": 0, "high": 2, "name": "m"}),
        "flags": ["keep", ("choice", [True, False])],
    })
    assert space.names == ["optimizer.lr", "act", "arch", "arch[0].depth", "w", "m",
                           "flags.1"]
    assert space["w"].condition == ("arch", 1)
    point = {"optimizer.lr": 0.01, "act": "tanh", "arch": 1, "w": 0.5, "m": 1.0,
             "flags.1": False}
    assert space.expand(point) == {
        "optimizer": {"lr": 0.01, "momentum": 0.9}, "act": "tanh", "arch": {"width": 0.5},
        "mapped": 1.0, "flags": ["keep", False]}


def test_nested_choice_inside_option() -> None:
    space = SearchSpace.from_yaml(
        "opt: !choice\n"
        "  - {type: sgd, lr: !loguniform [0.001, 0.1]}\n"
        "  - {type: adam, beta: !choice [0.9, !uniform [0.95, 0.999]]}\n"
    )
    assert space.names == ["opt", "opt[0].lr", "opt[1].beta", "opt[1].beta[1]"]
    assert space["opt[1].beta[1]"].condition == ("opt[1].beta", 1)
    rng = np.random.default_rng(8)
    kinds = set()
    for _ in range(100):
        point = space.sample(rng)
        config = space.expand(point)
        kinds.add((config["opt"]["type"], point.get("opt[1].beta")))
        if point["opt"] == 1 and point["opt[1].beta"] == 1:
            assert config["opt"]["beta"] == point["opt[1].beta[1]"]
    assert {k[0] for k in kinds} == {"sgd", "adam"}


def test_scalar_options_of_mixed_kinds() -> None:
    space = SearchSpace.from_dict({"x": ("choice", [1, "1", True, 2.5])})
    dim = space["x"]
    assert [dim.index_of(v) for v in (1, "1", True, 2.5)] == [0, 1, 2, 3]
    assert dim.index_of(1.0) == 0
    with pytest.raises(ValueError):
        dim.index_of(False)


def test_grid_values_per_kind() -> None:
    space = SearchSpace.from_dict({
        "lin": ("uniform", 0, 1), "log": ("loguniform", 1e-3, 1e1), "int": ("randint", 1, 3),
        "q": ("quniform", 0, 1, 0.25), "c": ("choice", ["a", "b"]),
    })
    assert space["lin"].grid(3) == [0.0, 0.5, 1.0]
    assert np.allclose(space["log"].grid(5), [1e-3, 1e-2, 1e-1, 1, 10])
    assert space["int"].grid(5) == [1, 2, 3]
    assert space["q"].grid(3) == [0.0, 0.5, 1.0]
    assert space["c"].grid(5) == ["a", "b"]
    assert math.isclose(space["log"].grid(1)[0], 0.1)


def test_from_dict_mapping_form_matches_the_tuple_form() -> None:
    """``{"type": tag, fields...}`` as users of other libraries write spaces."""
    mapped = SearchSpace.from_dict({
        "x": {"type": "uniform", "low": -5, "high": 10},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1, "name": "rate"},
        "keep": {"type": "quniform", "low": 0.5, "high": 1.0, "q": 0.05},
        "n": {"type": "randint", "low": 1, "high": 8},
        "act": {"type": "choice", "options": ["relu", "tanh"]},
        "opt": {"type": "!choice", "values": [
            {"type": "sgd"}, {"type": "adam", "beta": {"type": "uniform", "low": 0.9,
                                                        "high": 0.99}}]},
        "c": {"type": "choice", "choices": [1, 2]},
    })
    tupled = SearchSpace.from_dict({
        "x": ("uniform", -5, 10), "lr": LogUniform(1e-4, 1e-1, name="rate"),
        "keep": ("quniform", 0.5, 1.0, 0.05), "n": ("randint", 1, 8),
        "act": ("choice", ["relu", "tanh"]),
        "opt": ("choice", [{"type": "sgd"}, {"type": "adam", "beta": ("uniform", 0.9, 0.99)}]),
        "c": ("choice", [1, 2]),
    })
    facts = [(d.name, d.kind, d.low, d.high, d.log, d.q, d.describe(), d.condition)
             for d in mapped]
    assert facts == [(d.name, d.kind, d.low, d.high, d.log, d.q, d.describe(), d.condition)
                     for d in tupled]
    assert mapped.names == ["x", "rate", "keep", "n", "act", "opt", "opt[1].beta", "c"]
    rng = np.random.default_rng(0)
    point = mapped.sample(rng)
    assert mapped.expand(point) == tupled.expand(point)
    assert mapped.expand(point)["opt"]["type"] in ("sgd", "adam")  # options stay constants
    assert SearchSpace.from_yaml("a: !choice {values: [x, y]}\n")["a"].options == ("x", "y")


def test_from_dict_mapping_form_ambiguity() -> None:
    """A mapping is a tag exactly when its ``type`` names one; neon components (``affine``,
    ``sgd``) stay constants, and a constant whose type is a tag name is ``("const", ...)``."""
    space = SearchSpace.from_dict({
        "layer": {"type": "affine", "nout": 10, "init": ("const", {
            "type": "uniform", "low": -0.1, "high": 0.1})},
        "scale": {"type": "uniform", "low": -0.1, "high": 0.1},
    })
    assert space.names == ["scale"]
    config = space.expand({"scale": 0.05})
    assert config["layer"] == {"type": "affine", "nout": 10,
                               "init": {"type": "uniform", "low": -0.1, "high": 0.1}}
    for spec, words in [
        ({"init": {"type": "uniform"}}, "init: !uniform is missing 'low', 'high'"),
        ({"x": {"type": "uniform", "low": 0, "hihg": 1}},
         "x: unknown key 'hihg' for !uniform (did you mean 'high'?)"),
        ({"a": {"type": "choice", "options": [1], "values": [2]}},
         "a: !choice takes its options once, got options and values"),
    ]:
        with pytest.raises(ConfigError) as err:
            SearchSpace.from_dict(spec)
        assert str(err.value).startswith(words), err.value
        assert "for a constant mapping of type" in str(err.value) and "('const', {...})" in str(
            err.value)


@pytest.mark.parametrize("spec,words", [
    ({}, "no tunable parameter in {}"),
    ({"x": {"type": "uniforn", "low": -5, "high": 10}},
     "x: type 'uniforn' is no tag (did you mean 'uniform'?)"),
    ({"model": {"layers": [{"type": "affine", "nout": 10}]}}, "write each as a tag object"),
])
def test_from_dict_refuses_a_space_without_parameters(spec, words) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        SearchSpace.from_dict(spec)
