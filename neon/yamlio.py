"""Safe YAML loading that remembers file and line of every mapping key and list item.

Configs are plain ``dict``/``list`` subclasses (``LocDict``/``LocList``), so code that builds
objects from them can name ``file:line`` in its errors. Only ``yaml.SafeLoader`` constructors
are used: nothing in a config file is imported or executed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from neon.errors import ConfigError

__all__ = ["LineLoader", "LocDict", "LocList", "line_of", "load_yaml", "read_source"]


class LocDict(dict):
    """A mapping that knows where it and each of its keys stand in the source file."""

    file: str | None = None
    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int | None:
        return self.key_lines.get(key, self.line)


class LocList(list):
    """A sequence that knows where it and each of its items stand in the source file."""

    file: str | None = None
    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int | None:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


def line_of(container: Any, key: Any = None) -> int | None:
    """Line of ``container[key]`` (or of the container itself) when it is known."""
    if key is not None and hasattr(container, "line_of"):
        return container.line_of(key)
    return getattr(container, "line", None)


class LineLoader(yaml.SafeLoader):
    """SafeLoader producing LocDict/LocList; rejects duplicate keys (a silent YAML trap)."""

    source_name: str | None = None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LocDict:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        result = LocDict()
        result.file = self.source_name
        result.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConfigError(
                    "a mapping key must be a plain scalar",
                    file=self.source_name,
                    line=key_node.start_mark.line + 1,
                ) from None
            if key in result:
                raise ConfigError(
                    "duplicate key (the first one would be silently overwritten)",
                    file=self.source_name,
                    line=key_node.start_mark.line + 1,
                    key=str(key),
                )
            result[key] = self.construct_object(value_node, deep=deep)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LocList:
        if not isinstance(node, yaml.SequenceNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a sequence, found {node.id}", node.start_mark
            )
        result = LocList(self.construct_object(child, deep=deep) for child in node.value)
        result.file = self.source_name
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


LineLoader.add_constructor(
    "tag:yaml.org,2002:map", lambda loader, node: loader.construct_mapping(node, deep=True)
)
LineLoader.add_constructor(
    "tag:yaml.org,2002:seq", lambda loader, node: loader.construct_sequence(node, deep=True)
)


# YAML 1.1 (PyYAML) reads 1e-4 and 1.0e6 as strings; YAML 1.2 and every user read them as floats.
LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_source(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Return ``(text, file name)`` for a path or for literal YAML text.

    A string with a newline or a ``{``/``:`` that is not an existing path is taken as text.
    """
    if isinstance(source, os.PathLike):
        path = Path(source)
    else:
        looks_like_text = "\n" in source or (":" in source and not Path(source).exists())
        if looks_like_text:
            return source, None
        path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML file", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None


def load_yaml(
    source: str | os.PathLike[str],
    loader: type[LineLoader] = LineLoader,
    *,
    file: str | None = None,
) -> Any:
    """Load one YAML document from a path or from text, with line-aware containers.

    Any YAML or constructor error becomes a one-line ``ConfigError`` naming file and line.
    """
    text, name = read_source(source)
    name = file or name
    bound = type("BoundLoader", (loader,), {"source_name": name})
    try:
        return yaml.load(text, Loader=bound)
    except ConfigError as exc:
        raise exc.located(file=name) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.problem.startswith("could not determine a constructor"):
            tag = exc.problem.split("'")[1] if "'" in exc.problem else "?"
            problem = f"unknown tag {tag}"
        raise ConfigError(problem, file=name, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=name) from None
