"""Line-aware safe YAML loading."""

from __future__ import annotations

import pytest

from neon.errors import ConfigError
from neon.yamlio import load_yaml


def test_lines_of_keys_and_items():
    doc = load_yaml("a: 1\nb:\n  - {x: 2}\n  - 3\n")
    assert doc.line_of("b") == 2 and doc["b"].line_of(1) == 4 and doc["b"][0].line_of("x") == 3


def test_exponent_floats_without_sign_or_dot_are_floats():
    doc = load_yaml("a: 1e-4\nb: 1.0e6\nc: 10\nd: '1e3'\ne: -2E+3\n")
    assert doc == {"a": 1e-4, "b": 1e6, "c": 10, "d": "1e3", "e": -2000.0}
    assert isinstance(doc["c"], int)


def test_duplicate_keys_rejected(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(ConfigError, match=r"d\.yaml:3: a: duplicate key"):
        load_yaml(str(path))


def test_syntax_error_names_line():
    with pytest.raises(ConfigError, match=r"line \d: expected"):
        load_yaml("a: 1\nb: [1,\n")
