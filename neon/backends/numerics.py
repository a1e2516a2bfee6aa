"""Numeric representations: storage formats, rounding, and which tensors use which format.

fp16 and bf16 mean *storage* in that format with fp32 arithmetic: each stored result is
rounded (nearest-even or stochastically) to the format. fp64 exists for gradient checks.
The functions here are the numpy reference implementations; backends may use fused kernels
that must agree with them bit for bit.

``Storage`` says which format each tensor class is stored in (``TENSOR_CLASSES``): a recipe
(``RECIPES``: ``mixed``, the default for 16-bit numerics, keeps the optimizer state and a
master copy of the weights in fp32; ``pure`` stores everything in the 16-bit format) with
per-class overrides on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

from neon.errors import ConfigError
from neon.registry import did_you_mean

__all__ = ["FORMATS", "RECIPES", "TENSOR_CLASSES", "Format", "Storage", "get_format",
           "resolve_storage", "round_nearest", "round_stochastic"]


@dataclass(frozen=True)
class Format:
    """A storage format and the arithmetic precision used with it."""

    name: str
    storage: np.dtype  # dtype values are rounded to (and saved in)
    compute: np.dtype  # dtype arithmetic runs in
    max: float  # largest finite value
    tiny: float  # smallest positive normal value
    mantissa_bits: int  # explicit fraction bits
    # storage narrower than compute, so results must be rounded (a field: every quantize
    # asks, and comparing the dtypes took 0.3 us)
    emulated: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "emulated", bool(self.storage != self.compute))

    @property
    def itemsize(self) -> int:
        return self.storage.itemsize


def _format(name: str, storage: type, compute: type) -> Format:
    info = ml_dtypes.finfo(storage) if storage is ml_dtypes.bfloat16 else np.finfo(storage)
    return Format(
        name=name,
        storage=np.dtype(storage),
        compute=np.dtype(compute),
        max=float(info.max),
        tiny=float(info.tiny),
        mantissa_bits=int(info.nmant),
    )


FORMATS: dict[str, Format] = {
    "fp64": _format("fp64", np.float64, np.float64),
    "fp32": _format("fp32", np.float32, np.float32),
    "fp16": _format("fp16", np.float16, np.float32),
    "bf16": _format("bf16", ml_dtypes.bfloat16, np.float32),
}
# Codes of the storage rounding in the fused kernels (CPU and GPU): 0 keeps the value.
STORE_MODES = {("fp16", False): 1, ("bf16", False): 2, ("fp16", True): 3, ("bf16", True): 4}
_ALIASES = {"float64": "fp64", "float32": "fp32", "float16": "fp16", "half": "fp16",
            "bfloat16": "bf16", "single": "fp32", "double": "fp64"}


def get_format(name: str | Format) -> Format:
    """The Format for ``fp64|fp32|fp16|bf16`` (numpy dtype names accepted too)."""
    if isinstance(name, Format):
        return name
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in FORMATS:
        raise ConfigError(
            f"unknown numerics {name!r}{did_you_mean(str(name), list(FORMATS))}; "
            f"known: {', '.join(FORMATS)}",
            key="numerics",
        )
    return FORMATS[key]


# What a training step stores, by class: ``weights`` are what the layers read (fprop/bprop
# GEMM operands); ``master_weights`` what the optimizer steps (a separate copy only when its
# format differs from ``weights``'); ``activations`` layer inputs and outputs; ``gradients``
# deltas and parameter gradients; ``optimizer_state`` velocities, moments, mean squares.
TENSOR_CLASSES = ("weights", "master_weights", "activations", "gradients", "optimizer_state")
# Per-class formats of each recipe: a format name, or None for the numerics' own format.
RECIPES: dict[str, dict[str, str | None]] = {
    "mixed": {"weights": None, "master_weights": "fp32", "activations": None,
              "gradients": None, "optimizer_state": "fp32"},
    "pure": dict.fromkeys(TENSOR_CLASSES),
}


@dataclass(frozen=True)
class Storage:
    """The format of each tensor class; ``numerics`` is the run's nominal format."""

    numerics: Format
    recipe: str
    formats: dict[str, Format]

    def of(self, tensor_class: str) -> Format:
        return self.formats[tensor_class]

    @property
    def uniform(self) -> bool:
        """Every class in one format (nothing to switch between)."""
        return len({f.name for f in self.formats.values()}) == 1

    @property
    def emulated(self) -> bool:
        """Some class is narrower than the arithmetic (rounding happens somewhere)."""
        return any(f.emulated for f in self.formats.values())

    @property
    def keeps_master(self) -> bool:
        """The optimizer steps a master copy of the weights in another format."""
        return self.formats["master_weights"] is not self.formats["weights"]

    @property
    def stepped(self) -> str:
        """The class of what the optimizer steps: ``master_weights`` where there is a master
        copy, else ``weights`` (the same format; the flow counter names the right one)."""
        return "master_weights" if self.keeps_master else "weights"

    def names(self) -> dict[str, str]:
        """``{tensor class: format name}`` (for results and configs)."""
        return {k: f.name for k, f in self.formats.items()}

    def summary(self) -> str:
        """The recipe and the classes stored in other formats than the numerics, e.g.
        ``mixed (master_weights, optimizer_state: fp32)``."""
        others: dict[str, list[str]] = {}
        for cls, fmt in self.formats.items():
            if fmt is not self.numerics:
                others.setdefault(fmt.name, []).append(cls)
        detail = "; ".join(f"{', '.join(classes)}: {name}" for name, classes in others.items())
        return f"{self.recipe} ({detail})" if detail else self.recipe


def resolve_storage(numerics: str | Format = "fp32", recipe: str | None = None,
                    storage: dict[str, str] | None = None) -> Storage:
    """Per-class formats for ``numerics``: ``recipe`` (default ``mixed`` for 16-bit numerics,
    ``pure`` otherwise), then the ``storage`` overrides (``{class: format}``)."""
    fmt = get_format(numerics)
    name = recipe if recipe is not None else ("mixed" if fmt.emulated else "pure")
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}{did_you_mean(str(name), list(RECIPES))}; "
                          f"known: {', '.join(RECIPES)}", key="recipe")
    chosen = {cls: get_format(f) if f else fmt for cls, f in RECIPES[name].items()}
    if not fmt.emulated:  # nothing narrower to keep wide: every class in the numerics
        chosen = dict.fromkeys(TENSOR_CLASSES, fmt)
    if storage is not None and not isinstance(storage, dict):
        raise ConfigError(f"expected a mapping of tensor classes to formats, got {storage!r}",
                          key="storage")
    for cls, value in (storage or {}).items():
        if cls not in TENSOR_CLASSES:
            raise ConfigError(f"unknown tensor class{did_you_mean(str(cls), TENSOR_CLASSES)}; "
                              f"classes: {', '.join(TENSOR_CLASSES)}", key=f"storage.{cls}")
        try:
            chosen[cls] = get_format(value)
        except ConfigError as exc:
            raise ConfigError(exc.message, key=f"storage.{cls}") from None
    computes = {f.compute for f in chosen.values()}
    if len(computes) > 1:
        raise ConfigError("fp64 cannot be mixed with other formats (their arithmetic is "
                          "fp32): " + ", ".join(f"{k}={f.name}" for k, f in chosen.items()),
                          key="storage")
    master, weights = chosen["master_weights"], chosen["weights"]
    if master.name == weights.name:
        master = weights
    elif master.emulated:
        raise ConfigError(f"master_weights {master.name} must be the weights' format "
                          f"({weights.name}) or fp32: a master copy is the wider one",
                          key="storage.master_weights")
    chosen["master_weights"] = master
    return Storage(numerics=fmt, recipe=name, formats=chosen)


def round_nearest(x: np.ndarray, fmt: Format) -> np.ndarray:
    """Reference: ``x`` rounded to nearest-even in ``fmt``, returned in ``fmt.compute``."""
    if not fmt.emulated:
        return np.asarray(x, dtype=fmt.compute)
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(fmt.storage).astype(fmt.compute)


def round_stochastic(x: np.ndarray, fmt: Format, rng: np.random.Generator) -> np.ndarray:
    """Reference: unbiased stochastic rounding of fp32 ``x`` to ``fmt`` (E[result] = x).

    Rounds down to the next representable value toward zero or up away from it, with the
    probability of the up step equal to the distance covered, as in Gupta et al. (2015).
    """
    x = np.asarray(x, dtype=np.float32)
    if not fmt.emulated:
        return x.copy()
    down = _truncate(x, fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        up = np.nextafter(down.astype(fmt.storage), np.copysign(np.inf, x).astype(fmt.storage))
        up = up.astype(np.float32)
        gap = up - down
        frac = np.where(gap != 0, (x - down) / np.where(gap != 0, gap, 1), 0.0)
    take_up = rng.random(x.shape, dtype=np.float32) < frac
    out = np.where(take_up & (down != x), up, down)
    return np.where(np.isfinite(x), out, x).astype(np.float32)


def _truncate(x: np.ndarray, fmt: Format) -> np.ndarray:
    """Round toward zero to ``fmt``: the lower candidate of stochastic rounding."""
    with np.errstate(over="ignore"):
        near = x.astype(fmt.storage).astype(np.float32)
    toward = np.nextafter(near.astype(fmt.storage), np.zeros((), fmt.storage)).astype(np.float32)
    overshoot = np.abs(near) > np.abs(x)
    return np.where(overshoot, toward, near)
