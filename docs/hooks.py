"""mkdocs hook: the component reference, generated from the registries and docstrings.

``docs/reference.md`` holds a ``<!-- registries -->`` marker; this hook replaces it with one
section per component family (every registered name, its aliases, the first line of its
docstring and its options with defaults), so the page cannot drift from the code.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

MARKER = "<!-- registries -->"
FAMILIES = [  # (title, module, registry attribute)
    ("Layers", "neon.layers", "LAYERS"),
    ("Model types", "neon.models", "MODEL_TYPES"),
    ("Optimizers", "neon.optimizers", "OPTIMIZERS"),
    ("Learning-rate schedules", "neon.optimizers.schedules", "SCHEDULES"),
    ("Loss scaling", "neon.optimizers.loss_scaling", "LOSS_SCALERS"),
    ("Initializers", "neon.initializers", "INITIALIZERS"),
    ("Activations", "neon.transforms", "ACTIVATIONS"),
    ("Costs", "neon.transforms", "COSTS"),
    ("Metrics", "neon.metrics", "METRICS"),
    ("Datasets", "neon.datasets", "DATASETS"),
    ("Backends", "neon.backends", "BACKENDS"),
    ("Search strategies", "search.strategies", "STRATEGIES"),
    ("Schedulers", "search.schedulers", "SCHEDULERS"),
    ("Executors", "search.executors", "EXECUTORS"),
]


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _options(obj: Any) -> str:
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return ""
    shown = []
    for p in params:
        if p.name.startswith("_") or p.name in ("self", "be") or p.kind in (
                p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        shown.append(f"`{p.name}`" if p.default is p.empty else f"`{p.name}={p.default!r}`")
    return ", ".join(shown)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def family_table(registry: Any) -> str:
    """One row per component: name (aliases), summary, options."""
    by_obj: dict[int, list[str]] = {}
    objs: dict[int, Any] = {}
    for name in registry.names():
        obj = registry.get(name)
        by_obj.setdefault(id(obj), []).append(name)
        objs[id(obj)] = obj
    rows = ["| name | what | options |", "|---|---|---|"]
    for key, names in sorted(by_obj.items(), key=lambda kv: kv[1][0]):
        obj = objs[key]
        primary = getattr(obj, "registry_name", names[0])
        aliases = [n for n in names if n != primary]
        label = f"`{primary}`" + (f" ({', '.join(aliases)})" if aliases else "")
        rows.append(f"| {label} | {_escape(_summary(obj))} | {_escape(_options(obj))} |")
    return "\n".join(rows)


def reference_markdown() -> str:
    parts = []
    for title, module, attr in FAMILIES:
        registry = getattr(importlib.import_module(module), attr)
        parts.append(f"## {title}\n\n{family_table(registry)}\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, reference_markdown())
    return markdown
