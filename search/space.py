"""SearchSpace: the typed dimensions of a template, and points in them.

A *point* is a ``dict`` from parameter name to a plain scalar (float, int, str, bool);
dimensions of choice options that are not selected (inactive) are absent.  Every strategy
sees the space through a fixed-length unit-cube encoding (``to_unit``/``from_unit``) in
which inactive dimensions sit at 0.5; sampling is ``from_unit`` of a uniform vector, so the
encoding and the sampling distributions cannot disagree.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from neon.errors import ConfigError
from neon.registry import did_you_mean
from search.template import (
    TAGS,
    BadTag,
    Choice,
    LogUniform,
    QUniform,
    RandInt,
    Scalar,
    Site,
    Tag,
    Uniform,
    expand,
    is_scalar,
    iter_sites,
    join_path,
    load_template,
    make_tag,
)

__all__ = ["INACTIVE", "Dimension", "Point", "Scalar", "SearchSpace", "point_key"]

Point = dict[str, Scalar]
Kind = Literal["float", "int", "categorical"]

INACTIVE = 0.5
"""Unit-cube coordinate of a dimension that the point's choices switch off."""


def point_key(point: Mapping[str, Any]) -> str:
    """A canonical string for a point (sorted JSON), for sets and dicts of points."""
    return json.dumps(dict(point), sort_keys=True)


def _qround(x: float) -> float:
    """Drop the float noise of ``k * q`` (0.65 rather than 0.6500000000000001)."""
    return float(f"{x:.12g}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


@dataclass(frozen=True)
class Dimension:
    """One tunable parameter.

    ``kind`` is ``float`` (``log`` for log-uniform; ``q`` for quantized), ``int`` (``q``
    when from ``!quniform`` with integer arguments) or ``categorical`` (``options``).
    ``condition`` is ``(parent choice name, option index)`` when the dimension only exists
    inside that option, else None.
    """

    name: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    q: float | int | None = None
    options: tuple[Any, ...] = ()
    condition: tuple[str, int] | None = None
    source: Tag | None = field(default=None, repr=False, compare=False)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_site(cls, site: Site) -> Dimension:
        """The dimension of one validated template tag."""
        tag, name, cond = site.tag, site.name, site.condition
        if isinstance(tag, Choice):
            return cls(name, "categorical", options=tuple(tag.options), condition=cond, source=tag)
        if isinstance(tag, RandInt):
            return cls(name, "int", tag.low, tag.high, condition=cond, source=tag)
        if isinstance(tag, QUniform):
            integral = all(
                float(v).is_integer() and not isinstance(v, float)
                for v in (tag.low, tag.high, tag.q)
            )
            kind: Kind = "int" if integral else "float"
            return cls(name, kind, tag.low, tag.high, q=tag.q, condition=cond, source=tag)
        if isinstance(tag, Uniform):
            log = isinstance(tag, LogUniform)
            return cls(
                name, "float", float(tag.low), float(tag.high), log=log, condition=cond,
                source=tag,
            )
        raise TypeError(f"not a tunable tag: {tag!r}")

    # -- facts ----------------------------------------------------------------------------
    @property
    def file(self) -> str | None:
        return getattr(self.source, "file", None)

    @property
    def line(self) -> int | None:
        return getattr(self.source, "line", None)

    @property
    def discrete(self) -> bool:
        """Whether the dimension has finitely many values (int, quantized or categorical)."""
        return self.kind != "float" or self.q is not None

    @property
    def by_value(self) -> bool:
        """Categorical only: points hold the option itself (True) or its index (False)."""
        return isinstance(self.source, Choice) and self.source.by_value

    @property
    def _steps(self) -> tuple[int, int, float | int]:
        """``(kmin, kmax, step)``: the discrete numeric values are ``k * step``."""
        step = self.q if self.q is not None else 1
        return math.ceil(self.low / step - 1e-9), math.floor(self.high / step + 1e-9), step

    @property
    def size(self) -> int | None:
        """Number of distinct values; None for a continuous float."""
        if self.kind == "categorical":
            return len(self.options)
        if not self.discrete:
            return None
        kmin, kmax, _ = self._steps
        return kmax - kmin + 1

    def value_at(self, k: int) -> Scalar:
        """The ``k``-th value (0-based) of a discrete dimension."""
        if self.kind == "categorical":
            assert isinstance(self.source, Choice)
            return self.source.value_of(k)
        kmin, _, step = self._steps
        if self.kind == "int":
            return int((kmin + k) * step)
        return _qround((kmin + k) * step)

    def index_of(self, value: Any) -> int:
        """Position of ``value`` among a discrete dimension's values; ``ValueError`` if none."""
        if self.kind == "categorical":
            assert isinstance(self.source, Choice)
            return self.source.index_of(value)
        if not _is_number(value):
            raise ValueError(f"expected a number, got {value!r}")
        kmin, kmax, step = self._steps
        k = round(float(value) / step)
        if abs(float(value) / step - k) > 1e-9 or not kmin <= k <= kmax:
            raise ValueError(f"{value!r} is not one of the values {self.describe()}")
        return k - kmin

    # -- the unit-cube encoding -----------------------------------------------------------
    def from_unit(self, u: float) -> Scalar:
        """The value at unit coordinate ``u`` in [0, 1] (discrete: equal-width bins)."""
        u = min(max(float(u), 0.0), 1.0)
        size = self.size
        if size is not None:
            return self.value_at(min(int(u * size), size - 1))
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return min(max(math.exp(lo + u * (hi - lo)), self.low), self.high)
        return min(max(self.low + u * (self.high - self.low), self.low), self.high)

    def to_unit(self, value: Any) -> float:
        """Unit coordinate of ``value`` (discrete: the centre of its bin)."""
        size = self.size
        if size is not None:
            return (self.index_of(value) + 0.5) / size
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (math.log(value) - lo) / (hi - lo)
        return (float(value) - self.low) / (self.high - self.low)

    def snap(self, value: Any) -> Scalar:
        """The valid value nearest to a raw number (clipped, rounded to the grid)."""
        if self.kind == "categorical":
            return self.value_at(self.index_of(value))
        if self.discrete:
            kmin, kmax, step = self._steps
            k = min(max(round(float(value) / step), kmin), kmax)
            return self.value_at(k - kmin)
        return min(max(float(value), self.low), self.high)

    def canonical(self, value: Any) -> Scalar:
        """A valid ``value`` as a plain Python scalar of this dimension's type."""
        if self.discrete:
            return self.value_at(self.index_of(value))
        return float(value)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value of this dimension."""
        if self.discrete:
            try:
                self.index_of(value)
            except ValueError:
                return False
            return True
        return _is_number(value) and self.low <= float(value) <= self.high

    def grid(self, points: int) -> list[Scalar]:
        """At most ``points`` values spread over the dimension (all options of a choice;
        log-spaced for log dimensions; distinct grid values for discrete ones)."""
        if self.kind == "categorical":
            return [self.value_at(i) for i in range(len(self.options))]
        if points == 1:
            raw = [math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2]
        elif self.log:
            raw = list(np.geomspace(self.low, self.high, points))
        else:
            raw = list(np.linspace(self.low, self.high, points))
        values: list[Scalar] = []
        for r in raw:
            v = self.snap(float(r))
            if v not in values:
                values.append(v)
        return values

    def describe(self) -> str:
        """The range or the options as text, for tables and messages."""
        if self.kind == "categorical":
            if self.by_value:
                return "{" + ", ".join(repr(o) for o in self.options) + "}"
            return f"option index 0..{len(self.options) - 1}"
        text = f"[{self.low!r}, {self.high!r}]"
        return f"{text} step {self.q!r}" if self.q is not None else text


class SearchSpace:
    """The dimensions of a template, in document order (a choice before its options').

    Build with ``SearchSpace.from_yaml(path_or_text)``, ``SearchSpace.from_dict({...})`` or
    ``SearchSpace(template)`` for an already parsed template.
    """

    def __init__(self, template: Any) -> None:
        self.template = template
        dims: list[Dimension] = []
        seen: dict[str, Dimension] = {}
        for site in iter_sites(template):
            if site.name in seen:
                first = seen[site.name]
                where = f"{first.file or ''}:{first.line}" if first.line else "elsewhere"
                raise site.tag.error(f"duplicate parameter name (first defined at {where})",
                                     site.name)
            dim = Dimension.from_site(site)
            seen[site.name] = dim
            dims.append(dim)
        self.dimensions: tuple[Dimension, ...] = tuple(dims)
        self._by_name = seen

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> SearchSpace:
        """From a template file path or YAML text."""
        return cls(load_template(source))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> SearchSpace:
        """From Python values; each tunable parameter is one of

        - a tag object: ``LogUniform(1e-4, 1e-1, name="lr")``;
        - a tuple ``(tag, *args)``: ``("loguniform", 1e-4, 1e-1)``, ``("quniform", 0, 1, 0.1)``,
          ``("randint", 1, 8)`` (8 included), ``("choice", ["relu", "tanh"])``, or
          ``(tag, {mapping})``;
        - a mapping whose ``type`` names a tag, with that tag's fields and nothing else:
          ``{"type": "uniform", "low": -5, "high": 10}``, ``{"type": "loguniform", "low": ...,
          "high": ..., "name": "lr"}``, ``{"type": "quniform", "low", "high", "q"}``,
          ``{"type": "randint", "low", "high"}``, ``{"type": "choice", "options": [...]}``
          (or ``"values"``/``"choices"``); a wrong or missing key raises ``ConfigError``.

        Other dicts and lists nest (dotted names), other values stay constants; a constant
        mapping whose ``type`` is a tag name (neon's ``{"type": "uniform", "low": -0.1,
        "high": 0.1}`` initializer) is written ``("const", {...})``.  A spec without any
        tunable parameter raises ``ConfigError``."""
        space = cls(_from_python(spec))
        if not len(space):
            raise ConfigError(f"no tunable parameter in {_short(spec)}: write each as a tag "
                              "object (Uniform(-5, 10)), a tuple ('uniform', -5, 10) or a "
                              "mapping {'type': 'uniform', 'low': -5, 'high': 10}"
                              + "".join(_near_misses(spec)))
        return space

    @classmethod
    def coerce(cls, space: Any) -> SearchSpace:
        """A SearchSpace, a ``from_dict`` mapping, or YAML text / a path."""
        if isinstance(space, SearchSpace):
            return space
        if isinstance(space, Mapping):
            return cls.from_dict(space)
        if isinstance(space, (str, os.PathLike)):
            return cls.from_yaml(space)
        raise TypeError(f"cannot make a SearchSpace from {type(space).__name__}")

    # -- container protocol ---------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def __len__(self) -> int:
        return len(self.dimensions)

    def __iter__(self) -> Iterator[Dimension]:
        return iter(self.dimensions)

    def __getitem__(self, name: str) -> Dimension:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(self.names)})"

    def children(self, name: str, index: int) -> list[Dimension]:
        """Dimensions directly inside option ``index`` of the choice ``name``."""
        return [d for d in self.dimensions if d.condition == (name, index)]

    @property
    def roots(self) -> list[Dimension]:
        """Dimensions outside every choice option (always active)."""
        return [d for d in self.dimensions if d.condition is None]

    # -- activity -------------------------------------------------------------------------
    def is_active(self, dim: Dimension | str, point: Mapping[str, Any]) -> bool:
        """Whether ``dim`` exists given the choices in ``point``."""
        dim = self[dim] if isinstance(dim, str) else dim
        while dim.condition is not None:
            parent_name, index = dim.condition
            if parent_name not in point:
                return False
            parent = self[parent_name]
            try:
                if parent.index_of(point[parent_name]) != index:
                    return False
            except ValueError:
                return False
            dim = parent
        return True

    def active(self, point: Mapping[str, Any]) -> Point:
        """``point`` without the entries its own choices switch off (or unknown names)."""
        return {k: v for k, v in point.items() if k in self and self.is_active(k, point)}

    # -- sampling and encoding ------------------------------------------------------------
    def from_unit(self, u: Any) -> Point:
        """The point at unit-cube coordinates ``u`` (one per dimension; inactive ignored)."""
        u = np.asarray(u, dtype=float).ravel()
        if u.shape != (len(self),):
            raise ValueError(f"expected {len(self)} unit coordinates, got shape {u.shape}")
        point: Point = {}
        for dim, x in zip(self.dimensions, u):
            if self.is_active(dim, point):
                point[dim.name] = dim.from_unit(x)
        return point

    def to_unit(self, point: Mapping[str, Any]) -> np.ndarray:
        """Unit-cube coordinates of ``point``; inactive dimensions at ``INACTIVE`` (0.5)."""
        return np.array(
            [
                d.to_unit(point[d.name]) if self.is_active(d, point) else INACTIVE
                for d in self.dimensions
            ],
            dtype=float,
        )

    def sample(self, rng: np.random.Generator) -> Point:
        """A random point: each active dimension drawn from its distribution."""
        return self.from_unit(rng.random(len(self)))

    # -- checking and expanding -----------------------------------------------------------
    def validate(self, point: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` unless ``point`` is a point of this space (all active
        dimensions present with valid values, no unknown or inactive names)."""
        if not isinstance(point, Mapping):
            raise ValueError(f"a point is a mapping of names to values, got {point!r}")
        for name in point:
            if name not in self:
                raise ValueError(f"unknown parameter {name!r}; known: {', '.join(self.names)}")
        for dim in self.dimensions:
            active = self.is_active(dim, point)
            if active and dim.name not in point:
                raise ValueError(f"{dim.name}: missing (active in this point)")
            if not active and dim.name in point:
                raise ValueError(f"{dim.name}: present but inactive ({dim.condition[0]} "
                                 f"does not select option {dim.condition[1]})")
            if active and not dim.contains(point[dim.name]):
                raise ValueError(f"{dim.name}: {point[dim.name]!r} is outside {dim.describe()}")

    def canonical(self, point: Mapping[str, Any]) -> Point:
        """``point`` validated, in dimension order, with plain Python values (``int`` for
        integer dimensions, so that equal points have equal ``point_key``)."""
        self.validate(point)
        return {d.name: d.canonical(point[d.name]) for d in self.dimensions if d.name in point}

    def expand(self, point: Mapping[str, Any]) -> Any:
        """The concrete config for ``point`` (plain dicts/lists, no tags left)."""
        self.validate(point)
        return expand(self.template, point.__getitem__)

    def table(self) -> str:
        """A printable table of the dimensions (``--dry-run``)."""
        header = ("name", "kind", "range / options", "scale", "active when", "defined at")
        rows = [header]
        for d in self.dimensions:
            scale = "log" if d.log else (f"q={d.q!r}" if d.q is not None else "")
            if d.kind == "int" and d.q is None:
                scale = "inclusive"
            cond = "-"
            if d.condition is not None:
                parent = self[d.condition[0]]
                cond = f"{parent.name} = {parent.value_at(d.condition[1])!r}"
            where = f"{d.file or '<dict>'}:{d.line}" if d.line else (d.file or "-")
            rows.append((d.name, d.kind, d.describe(), scale or "linear", cond, where))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


TAG_TYPES = tuple(t.lstrip("!") for t in TAGS)
"""The ``type`` values that make a ``from_dict`` mapping a tag."""


def _tag_type(value: Mapping[str, Any]) -> str | None:
    kind = value.get("type")
    return kind if isinstance(kind, str) and kind.lstrip("!") in TAG_TYPES else None


def _from_python(value: Any, path: str = "") -> Any:
    """Turn ``from_dict``'s tuple and mapping forms into tag objects, recursively."""
    if isinstance(value, Choice):
        options = [_from_python(o) for o in value.options]
        return Choice(options, name=value.name, file=value.file, line=value.line)
    if isinstance(value, (Tag, BadTag)):
        return value
    if isinstance(value, tuple):
        if not value or not isinstance(value[0], str):
            return BadTag(f"a tuple must start with a tag name such as 'uniform', got {value!r}")
        tag, args = value[0], list(value[1:])
        if tag == "const":
            return args[0] if len(args) == 1 else BadTag(
                f"('const', value) takes one value, got {len(args)}")
        if len(args) == 1 and (isinstance(args[0], Mapping) or tag.lstrip("!") == "choice"):
            args = args[0]
        return _from_python(make_tag(tag, args))
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, (str, int)):
                raise ConfigError(f"keys must be strings, got {key!r}", key=path or None)
        kind = _tag_type(value)
        if kind is not None:
            tag = make_tag(kind, {k: v for k, v in value.items() if k != "type"})
            if isinstance(tag, BadTag):
                tag.message += (f"; for a constant mapping of type {kind!r}, write "
                                "('const', {...})")
            return _from_python(tag)
        return {k: _from_python(v, join_path(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_python(v) for v in value]
    if value is None or is_scalar(value):
        return value
    raise ConfigError(f"unsupported value {value!r}", key=path or None)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _near_misses(value: Any, path: str = "") -> Iterator[str]:
    """``; 'x': type 'uniforn' is no tag (did you mean 'uniform'?)`` for mappings whose
    ``type`` is close to a tag's (read as constants)."""
    if isinstance(value, Mapping):
        kind = value.get("type")
        if isinstance(kind, str) and _tag_type(value) is None:
            hint = did_you_mean(kind.lstrip("!"), TAG_TYPES)
            if hint:
                yield f"; {path or 'the spec'}: type {kind!r} is no tag{hint}"
        for key, item in value.items():
            yield from _near_misses(item, join_path(path, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _near_misses(item, join_path(path, i))
