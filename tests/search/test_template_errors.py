"""Every template validation error is one line naming file, line and parameter."""

from __future__ import annotations

import pytest

from neon.errors import ConfigError
from search.space import SearchSpace
from search.template import QUniform, Uniform

CASES = [
    # (yaml, line, parameter, message fragment)
    ("a: 1\nlr: !uniform [0.1, 0.0001]\n", 2, "lr", "inverted range: low 0.1 > high 0.0001"),
    ("lr: !uniform [1, 1]\n", 1, "lr", "empty range"),
    ("n: !randint [5, 4]\n", 1, "n", "inverted range"),
    ("lr: !loguniform [0, 1]\n", 1, "lr", "non-positive log bound"),
    ("lr: !loguniform {low: -1.0, high: 1.0, name: rate}\n", 1, "rate",
     "non-positive log bound"),
    ("act: !choice []\n", 1, "act", "empty choice"),
    ("a: !uniform {low: 0, high: 1, name: x}\nb:\n  c: !uniform {low: 0, high: 2, name: x}\n",
     3, "x", "duplicate parameter name (first defined at <file>:1)"),
    ("a: !uniform [0, 1]\nb: !uniform {low: 0, high: 1, name: a}\n", 2, "a",
     "duplicate parameter name"),
    ("x:\n  y: !lognormal [0, 1]\n", 2, "x.y",
     "unknown tag !lognormal (did you mean '!loguniform'?)"),
    ("x:\n  ? !uniform [0, 1]\n  : 3\n", 2, "x", "a tag cannot be a mapping key"),
    ("keep: !quniform [0.5, 1.0, 0]\n", 1, "keep", "q must be > 0"),
    ("keep: !quniform [0.5, 1.0, -0.1]\n", 1, "keep", "q must be > 0"),
    ("keep: !quniform [0.51, 0.54, 0.05]\n", 1, "keep", "no multiple of q"),
    ("lr: !uniform [0, 1, 2]\n", 1, "lr",
     "wrong number of arguments: !uniform [low, high] takes 2, got 3"),
    ("k: !quniform [0, 1]\n", 1, "k", "wrong number of arguments"),
    ("lr: !hyperopt lr FLOAT 0.1\n", 1, "lr", "wrong number of arguments: !hyperopt"),
    ("lr: !hyperopt lr DOUBLE 0 1\n", 1, "lr", "FLOAT or INT"),
    ("n: !hyperopt n INT 10 1\n", 1, "n", "inverted range"),
    ("lr: !uniform {low: 0, hihg: 1}\n", 1, "lr",
     "unknown key 'hihg' for !uniform (did you mean 'high'?)"),
    ("lr: !uniform {low: 0}\n", 1, "lr", "!uniform is missing 'high'"),
    ("lr: !uniform 3\n", 1, "lr", "expects a list"),
    ("lr: !uniform [abc, 1]\n", 1, "lr", "low must be a number"),
    ("lr: !uniform [0, .inf]\n", 1, "lr", "must be finite"),
    ("n: !randint [1.5, 4]\n", 1, "n", "must be an integer"),
    ("act: !choice [relu, relu]\n", 1, "act", "duplicate option"),
    ("opt: !choice\n  - {lr: !loguniform [0, 1]}\n", 2, "opt[0].lr", "non-positive log bound"),
    ("a:\n  - b: 1\n  - c: !uniform [2, 1]\n", 3, "a.1.c", "inverted range"),
]


@pytest.mark.parametrize("text,line,key,fragment", CASES, ids=[c[3][:30] for c in CASES])
def test_error_names_file_line_and_parameter(tmp_path, text, line, key, fragment) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_yaml(path)
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert (err.file, err.line, err.key) == (str(path), line, key), message
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert fragment.replace("<file>", str(path)) in message, message


def test_errors_from_text_still_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^line 2: lr: inverted range"):
        SearchSpace.from_yaml("a: 1\nlr: !uniform [1.0, 0.5]\n")


def test_yaml_syntax_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"^line \d+: "):
        SearchSpace.from_yaml("lr: !uniform [0, 1\n")


def test_python_api_errors_name_the_parameter() -> None:
    with pytest.raises(ConfigError, match=r"^opt.lr: inverted range"):
        SearchSpace.from_dict({"opt": {"lr": Uniform(1.0, 0.1)}})
    with pytest.raises(ConfigError, match=r"^k: q must be > 0"):
        SearchSpace.from_dict({"k": QUniform(0, 1, 0)})
    with pytest.raises(ConfigError, match=r"^x: unknown tag !gaussian"):
        SearchSpace.from_dict({"x": ("gaussian", 0, 1)})
    with pytest.raises(ConfigError, match=r"^x: wrong number of arguments"):
        SearchSpace.from_dict({"x": ("randint", 1)})
    with pytest.raises(ConfigError, match="duplicate parameter name"):
        SearchSpace.from_dict({"a": Uniform(0, 1), "b": Uniform(0, 1, name="a")})
