"""The sweep YAML: which template, which strategy and scheduler, which comparison cells.

Everything is validated up front so that a typo fails in a second with
``file:line: key: message`` (exit 2) instead of after an hour of trials.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neon.backends import BACKENDS, get_format
from neon.config import SECTIONS, BackendOptions, TrainingOptions, to_plain
from neon.datasets import DATASETS
from neon.errors import ConfigError
from neon.metrics import build_metrics
from neon.registry import Registry, check_value, did_you_mean
from neon.yamlio import line_of
from search.space import Dimension, SearchSpace
from search.template import BadTag, Choice, Site, Tag, join_path, load_template

__all__ = ["Cell", "Objective", "SearchOptions", "Sweep", "load_sweep"]

SWEEP_KEYS = ("name", "description", "model", "search", "compare", "executor", "tracking")
COMPARE_AXES = ("numerics", "backend")
_CHECK = Registry("sweep section")
_SECTION = Registry("section")  # the family neon's own config checks report under
METRIC_VARIANTS = 256  # combinations of a tuned ``metrics:`` checked against the objective


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
    base_epochs: int = 10  # the scheduler's default max_epochs (the largest, when tuned)
    base_seed: int = 0  # the template's seed (the first option's, when tuned)
    epochs_tuned: bool = False  # training.epochs differs between points (FIFO only)
    seed_tuned: bool = False  # training.seed differs between points

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

    def _training(self, point: Mapping[str, Any]) -> TrainingOptions:
        training = self.space.expand(point).get("training") or {}
        return TrainingOptions(**training)

    def epochs_of(self, point: Mapping[str, Any]) -> int | None:
        """The epochs ``point`` trains for when the template tunes ``training.epochs``;
        None when the scheduler decides (the usual case)."""
        return self._training(point).epochs if self.epochs_tuned else None

    def seed_of(self, point: Mapping[str, Any]) -> int:
        """The training seed of ``point``'s trials (its cells share it)."""
        return self._training(point).seed if self.seed_tuned else self.base_seed


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
    numerics = _check_backend(template, [key for key, _ in axes])
    if not axes:
        name = numerics[0] if len(set(numerics)) == 1 else "base"
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


# -- what the loader and the trials read from the template, tags included -------------------

@dataclass(frozen=True)
class _Found:
    """One value a template position can take, where it is written, and the tag behind it."""

    value: Any
    file: str | None
    line: int | None
    tag: Tag | None = None

    def error(self, message: str, key: str, *, bad_value: bool = True) -> ConfigError:
        """The error at this value's place; ``bad_value`` says which tag produced it."""
        if bad_value and isinstance(self.tag, Choice):
            message += f" (an option of {self.tag.yaml_tag})"
        elif bad_value and self.tag is not None:
            message += f" ({self.tag.yaml_tag} can draw it)"
        return ConfigError(message, file=self.file, line=self.line, key=key)


_ABSENT = object()


def _variants(node: Any, file: str | None, line: int | None) -> Iterator[_Found]:
    """The values ``node`` can take: a choice's options in turn (recursively), another tag
    its lowest and highest values, anything else itself."""
    if isinstance(node, Choice):
        for option in node.options:
            for found in _variants(option, node.file, node.line):
                yield found if found.tag is not None else _Found(found.value, node.file,
                                                                 node.line, node)
    elif isinstance(node, Tag):
        dim = Dimension.from_site(Site(node.name or "", node, None))
        for u in (0.0, 1.0):
            yield _Found(dim.from_unit(u), node.file, node.line, node)
    else:
        yield _Found(node, file, line)


def _at(parent: Mapping[str, Any], key: str, file: str | None, line: int | None
        ) -> list[_Found]:
    """The values of ``parent[key]`` (``_ABSENT`` when the key is missing)."""
    if key not in parent:
        return [_Found(_ABSENT, file, line)]
    return list(_variants(parent[key], getattr(parent, "file", None) or file,
                          line_of(parent, key) or line))


def _sections(template: Any, section: str, kinds: tuple[type, ...] = (Mapping,)
              ) -> list[_Found]:
    """The values of a top-level section; each must be a mapping (or one of ``kinds``)."""
    found = _at(template, section, getattr(template, "file", None), None)
    for f in found:
        if f.value is not _ABSENT and f.value is not None and not isinstance(f.value, kinds):
            raise f.error(f"expected a mapping, got {type(f.value).__name__} {f.value!r}",
                          section)
    return [f for f in found if f.value is not _ABSENT and f.value is not None]


def _options_values(cls: type, template: Any, section: str) -> dict[str, list[_Found]]:
    """Every value each field of a ``cls`` section can take (its default where a point leaves
    it out), each checked as neon checks it."""
    defaults = cls()
    values: dict[str, list[_Found]] = {f.name: [] for f in dataclasses.fields(cls)}
    file = getattr(template, "file", None)
    for sec in _sections(template, section) or [_Found({}, file, line_of(template))]:
        for key in sec.value:
            for found in _at(sec.value, key, sec.file, sec.line):
                try:
                    _SECTION.instantiate(cls, {key: found.value})
                except ConfigError as exc:
                    message = exc.message.removeprefix(f"section '{cls.__name__}': ")
                    raise found.error(message, f"{section}.{key}") from None
                values[key].append(found)
        for key, found in values.items():
            if key not in sec.value:
                found.append(_Found(getattr(defaults, key), sec.file, sec.line))
    return values


def _tuned(values: list[_Found]) -> bool:
    """Whether a key takes more than one value over the points of the template."""
    return len({json.dumps(f.value, sort_keys=True, default=str) for f in values}) > 1


def _first_tagged(values: list[_Found]) -> _Found:
    return next((f for f in values if f.tag is not None), values[0])


def _check_training(template: Any, scheduler: Any) -> tuple[int, int, bool, bool]:
    """``(base_epochs, base_seed, epochs_tuned, seed_tuned)`` of a valid ``training:``.

    A tuned ``training.epochs`` makes each point train to its own epochs, which only FIFO
    does: ASHA and Hyperband set the epochs themselves (their rungs up to max_epochs)."""
    values = _options_values(TrainingOptions, template, "training")
    epochs, seeds = values["epochs"], values["seed"]
    epochs_tuned = _tuned(epochs)
    if epochs_tuned:
        name = scheduler.get("type") if isinstance(scheduler, dict) else scheduler
        found = _first_tagged(epochs)
        if name != "fifo":
            raise found.error(f"the {name} scheduler sets the epochs of each point (its rungs):"
                              " set search.scheduler.max_epochs instead of tuning them",
                              "training.epochs", bad_value=False)
        if isinstance(scheduler, dict) and scheduler.get("max_epochs") is not None:
            raise found.error("search.scheduler.max_epochs sets every point's epochs: remove "
                              "it to tune training.epochs", "training.epochs", bad_value=False)
    return max(f.value for f in epochs), seeds[0].value, epochs_tuned, _tuned(seeds)


def _check_backend(template: Any, compare_axes: list[str]) -> list[Any]:
    """Every backend option a point can have is valid; returns the numerics values.

    ``compare:`` sets numerics and backend per cell, over the template's: tuning an axis
    that is also compared would be silently overruled; so would tuning ``threads``, which
    the executor sets."""
    values = _options_values(BackendOptions, template, "backend")
    for key, check in (("name", BACKENDS.get), ("numerics", get_format)):
        for found in values[key]:
            try:
                check(found.value)
            except ConfigError as exc:
                raise found.error(exc.message, f"backend.{key}") from None
    for key, axis in (("name", "backend"), ("numerics", "numerics")):
        if axis in compare_axes and _tuned(values[key]):
            raise _first_tagged(values[key]).error(
                f"compare: {axis} sets it for every trial: tune it or compare it, not both",
                f"backend.{key}", bad_value=False)
    if _tuned(values["threads"]):
        raise _first_tagged(values["threads"]).error(
            "the executor sets each trial's threads (from search.parallel): not tunable",
            "backend.threads", bad_value=False)
    return [f.value for f in values["numerics"]]


def _check_dataset(template: Any) -> None:
    """Dataset names are known and options have the loader's types, for every point."""
    for sec in _sections(template, "dataset", (Mapping, str)):
        spec = {"name": sec.value} if isinstance(sec.value, str) else sec.value
        if not spec:
            continue  # neon's default dataset
        if "name" not in spec:
            raise sec.error("missing 'name:' naming the dataset; known: "
                            + ", ".join(DATASETS.names()), "dataset")
        names = _at(spec, "name", sec.file, sec.line) if not isinstance(sec.value, str) \
            else [sec]
        for name in names:
            try:
                loader = DATASETS.get(name.value)
            except ConfigError as exc:
                raise name.error(exc.message, "dataset.name") from None
            try:
                hints = typing.get_type_hints(
                    loader.__init__ if isinstance(loader, type) else loader)
            except Exception:
                hints = {}
            for key in spec:
                if key == "name" or key not in hints:
                    continue
                for found in _at(spec, key, sec.file, sec.line):
                    problem = check_value(found.value, hints[key])
                    if problem:
                        raise found.error(problem, f"dataset.{key}")


def _has_tag(node: Any) -> bool:
    if isinstance(node, (Tag, BadTag)):
        return True
    if isinstance(node, Mapping):
        return any(_has_tag(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_has_tag(v) for v in node)
    return False


def _concrete(node: Any) -> Iterator[Any]:
    """Plain values ``node`` can take (choices by each option, other tags by their lowest and
    highest values, containers by the product of their items'); itself when it has no tag."""
    if not _has_tag(node):
        yield node
    elif isinstance(node, Tag):
        for found in _variants(node, None, None):
            yield from _concrete(found.value)
    elif isinstance(node, Mapping):
        keys = list(node)
        for combo in itertools.product(
                *(list(itertools.islice(_concrete(node[k]), METRIC_VARIANTS)) for k in keys)):
            yield dict(zip(keys, combo))
    else:
        yield from (list(combo) for combo in itertools.product(
            *(list(itertools.islice(_concrete(v), METRIC_VARIANTS)) for v in node)))


def _check_objective(objective: Objective, template: Any, search_node: Any) -> None:
    """The metric must be one the model reports (train_loss, seconds or val_<metric>) for
    every point: a tuned ``metrics:`` must report it whichever options are chosen."""
    file = getattr(template, "file", None)
    line = line_of(template, "metrics")
    spec = template.get("metrics", ["misclassification"])
    reported: list[list[str]] = []
    for variant in itertools.islice(_concrete(spec), METRIC_VARIANTS):
        try:
            metrics = build_metrics(variant)
        except ConfigError as exc:
            if _has_tag(spec):
                raise ConfigError(f"{exc.message} (an option of its tags)", file=file,
                                  line=line, key="metrics") from None
            raise exc.located(file=file, line=line, key="metrics") from None
        reported.append(["train_loss", "seconds", *(f"val_{m.name}" for m in metrics)])
    names = list(dict.fromkeys(n for r in reported for n in r))
    if all(objective.metric in r for r in reported):
        return
    node = search_node.get("objective") if isinstance(search_node, dict) else None
    where = dict(file=getattr(search_node, "file", None),
                 line=line_of(node, "metric") if isinstance(node, dict) else line_of(
                     search_node, "objective"),
                 key="search.objective.metric")
    if objective.metric in names:
        raise ConfigError(f"objective metric {objective.metric!r} is not reported by every "
                          "option of the template's metrics: every point must report it",
                          **where)
    raise ConfigError(
        f"objective metric {objective.metric!r} is not reported by the model"
        f"{did_you_mean(objective.metric, names)}; available: {', '.join(names)}", **where)


def _refuse_tags(node: Any, path: str = "") -> None:
    """Tags belong in the model template; the sweep's own settings are plain values."""
    if isinstance(node, (Tag, BadTag)):
        raise ConfigError("tunable tags (!uniform, !choice, ...) belong in the model "
                          "template, not in the sweep's settings", file=node.file,
                          line=node.line, key=path or None)
    items = node.items() if isinstance(node, Mapping) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(key, (Tag, BadTag)):
            _refuse_tags(key, path)
        _refuse_tags(value, join_path(path, key))


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
    _refuse_tags({k: v for k, v in raw.items() if k != "model"})
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
    base_epochs, base_seed, epochs_tuned, seed_tuned = _check_training(template,
                                                                       search.scheduler)
    _check_dataset(template)
    name = raw.get("name") or (path.stem if path else "sweep")
    return Sweep(
        name=str(name), path=path, template=template, space=space, search=search,
        objective=objective, cells=cells, objective_cell=objective_cell,
        executor=to_plain(executor), tracking=to_plain(tracking), raw=to_plain(raw),
        model_path=model_path, base_epochs=base_epochs, base_seed=base_seed,
        epochs_tuned=epochs_tuned, seed_tuned=seed_tuned,
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
