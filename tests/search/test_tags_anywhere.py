"""Any value of a template can be tunable: every tag kind at every scalar position of the
example templates either dry-runs or is refused in one line (exit 2), never a traceback."""

from __future__ import annotations

import contextlib
import copy
import io
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from experiments.cli import main

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted(p for p in (ROOT / "examples" / "sweeps").glob("*.yaml")
                if not p.stem.endswith("template"))


@dataclass
class Tagged:
    """A YAML tag and its argument as written (``!uniform [0, 1]``)."""

    tag: str
    value: Any


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: _Loader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.SequenceNode):
        return Tagged("!" + suffix, loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return Tagged("!" + suffix, loader.construct_mapping(node, deep=True))
    return Tagged("!" + suffix, loader.construct_scalar(node))


_Loader.add_multi_constructor("!", _construct)


class _Dumper(yaml.SafeDumper):
    pass


def _represent(dumper: _Dumper, data: Tagged) -> yaml.Node:
    if isinstance(data.value, list):
        return dumper.represent_sequence(data.tag, data.value, flow_style=True)
    if isinstance(data.value, dict):
        return dumper.represent_mapping(data.tag, data.value, flow_style=True)
    return dumper.represent_scalar(data.tag, str(data.value))


_Dumper.add_representer(Tagged, _represent)


def scalar_paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every scalar, tag arguments and choice options included."""
    if isinstance(node, Tagged):
        return [path] if not isinstance(node.value, (list, dict)) else \
            scalar_paths(node.value, (*path, Tagged))
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in scalar_paths(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in scalar_paths(v, (*path, i))]
    return [path]


def replaced(node: Any, path: tuple, new: Any) -> Any:
    out = copy.deepcopy(node)
    if not path:
        return new
    parent = out
    for step in path[:-1]:
        parent = parent.value if step is Tagged else parent[step]
    last = path[-1]
    if last is Tagged:
        parent.value = new
    else:
        parent[last] = new
    return out


@dataclass
class Example:
    sweep: dict
    template: dict
    inline: bool
    positions: list[tuple]


def load_example(path: Path) -> Example:
    sweep = yaml.load(path.read_text(), _Loader)
    model = sweep["model"]
    inline = not isinstance(model, str)
    template = model if inline else yaml.load((path.parent / model).read_text(), _Loader)
    return Example(sweep, template, inline, scalar_paths(template))


EXAMPLES = {p.stem: load_example(p) for p in SWEEPS}

numbers = st.one_of(st.integers(-3, 300), st.floats(-2.0, 10.0),
                    st.sampled_from([1.0e-4, 0.5, 1, 2, 3, 64]))
words = st.sampled_from(["relu", "tanh", "fp16", "bf16", "cpu", "gpu", "digits", "synthetic",
                         "misclassification", "log_loss", "affine", "adam", "x", ""])
scalars = st.one_of(numbers, words, st.booleans(), st.none())


def range_tag(kind: str, fields: tuple[str, ...]) -> st.SearchStrategy[Tagged]:
    """``!kind [a, b, ...]`` or ``!kind {field: ..., name: ...}``, mostly with low < high."""
    bounds = st.one_of(st.tuples(numbers, numbers).map(sorted), st.tuples(numbers, numbers),
                       st.tuples(st.integers(1, 4), st.integers(5, 64)))
    step = st.sampled_from([1, 2, 0.05, 0.5, 0])
    args = bounds.flatmap(lambda b: st.tuples(st.just(b[0]), st.just(b[1]), step)).map(
        lambda a: a[:len(fields)])
    as_list = args.map(lambda a: Tagged(kind, list(a)))
    as_mapping = st.tuples(args, st.sampled_from(["p", "q", "lr"])).map(
        lambda a: Tagged(kind, {**dict(zip(fields, a[0])), "name": a[1]}))
    return st.one_of(as_list, as_mapping)


hyperopt = st.tuples(st.sampled_from(["h", "k", "lr"]), st.sampled_from(["FLOAT", "INT"]),
                     numbers, numbers).map(lambda a: Tagged("!hyperopt", " ".join(map(str, a))))
simple_tags = st.one_of(
    range_tag("!uniform", ("low", "high")), range_tag("!loguniform", ("low", "high")),
    range_tag("!quniform", ("low", "high", "q")), range_tag("!randint", ("low", "high")),
    hyperopt)
keys = st.sampled_from(["a", "type", "nout", "name", "epochs", "numerics"])
options = st.recursive(st.one_of(scalars, simple_tags), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
choices = st.lists(options, max_size=4).map(lambda o: Tagged("!choice", o))
tags = st.one_of(simple_tags, choices)


def write(example: Example, template: Any, folder: Path) -> Path:
    sweep = dict(example.sweep)
    if example.inline:
        sweep["model"] = template
    else:
        sweep["model"] = "template.yaml"
        (folder / "template.yaml").write_text(yaml.dump(template, Dumper=_Dumper,
                                                        sort_keys=False))
    path = folder / "sweep.yaml"
    path.write_text(yaml.dump(sweep, Dumper=_Dumper, sort_keys=False))
    return path


def dry_run(path: Path) -> tuple[int, str]:
    """``neon-search PATH --dry-run`` in this process; (exit code, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    sigpipe = signal.getsignal(signal.SIGPIPE)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(path), "--dry-run"])
    finally:
        signal.signal(signal.SIGPIPE, sigpipe)
    return code, err.getvalue()


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_dry_runs_as_written(tmp_path, name):
    """The baseline: unchanged, every example dry-runs (this also warms the imports)."""
    example = EXAMPLES[name]
    assert dry_run(write(example, example.template, tmp_path)) == (0, "")


@pytest.mark.parametrize("name", list(EXAMPLES))
@settings(max_examples=150, deadline=10_000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_tag_anywhere_runs_or_is_refused_in_one_line(tmp_path, name, data):
    example = EXAMPLES[name]
    position = data.draw(st.sampled_from(example.positions), label="position")
    tag = data.draw(tags, label="tag")
    path = write(example, replaced(example.template, position, tag), tmp_path)
    code, err = dry_run(path)
    event(f"exit {code}")
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("neon-search: error: ") and err.count("\n") == 1, err
        assert str(tmp_path) in err, f"the message names no file: {err}"
    else:
        assert "Traceback" not in err, err
