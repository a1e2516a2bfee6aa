"""Tunable tags in model YAML templates, and template + point -> concrete config.

A template is a config (mappings, lists, scalars) in which some values are *tags*:
``!uniform [lo, hi]``, ``!loguniform``, ``!quniform [lo, hi, q]``, ``!randint [lo, hi]``
(inclusive), ``!choice [...]`` (options may hold further tags: conditional parameters) and
neon 0.8's ``!hyperopt NAME FLOAT|INT LOW HIGH``.  Every tag also has a mapping form,
e.g. ``!loguniform {low: 1.0e-4, high: 1.0e-1, name: lr}`` or
``!choice {options: [relu, tanh], name: act}`` (``values:`` or ``choices:`` also name the
options).  ``!quniform`` with integer low, high and q (e.g. batch sizes ``[16, 256, 16]``)
gives integers; bounds written ``1e-4`` (which YAML reads as a string) are accepted as
numbers.

Parameter names: a tag is named by its dotted path in the config (``optimizer.learning_rate``,
``model.layers.0.nout``) unless it has ``name:``.  Inside option ``i`` of a choice named
``C`` the path restarts at ``C[i]``: ``model.layers[0].0.nout`` is the ``nout`` of the first
layer of option 0 of the choice at ``model.layers``.  Names of different options can
therefore never collide.

Malformed tags do not raise while the YAML is read: they become ``BadTag`` placeholders so
that the error, raised when the template is walked, can name file, line *and* parameter.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from neon.errors import ConfigError
from neon.registry import did_you_mean
from neon.yamlio import LineLoader, LocDict, LocList, line_of, load_yaml

__all__ = [
    "CHOICE_ALIASES",
    "TAGS",
    "BadTag",
    "Choice",
    "LogUniform",
    "QUniform",
    "RandInt",
    "Site",
    "Tag",
    "TemplateLoader",
    "Uniform",
    "expand",
    "is_scalar",
    "iter_sites",
    "join_path",
    "load_template",
    "make_tag",
    "option_path",
]

Scalar = float | int | str | bool


def is_scalar(value: Any) -> bool:
    """Whether ``value`` is a plain point value (str, int, float or bool)."""
    return isinstance(value, (str, int, float, bool))


def join_path(path: str, key: Any) -> str:
    """Dotted path of ``key`` inside the node at ``path``."""
    return f"{path}.{key}" if path else str(key)


def option_path(choice_name: str, index: int) -> str:
    """Path prefix of the contents of option ``index`` of the choice named ``choice_name``."""
    return f"{choice_name}[{index}]"


@dataclass(eq=False)
class Tag:
    """Base of the tunable tags; remembers name override, source file and line.

    ``eq=False`` keeps identity hashing, so a tag used as a mapping key can be reported.
    """

    yaml_tag: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()
    name: str | None = field(default=None, kw_only=True)
    file: str | None = field(default=None, kw_only=True)
    line: int | None = field(default=None, kw_only=True)

    def error(self, message: str, key: str | None) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line, key=key or self.name)

    def check(self, key: str) -> None:
        """Validate and normalize the arguments; raise ``ConfigError`` naming ``key``."""
        raise NotImplementedError

    def _number(self, field_name: str, key: str) -> float:
        value = getattr(self, field_name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            shown = "a tag" if isinstance(value, (Tag, BadTag)) else repr(value)
            raise self.error(f"{self.yaml_tag} {field_name} must be a number, got {shown}", key)
        if not math.isfinite(value):
            raise self.error(f"{self.yaml_tag} {field_name} must be finite, got {value!r}", key)
        setattr(self, field_name, value)
        return value

    def _range(self, key: str, *, allow_equal: bool = False) -> None:
        low, high = self._number("low", key), self._number("high", key)
        if low > high:
            raise self.error(f"inverted range: low {low!r} > high {high!r}", key)
        if low == high and not allow_equal:
            raise self.error(f"empty range: low == high == {low!r}", key)


@dataclass(eq=False)
class Uniform(Tag):
    """``!uniform [low, high]``: a float drawn uniformly."""

    yaml_tag: ClassVar[str] = "!uniform"
    fields: ClassVar[tuple[str, ...]] = ("low", "high")
    low: float
    high: float

    def check(self, key: str) -> None:
        self._range(key)


@dataclass(eq=False)
class LogUniform(Uniform):
    """``!loguniform [low, high]``: a float whose logarithm is uniform; needs low > 0."""

    yaml_tag: ClassVar[str] = "!loguniform"

    def check(self, key: str) -> None:
        low = self._number("low", key)
        if low <= 0:
            raise self.error(f"non-positive log bound: low {low!r} must be > 0", key)
        self._range(key)


@dataclass(eq=False)
class QUniform(Tag):
    """``!quniform [low, high, q]``: a multiple of q in [low, high], all equally likely."""

    yaml_tag: ClassVar[str] = "!quniform"
    fields: ClassVar[tuple[str, ...]] = ("low", "high", "q")
    low: float
    high: float
    q: float

    def check(self, key: str) -> None:
        self._range(key)
        q = self._number("q", key)
        if q <= 0:
            raise self.error(f"q must be > 0, got {q!r}", key)
        if math.floor(self.high / q + 1e-9) < math.ceil(self.low / q - 1e-9):
            raise self.error(f"no multiple of q={q!r} in [{self.low!r}, {self.high!r}]", key)


@dataclass(eq=False)
class RandInt(Tag):
    """``!randint [low, high]``: an integer in low..high, both ends included."""

    yaml_tag: ClassVar[str] = "!randint"
    fields: ClassVar[tuple[str, ...]] = ("low", "high")
    low: int
    high: int

    def check(self, key: str) -> None:
        for name in ("low", "high"):
            value = self._number(name, key)
            if value != int(value):
                raise self.error(f"{self.yaml_tag} {name} must be an integer, got {value!r}", key)
            setattr(self, name, int(value))
        self._range(key, allow_equal=True)


@dataclass(eq=False)
class Choice(Tag):
    """``!choice [a, b, ...]``: one of the options; options may hold further tags.

    A point holds the option itself when all options are plain scalars, else its index.
    """

    yaml_tag: ClassVar[str] = "!choice"
    fields: ClassVar[tuple[str, ...]] = ("options",)
    options: list[Any]

    def check(self, key: str) -> None:
        if not isinstance(self.options, (list, tuple)):
            raise self.error(f"!choice options must be a list, got {self.options!r}", key)
        if not self.options:
            raise self.error("empty choice: give at least one option", key)
        if self.by_value:
            seen: dict[tuple[str, Any], int] = {}
            for i, option in enumerate(self.options):
                ident = (_kind(option), option)
                if ident in seen:
                    raise self.error(
                        f"duplicate option {option!r} (options {seen[ident]} and {i})", key
                    )
                seen[ident] = i

    @property
    def by_value(self) -> bool:
        """True when points hold the option itself (all options plain scalars)."""
        return all(is_scalar(o) for o in self.options)

    def value_of(self, index: int) -> Scalar:
        """The point value that selects option ``index``."""
        return self.options[index] if self.by_value else index

    def index_of(self, value: Any) -> int:
        """The option selected by point value ``value``; ``ValueError`` if none."""
        if self.by_value:
            for i, option in enumerate(self.options):
                if _kind(option) == _kind(value) and option == value:
                    return i
            raise ValueError(f"{value!r} is not one of the options {list(self.options)!r}")
        if _kind(value) != "number" or not float(value).is_integer():
            raise ValueError(f"expected an option index, got {value!r}")
        if not 0 <= int(value) < len(self.options):
            raise ValueError(f"option index {value!r} out of range 0..{len(self.options) - 1}")
        return int(value)


def _kind(value: Any) -> str:
    """``bool``, ``str``, ``number`` or ``other``: options match point values of one kind."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    return "number" if isinstance(value, (int, float)) else "other"


@dataclass(eq=False)
class BadTag:
    """A tag that could not be built; raises its message once its parameter path is known."""

    message: str
    file: str | None = None
    line: int | None = None
    name: str | None = None

    def error(self, key: str | None) -> ConfigError:
        return ConfigError(self.message, file=self.file, line=self.line, key=self.name or key)


TAGS: dict[str, type[Tag]] = {
    cls.yaml_tag: cls for cls in (Uniform, LogUniform, QUniform, RandInt, Choice)
}
CHOICE_ALIASES = ("values", "choices")
"""Other names of a choice's ``options`` in its mapping form (as W&B, Ax and Optuna say)."""


def _signature(cls: type[Tag]) -> str:
    return f"{cls.yaml_tag} [{', '.join(cls.fields)}]"


def make_tag(
    tag: str,
    args: Any,
    *,
    file: str | None = None,
    line: int | None = None,
    key_lines: Mapping[Any, int] | None = None,
) -> Tag | BadTag:
    """Build the tag named ``tag`` from a list of arguments or a mapping of them.

    Used by the YAML constructors and by ``SearchSpace.from_dict``'s tuple syntax; problems
    come back as a ``BadTag`` (raised later with the parameter's name).
    """
    name = tag if tag.startswith("!") else f"!{tag}"
    if name not in TAGS:
        known = ", ".join([*sorted(TAGS), "!hyperopt"])
        hint = did_you_mean(name, [*TAGS, "!hyperopt"])
        return BadTag(f"unknown tag {name}{hint}; known: {known}", file, line)
    cls = TAGS[name]
    if isinstance(args, Mapping) and cls is Choice:
        given = [k for k in ("options", *CHOICE_ALIASES) if k in args]
        if len(given) > 1:
            return BadTag(f"{name} takes its options once, got {' and '.join(given)}", file, line)
        if given and given[0] != "options":
            args = {("options" if k == given[0] else k): v for k, v in args.items()}
    if isinstance(args, Mapping):
        unknown = [k for k in args if k not in (*cls.fields, "name")]
        if unknown:
            bad = unknown[0]
            bad_line = (key_lines or {}).get(bad, line)
            valid = ", ".join((*cls.fields, "name"))
            return BadTag(
                f"unknown key {bad!r} for {name}{did_you_mean(str(bad), cls.fields)}; "
                f"valid keys: {valid}",
                file,
                bad_line,
            )
        missing = [f for f in cls.fields if f not in args]
        tag_name = args.get("name")
        if tag_name is not None and (not isinstance(tag_name, str) or not tag_name):
            return BadTag(f"{name} name must be a non-empty string, got {tag_name!r}", file, line)
        if missing:
            return BadTag(
                f"{name} is missing {', '.join(repr(m) for m in missing)}; "
                f"expected {{{', '.join(cls.fields)}, name}}",
                file,
                line,
                tag_name,
            )
        values = [args[f] for f in cls.fields]
    elif isinstance(args, (list, tuple)):
        if cls is Choice:
            values, tag_name = [list(args)], None
        elif len(args) != len(cls.fields):
            return BadTag(
                f"wrong number of arguments: {_signature(cls)} takes {len(cls.fields)}, "
                f"got {len(args)}",
                file,
                line,
            )
        else:
            values, tag_name = list(args), None
    else:
        return BadTag(
            f"{name} expects a list {_signature(cls)[len(name) + 1:]} or a mapping "
            f"{{{', '.join(cls.fields)}, name}}, got {args!r}",
            file,
            line,
        )
    return cls(*values, name=tag_name, file=file, line=line)


def _hyperopt_tag(text: str, file: str | None, line: int | None) -> Tag | BadTag:
    """neon 0.8's ``!hyperopt NAME FLOAT|INT LOW HIGH`` (INT is inclusive like !randint)."""
    parts = str(text).split()
    if len(parts) != 4:
        return BadTag(
            f"wrong number of arguments: !hyperopt takes NAME FLOAT|INT LOW HIGH, got {text!r}",
            file,
            line,
        )
    name, kind, low, high = parts
    kinds = {"FLOAT": Uniform, "INT": RandInt}
    if kind.upper() not in kinds:
        return BadTag(f"!hyperopt type must be FLOAT or INT, got {kind!r}", file, line, name)
    cls = kinds[kind.upper()]
    return cls(low, high, name=name, file=file, line=line)


def _construct(loader: TemplateLoader, node: yaml.Node, tag: str) -> Tag | BadTag:
    file, line = loader.source_name, node.start_mark.line + 1
    if tag == "!hyperopt":
        if not isinstance(node, yaml.ScalarNode):
            return BadTag("!hyperopt takes one line: NAME FLOAT|INT LOW HIGH", file, line)
        return _hyperopt_tag(loader.construct_scalar(node), file, line)
    if isinstance(node, yaml.SequenceNode):
        return make_tag(tag, loader.construct_sequence(node, deep=True), file=file, line=line)
    if isinstance(node, yaml.MappingNode):
        args = loader.construct_mapping(node, deep=True)
        return make_tag(tag, args, file=file, line=line, key_lines=args.key_lines)
    return make_tag(tag, loader.construct_scalar(node), file=file, line=line)


class TemplateLoader(LineLoader):
    """``LineLoader`` that also understands the tunable tags (unknown ``!tags`` are kept as
    ``BadTag`` so their error can name the parameter)."""


for _tag in (*TAGS, "!hyperopt"):
    TemplateLoader.add_constructor(
        _tag, lambda loader, node, _t=_tag: _construct(loader, node, _t)
    )
TemplateLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: _construct(loader, node, "!" + suffix)
)


def load_template(source: Any, *, file: str | None = None) -> Any:
    """Parse a template from a path or YAML text (tags become ``Tag`` objects)."""
    return load_yaml(source, loader=TemplateLoader, file=file)


@dataclass(frozen=True)
class Site:
    """One tag of a template: its parameter name and the choice option that activates it."""

    name: str
    tag: Tag
    condition: tuple[str, int] | None


def iter_sites(
    node: Any, path: str = "", condition: tuple[str, int] | None = None
) -> Iterator[Site]:
    """Every tag in ``node`` in document order (a choice before its options' tags),
    validated; raises ``ConfigError`` with file, line and parameter for any problem."""
    if isinstance(node, BadTag):
        raise node.error(path or None)
    if isinstance(node, Tag):
        name = node.name or path
        if not name:
            raise node.error("a tag at the top level of a template needs name:", None)
        node.check(name)
        yield Site(name, node, condition)
        if isinstance(node, Choice):
            for i, option in enumerate(node.options):
                yield from iter_sites(option, option_path(name, i), (name, i))
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, (Tag, BadTag)):
                raise ConfigError(
                    "a tag cannot be a mapping key (put the tag in the value)",
                    file=getattr(node, "file", None) or key.file,
                    line=line_of(node, key) or key.line,
                    key=path or None,
                )
            yield from iter_sites(value, join_path(path, key), condition)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from iter_sites(item, join_path(path, i), condition)


def expand(node: Any, value_of: Callable[[str], Any], path: str = "") -> Any:
    """The concrete config: every tag replaced by ``value_of(name)``, a choice by its chosen
    option (expanded in turn); containers become plain ``dict``/``list``."""
    if isinstance(node, Tag):
        name = node.name or path
        if isinstance(node, Choice):
            index = node.index_of(value_of(name))
            return expand(node.options[index], value_of, option_path(name, index))
        return value_of(name)
    if isinstance(node, (LocDict, Mapping)):
        return {key: expand(value, value_of, join_path(path, key)) for key, value in node.items()}
    if isinstance(node, (LocList, list, tuple)):
        return [expand(item, value_of, join_path(path, i)) for i, item in enumerate(node)]
    return node
