"""Name -> class registries, one per component family, and building objects from YAML specs.

A config names components by ``type:`` (or by a bare string); the registry finds the class,
checks the keys against its ``__init__`` signature and the values against its annotations,
and reports mistakes as one-line ``ConfigError``s with file, line, key and "did you mean".
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from neon.errors import ConfigError, UserError
from neon.yamlio import line_of

T = TypeVar("T")

__all__ = ["Registry", "check_value", "did_you_mean", "spec_of"]


def did_you_mean(name: str, options: list[str] | tuple[str, ...] | Any) -> str:
    """`` (did you mean 'x'?)`` when a close option exists, else ``''``."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _matches(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits an annotation (int accepted for float, not bool for int)."""
    if tp is Any or tp is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin is not None:
        tp = origin
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (list, tuple, typing.Sequence):
        return isinstance(value, (list, tuple))
    if tp in (dict, Mapping):
        return isinstance(value, Mapping)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def check_value(value: Any, tp: Any) -> str | None:
    """An error message if ``value`` does not fit annotation ``tp``, else None."""
    if _matches(value, tp):
        return None
    if typing.get_origin(tp) is typing.Literal:
        options = ", ".join(repr(a) for a in typing.get_args(tp))
        return f"must be one of {options}, got {value!r}{did_you_mean(value, typing.get_args(tp))}"
    names = " or ".join(
        _type_name(a) for a in (typing.get_args(tp) if typing.get_origin(tp) else (tp,))
    )
    return f"expected {names}, got {type(value).__name__} {value!r}"


class Registry(Generic[T]):
    """Components of one family (layers, optimizers, ...) by registry name.

    ``@REG.register("name", "alias")`` on a class; ``REG.build(spec)`` makes an instance from
    a YAML spec (a name, or a mapping with ``type:`` and constructor keywords).
    """

    def __init__(self, family: str, key: str = "type") -> None:
        self.family = family
        self.key = key
        self._items: dict[str, type[T] | Callable[..., T]] = {}

    def register(self, name: str, *aliases: str) -> Callable[[Any], Any]:
        def decorate(obj: Any) -> Any:
            for n in (name, *aliases):
                if n in self._items:
                    raise ValueError(f"{self.family} '{n}' registered twice")
                self._items[n] = obj
            if isinstance(obj, type) and "registry_name" not in vars(obj):
                obj.registry_name = name
            return obj

        return decorate

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(
        self, name: Any, *, file: str | None = None, line: int | None = None,
        key: str | None = None,
    ) -> Any:
        if not isinstance(name, str) or name not in self._items:
            known = ", ".join(self.names())
            raise ConfigError(
                f"unknown {self.family} {name!r}{did_you_mean(str(name), self.names())}; "
                f"known: {known}",
                file=file,
                line=line,
                key=key or self.key,
            )
        return self._items[name]

    def build(self, spec: Any, /, *, where: str | None = None, **context: Any) -> T:
        """Instantiate from ``spec``; ``context`` fills constructor arguments the YAML omits.

        ``where`` is the dotted path of ``spec`` in the config, used in error messages.
        """
        file = getattr(spec, "file", None)
        if isinstance(spec, str):
            cls, kwargs, line = self.get(spec, file=file, key=where), {}, None
        elif isinstance(spec, Mapping):
            line = line_of(spec, self.key)
            if self.key not in spec:
                raise ConfigError(
                    f"missing '{self.key}:' naming the {self.family}; known: "
                    + ", ".join(self.names()),
                    file=file,
                    line=line_of(spec),
                    key=where,
                )
            cls = self.get(spec[self.key], file=file, line=line,
                           key=f"{where}.{self.key}" if where else self.key)
            kwargs = {k: v for k, v in spec.items() if k != self.key}
        else:
            raise ConfigError(
                f"expected a {self.family} name or a mapping with '{self.key}:', "
                f"got {type(spec).__name__} {spec!r}",
                file=file,
                key=where,
            )
        return self.instantiate(cls, kwargs, spec=spec, where=where, context=context)

    def instantiate(
        self,
        cls: Any,
        kwargs: dict[str, Any],
        *,
        spec: Any = None,
        where: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> T:
        """Check ``kwargs`` against ``cls``'s signature and annotations, then call it."""
        file = getattr(spec, "file", None)
        named, hints, accepts_any = _signature(cls)
        label = f"{self.family} '{getattr(cls, 'registry_name', cls.__name__)}'"
        for key, value in kwargs.items():
            key_path = f"{where}.{key}" if where else str(key)
            line = line_of(spec, key)
            if key not in named and not accepts_any:
                public = [n for n in named if not n.startswith("_")]
                raise ConfigError(
                    f"unknown key for {label}{did_you_mean(str(key), public)}; "
                    f"valid keys: {', '.join(public)}",
                    file=file,
                    line=line,
                    key=key_path,
                )
            if key in hints:
                problem = check_value(value, hints[key])
                if problem:
                    raise ConfigError(problem, file=file, line=line, key=key_path)
        call = dict(kwargs)
        for name, value in (context or {}).items():
            if name in named and name not in call:
                call[name] = value
        missing = [
            n for n, p in named.items() if p.default is p.empty and n not in call
        ]
        if missing:
            raise ConfigError(
                f"{label} needs {', '.join(repr(m) for m in missing)}",
                file=file,
                line=line_of(spec),
                key=where,
            )
        try:
            return cls(**call)
        except UserError as exc:
            raise exc.located(file=file, line=line_of(spec), key=where) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{label}: {exc}", file=file, line=line_of(spec), key=where) from None


def spec_of(obj: Any, *bases: type, key: str = "type") -> dict[str, Any]:
    """A spec that rebuilds ``obj`` through its registry: ``{key: its registry name}`` and
    the arguments of its class's own ``__init__`` and of ``bases``', read back from its
    attributes of the same names (as the built-in components keep them); an attribute that
    is itself a registered component becomes its spec, an absent one is left out."""
    spec: dict[str, Any] = {key: obj.registry_name}
    for target in (type(obj), *bases):
        for name, param in inspect.signature(target.__init__).parameters.items():
            if (name == "self" or name in spec or not hasattr(obj, name)
                    or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)):
                continue
            value = getattr(obj, name)
            spec[name] = spec_of(value) if hasattr(value, "registry_name") else value
    return spec


def _signature(cls: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Keyword parameters a class accepts, following ``**kwargs`` up to its base classes."""
    targets = [c.__init__ for c in cls.__mro__ if "__init__" in vars(c)] if isinstance(
        cls, type) else [cls]
    named: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    for target in targets:
        params = inspect.signature(target).parameters
        for n, p in params.items():
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                named.setdefault(n, p)
        for n, h in _hints(target).items():
            hints.setdefault(n, h)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return named, hints, False
    return named, hints, True


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def import_submodules(package: str, path: Any) -> None:
    """Import every module of a package so that their ``@REG.register`` decorators run.

    Adding a component then touches one new file (plus its test), not a list elsewhere.
    """
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
