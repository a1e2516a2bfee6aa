"""Model YAML -> backend, dataset, model, optimizer through the registries.

Nothing in a config is imported or executed: components are looked up by name, their keys
checked against constructor signatures, and mistakes reported as ``file:line: key: message``
with a "did you mean". Ranges (``!uniform`` ...) belong to ``neon-search`` templates.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from neon.backends import Backend, gen_backend
from neon.datasets import Data, load_dataset
from neon.diagnostics import Diagnostics, build_diagnostics
from neon.errors import ConfigError
from neon.metrics import Metric, build_metrics
from neon.models import History, Model
from neon.optimizers import Optimizer, build_optimizer
from neon.registry import Registry, did_you_mean
from neon.yamlio import LocDict, LocList, line_of, load_yaml

__all__ = [
    "SECTIONS",
    "BackendOptions",
    "Experiment",
    "TrainingOptions",
    "apply_overrides",
    "build_experiment",
    "build_model",
    "load_config",
    "to_plain",
]

SECTIONS = ("name", "description", "backend", "dataset", "model", "optimizer", "training",
            "metrics", "diagnostics")
_CHECK = Registry("section")


@dataclass
class BackendOptions:
    """The ``backend:`` section. ``recipe`` and ``storage`` say which tensor class is stored
    in which format (``neon.backends.numerics.resolve_storage``)."""

    name: str = "cpu"
    numerics: str = "fp32"
    stochastic_rounding: bool = False
    recipe: str | None = None
    storage: dict | None = None
    loss_scale: float | str | dict | None = None
    device: int | None = None
    threads: int | None = None


@dataclass
class TrainingOptions:
    """The ``training:`` section."""

    epochs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


@dataclass
class ModelOptions:
    """The ``model:`` section."""

    layers: list
    cost: str | dict = "cross_entropy"
    type: str = "model"  # other types (autoencoder, rbm, dbn): neon.models.MODEL_TYPES


@dataclass
class Experiment:
    """Everything a model YAML describes, built and ready to ``run``."""

    config: dict[str, Any]
    be: Backend
    model: Model
    optimizer: Optimizer
    data: Data
    epochs: int
    seed: int
    metrics: list[Metric]
    diagnostics: Diagnostics
    loss_scale: Any = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def run(self, callbacks: Any = None, epochs: int | None = None) -> History:
        """Train (continuing from ``model.epoch``) and return the history."""
        return self.model.fit(
            self.data.train,
            self.optimizer,
            epochs or self.epochs,
            callbacks=callbacks,
            valid=self.data.valid,
            metrics=self.metrics,
            loss_scale=self.loss_scale,
            diagnostics=self.diagnostics,
        )


def load_config(source: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model YAML (path or text) into line-aware containers, checking its sections."""
    cfg = load_yaml(source)
    name = getattr(cfg, "file", None)
    if not isinstance(cfg, dict):
        raise ConfigError("a model file must be a mapping of sections "
                          f"({', '.join(SECTIONS)})", file=name or str(source)[:60])
    check_sections(cfg)
    return cfg


def check_sections(cfg: dict[str, Any]) -> None:
    file = getattr(cfg, "file", None)
    for key in cfg:
        if key not in SECTIONS:
            raise ConfigError(
                f"unknown section{did_you_mean(str(key), SECTIONS)}; sections: "
                + ", ".join(SECTIONS),
                file=file, line=line_of(cfg, key), key=str(key),
            )
    if "model" not in cfg:
        raise ConfigError("missing section 'model' (with 'layers:')", file=file, line=1)


def apply_overrides(cfg: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A copy of ``cfg`` with command-line overrides (None means: keep the file's value).

    Keys: backend, numerics, recipe, stochastic_rounding, epochs, seed, dataset (a name).
    """
    out = copy.deepcopy(cfg)
    mapping = {
        "backend": ("backend", "name"),
        "numerics": ("backend", "numerics"),
        "recipe": ("backend", "recipe"),
        "stochastic_rounding": ("backend", "stochastic_rounding"),
        "epochs": ("training", "epochs"),
        "seed": ("training", "seed"),
    }
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "dataset":
            section = out.get("dataset") or {}
            if isinstance(section, dict) and section.get("name") != value:
                # a different dataset keeps only options every loader shares
                # (synthetic data also keeps the example shape and class count it imitates)
                keep = {"batch_size", "shape", "nclass"} if value == "synthetic" else {"batch_size"}
                section = {k: v for k, v in section.items() if k in keep}
            out["dataset"] = {**section, "name": value}
            continue
        section_name, field_name = mapping[key]
        section = out.get(section_name)
        if not isinstance(section, dict):
            section = LocDict() if section is None else section
            out[section_name] = section
        section[field_name] = value
    return out


def _options(cls: type, spec: Any, where: str) -> Any:
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ConfigError(f"expected a mapping, got {type(spec).__name__} {spec!r}",
                          file=getattr(spec, "file", None), key=where)
    return _CHECK.instantiate(cls, dict(spec), spec=spec, where=where)


def build_backend(cfg: dict[str, Any], seed: int) -> tuple[Backend, BackendOptions]:
    spec = cfg.get("backend")
    opts = _options(BackendOptions, spec, "backend")
    extra = {k: v for k, v in (("device", opts.device), ("threads", opts.threads)) if v}
    try:
        be = gen_backend(opts.name, opts.numerics, opts.stochastic_rounding, seed,
                         recipe=opts.recipe, storage=opts.storage, **extra)
    except ConfigError as exc:
        exc.key = "backend.name" if exc.key in (None, "name") else f"backend.{exc.key}"
        raise exc.located(file=getattr(spec, "file", None),
                          line=_backend_line(spec, exc.key)) from None
    return be, opts


def _backend_line(spec: Any, key: str) -> int | None:
    """The line of ``key`` (``backend.storage.optimizer_state``) in the backend section."""
    if not spec:
        return None
    parts = key.split(".")[1:]
    if parts[0] == "storage" and len(parts) > 1 and isinstance(spec.get("storage"), dict):
        return line_of(spec["storage"], parts[1])
    return line_of(spec, parts[0])


def build_model(cfg: dict[str, Any], be: Backend | None = None) -> Model:
    """Only the ``model:`` section: layers and cost (for loading checkpoints)."""
    spec = cfg.get("model")
    if isinstance(spec, dict) and spec.get("type", "model") != "model":
        from neon.models import build_typed_model

        return build_typed_model(spec, be, name=str(cfg.get("name", spec["type"])),
                                 config=to_plain(cfg))
    opts = _options(ModelOptions, spec, "model")
    if not isinstance(opts.layers, list) or not opts.layers:
        raise ConfigError("model.layers must be a non-empty list of layers",
                          file=getattr(spec, "file", None), line=line_of(spec, "layers"),
                          key="model.layers")
    try:
        return Model(opts.layers, opts.cost, be=be, name=str(cfg.get("name", "model")),
                     config=to_plain(cfg))
    except ConfigError as exc:
        if exc.key == "cost" or (exc.key and exc.key.startswith("cost")):
            exc.located(line=line_of(spec, "cost"))
        raise exc.located(file=getattr(spec, "file", None)) from None


def build_experiment(cfg: dict[str, Any], data: Data | None = None) -> Experiment:
    """Build every part of a model config (already loaded and overridden)."""
    check_sections(cfg)
    training = _options(TrainingOptions, cfg.get("training"), "training")
    # every other section is checked before the backend: its first import may compile the
    # kernels (tens of seconds), which a mistake elsewhere should not cost
    model = build_model(cfg)
    opt_spec = cfg.get("optimizer") or {"type": "sgd"}
    optimizer = build_optimizer(opt_spec)
    metric_spec = cfg.get("metrics", ["misclassification"])
    metrics = build_metrics(metric_spec)
    diagnostics = build_diagnostics(cfg.get("diagnostics"))
    if data is None:
        data = load_dataset(cfg.get("dataset") or {"name": "digits"}, seed=training.seed)
    be, bopts = build_backend(cfg, training.seed)
    model.initialize(data.shape, be)
    return Experiment(
        config=to_plain(cfg), be=be, model=model, optimizer=optimizer, data=data,
        epochs=training.epochs, seed=training.seed, metrics=metrics, diagnostics=diagnostics,
        loss_scale=bopts.loss_scale, source=getattr(cfg, "file", None),
    )


def to_plain(obj: Any) -> Any:
    """Deep copy with plain dict/list (JSON- and YAML-safe), dropping line bookkeeping."""
    if isinstance(obj, (dict, LocDict)):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, LocList)):
        return [to_plain(v) for v in obj]
    return obj
