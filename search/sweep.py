"""The sweep YAML: which template, which strategy and scheduler, which comparison cells.

Everything is validated up front so that a typo fails in a second with
``file:line: key: message`` (exit 2) instead of after an hour of trials.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neon.backends import BACKENDS, get_format
from neon.config import SECTIONS, to_plain
from neon.errors import ConfigError
from neon.registry import Registry, did_you_mean
from neon.yamlio import line_of
from search.space import SearchSpace
from search.template import load_template

__all__ = ["Cell", "Objective", "SearchOptions", "Sweep", "load_sweep"]

SWEEP_KEYS = ("name", "description", "model", "search", "compare", "executor", "tracking")
COMPARE_AXES = ("numerics", "backend")
_CHECK = Registry("sweep section")


@dataclass
class Objective:
    """What the strategy optimizes: a key of the per-epoch record at the last epoch."""

    metric: str = "val_misclassification"
    mode: Literal["min", "max"] = "min"

    def minimized(self, value: float | None) -> float | None:
        """The value as the strategies see it (they minimize)."""
        if value is None:
            return None
        return value if self.mode == "min" else -value

    def better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b


@dataclass
class SearchOptions:
    """The ``search:`` section."""

    strategy: str | dict = "random"
    objective: dict | str | None = None
    trials: int = 20
    parallel: int = 1
    seed: int = 0
    scheduler: str | dict = "fifo"
    timeout_per_trial: float | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {self.parallel}")
        if self.timeout_per_trial is not None and self.timeout_per_trial <= 0:
            raise ValueError(f"timeout_per_trial must be > 0, got {self.timeout_per_trial}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")


@dataclass(frozen=True)
class Cell:
    """One comparison cell: the overrides every point is trained under (e.g. fp16)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Sweep:
    """A parsed, validated sweep file."""

    name: str
    path: Path | None
    template: Any
    space: SearchSpace
    search: SearchOptions
    objective: Objective
    cells: list[Cell]
    objective_cell: str
    executor: dict[str, Any]
    tracking: dict[str, Any]
    raw: dict[str, Any]
    model_path: Path | None = None
    base_epochs: int = 10
    base_seed: int = 0

    @property
    def directory(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def fingerprint(self) -> str:
        """Hash of what defines the sweep's trials; a resume must match it."""
        blob = json.dumps({"space": [d.describe() + d.name for d in self.space],
                           "cells": [c.name for c in self.cells],
                           "objective": [self.objective.metric, self.objective.mode],
                           "strategy": to_plain(self.search.strategy),
                           "scheduler": to_plain(self.search.scheduler),
                           "seed": self.search.seed}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cell(self, name: str) -> Cell:
        return next(c for c in self.cells if c.name == name)


def _err(message: str, node: Any, key: str, child: Any = None) -> ConfigError:
    return ConfigError(message, file=getattr(node, "file", None),
                       line=line_of(node, child) if child is not None else line_of(node),
                       key=key)


def _options(cls: type, node: Any, where: str) -> Any:
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise _err(f"expected a mapping, got {type(node).__name__} {node!r}", node, where)
    return _CHECK.instantiate(cls, dict(node), spec=node, where=where)


def _load_model(raw: Any, sweep_path: Path | None) -> tuple[Any, Path | None]:
    model = raw.get("model")
    if model is None:
        raise _err("missing 'model:' (a model YAML path or an inline mapping)", raw, "model")
    if isinstance(model, str):
        base = sweep_path.parent if sweep_path else Path.cwd()
        path = (base / model).resolve()
        if not path.is_file():
            raise _err(f"model file not found: {path}", raw, "model", "model")
        return load_template(str(path)), path
    if isinstance(model, dict):
        return model, None
    raise _err(f"expected a path or a mapping, got {type(model).__name__}", raw, "model",
               "model")


def _cells(raw: Any, template: Any) -> tuple[list[Cell], str]:
    compare = raw.get("compare") or {}
    if not isinstance(compare, dict):
        raise _err("expected a mapping like {numerics: [fp32, fp16]}", raw, "compare", "compare")
    axes: list[tuple[str, list[Any]]] = []
    for key, values in compare.items():
        if key == "objective_cell":
            continue
        if key not in COMPARE_AXES:
            raise _err(f"unknown compare axis{did_you_mean(str(key), COMPARE_AXES)}; axes: "
                       + ", ".join(COMPARE_AXES) + ", objective_cell", compare,
                       f"compare.{key}", key)
        if not isinstance(values, list) or not values:
            raise _err("expected a non-empty list", compare, f"compare.{key}", key)
        for i, value in enumerate(values):
            try:
                if key == "numerics":
                    get_format(value)
                else:
                    BACKENDS.get(value)
            except ConfigError as exc:
                raise exc.located(file=getattr(compare, "file", None),
                                  line=line_of(values, i) or line_of(compare, key),
                                  key=f"compare.{key}") from None
        if len(set(map(str, values))) != len(values):
            raise _err("duplicate values", compare, f"compare.{key}", key)
        axes.append((key, list(values)))
    if not axes:
        backend = (template.get("backend") or {}) if isinstance(template, dict) else {}
        numerics = backend.get("numerics", "fp32") if isinstance(backend, dict) else "fp32"
        name = numerics if isinstance(numerics, str) else "base"
        return [Cell(name, {})], name
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        overrides = {key: value for (key, _), value in zip(axes, combo)}
        cells.append(Cell("-".join(str(v) for v in combo), overrides))
    names = [c.name for c in cells]
    objective_cell = compare.get("objective_cell", names[0])
    if objective_cell not in names:
        raise _err(f"objective_cell {objective_cell!r} is not a cell"
                   f"{did_you_mean(str(objective_cell), names)}; cells: {', '.join(names)}",
                   compare, "compare.objective_cell", "objective_cell")
    return cells, str(objective_cell)


def _objective(spec: Any, search: Any) -> Objective:
    if spec is None:
        return Objective()
    if isinstance(spec, str):
        return Objective(metric=spec)
    return _options(Objective, spec, "search.objective")


def _check_objective(objective: Objective, template: Any, search_node: Any) -> None:
    """The metric must be one the model reports: train_loss or val_<metric>."""
    metrics = template.get("metrics", ["misclassification"]) if isinstance(template, dict) \
        else ["misclassification"]
    if isinstance(metrics, (str, dict)):
        metrics = [metrics]
    names = ["train_loss", "seconds"]
    for m in metrics if isinstance(metrics, list) else []:
        if isinstance(m, str):
            names.append(f"val_{m}")
        elif isinstance(m, dict) and isinstance(m.get("type"), str):
            k = m.get("top_k", 1)
            base = m["type"]
            names.append(f"val_{base}" if k in (1, None) else f"val_top{k}_{base}")
    if objective.metric not in names:
        node = search_node.get("objective") if isinstance(search_node, dict) else None
        raise ConfigError(
            f"objective metric {objective.metric!r} is not reported by the model"
            f"{did_you_mean(objective.metric, names)}; available: {', '.join(names)}",
            file=getattr(search_node, "file", None),
            line=line_of(node, "metric") if isinstance(node, dict) else line_of(
                search_node, "objective"),
            key="search.objective.metric",
        )


def load_sweep(source: str | os.PathLike[str]) -> Sweep:
    """Parse and validate a sweep file (path or YAML text)."""
    raw = load_template(source)
    path = Path(raw.file) if getattr(raw, "file", None) else None
    if not isinstance(raw, dict):
        raise ConfigError("a sweep file must be a mapping", file=str(source)[:80])
    for key in raw:
        if key not in SWEEP_KEYS:
            hint = " (that is a model section: put it in the model file)" if key in SECTIONS \
                else ""
            raise _err(f"unknown key{did_you_mean(str(key), SWEEP_KEYS)}{hint}; keys: "
                       + ", ".join(SWEEP_KEYS), raw, str(key), key)
    template, model_path = _load_model(raw, path)
    if not isinstance(template, dict) or "model" not in template:
        where = model_path or path
        raise ConfigError("the model template has no 'model:' section", file=str(where))
    space = SearchSpace(template)
    search_node = raw.get("search") or {}
    search = _options(SearchOptions, search_node, "search")
    objective = _objective(search.objective, search_node)
    _check_objective(objective, template, search_node)
    _check_registry("strategy", search.strategy, search_node)
    _check_registry("scheduler", search.scheduler, search_node)
    cells, objective_cell = _cells(raw, template)
    executor = raw.get("executor") or {"type": "local"}
    if isinstance(executor, str):
        executor = {"type": executor}
    _check_registry("executor", executor, raw, key="executor")
    tracking = raw.get("tracking") or {}
    if not isinstance(tracking, dict):
        raise _err("expected a mapping {uri: ..., experiment: ...}", raw, "tracking", "tracking")
    unknown = set(tracking) - {"uri", "experiment", "enabled"}
    if unknown:
        key = sorted(unknown)[0]
        raise _err(f"unknown key{did_you_mean(key, ['uri', 'experiment', 'enabled'])}",
                   tracking, f"tracking.{key}", key)
    training = template.get("training") or {}
    name = raw.get("name") or (path.stem if path else "sweep")
    return Sweep(
        name=str(name), path=path, template=template, space=space, search=search,
        objective=objective, cells=cells, objective_cell=objective_cell,
        executor=to_plain(executor), tracking=to_plain(tracking), raw=to_plain(raw),
        model_path=model_path,
        base_epochs=int(training.get("epochs", 10)) if isinstance(training, dict) else 10,
        base_seed=int(training.get("seed", 0)) if isinstance(training, dict) else 0,
    )


def _check_registry(kind: str, spec: Any, node: Any, key: str | None = None) -> None:
    """Name lookups only; options are checked when the component is built."""
    from search.executors import EXECUTORS
    from search.schedulers import SCHEDULERS
    from search.strategies import STRATEGIES

    registry = {"strategy": STRATEGIES, "scheduler": SCHEDULERS, "executor": EXECUTORS}[kind]
    key = key or f"search.{kind}"
    name = spec.get("type") if isinstance(spec, dict) else spec
    child = spec if isinstance(spec, dict) else node
    child_key = "type" if isinstance(spec, dict) else key.rsplit(".", 1)[-1]
    if name not in registry:
        raise ConfigError(
            f"unknown {kind} {name!r}{did_you_mean(str(name), registry.names())}; known: "
            + ", ".join(registry.names()),
            file=getattr(node, "file", None), line=line_of(child, child_key), key=key)
