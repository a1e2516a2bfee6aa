"""Loss scaling for fp16 training: static, or dynamic as in mixed-precision practice.

The cost gradient is multiplied by ``scale`` before backpropagation so small gradients do
not flush to zero in fp16; the optimizer divides it out. The dynamic scaler halves the scale
and skips the step when a gradient overflowed, and doubles it after ``growth_interval``
clean steps (Micikevicius et al. 2018).
"""

from __future__ import annotations

from typing import Any

from neon.registry import Registry

__all__ = [
    "LOSS_SCALERS",
    "DynamicScaling",
    "LossScaler",
    "NoScaling",
    "StaticScaling",
    "build_loss_scaler",
]

LOSS_SCALERS: Registry[LossScaler] = Registry("loss scaling")


class LossScaler:
    registry_name = "none"
    scale = 1.0
    checks_overflow = False
    skipped_steps = 0

    def update(self, finite: bool) -> bool:
        """Record whether this step's gradients were finite; True if the step may proceed."""
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state.get("scale", self.scale))


@LOSS_SCALERS.register("none")
class NoScaling(LossScaler):
    pass


@LOSS_SCALERS.register("static")
class StaticScaling(LossScaler):
    registry_name = "static"

    def __init__(self, scale: float = 1024.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)


@LOSS_SCALERS.register("dynamic")
class DynamicScaling(LossScaler):
    registry_name = "dynamic"
    checks_overflow = True

    def __init__(
        self,
        init_scale: float = 2.0**15,
        growth_interval: int = 2000,
        factor: float = 2.0,
        min_scale: float = 1.0,
    ) -> None:
        if init_scale <= 0 or factor <= 1 or growth_interval < 1:
            raise ValueError("need init_scale > 0, factor > 1 and growth_interval >= 1")
        self.scale = float(init_scale)
        self.growth_interval = int(growth_interval)
        self.factor = float(factor)
        self.min_scale = float(min_scale)
        self.good_steps = 0
        self.skipped_steps = 0

    def update(self, finite: bool) -> bool:
        if not finite:
            self.scale = max(self.min_scale, self.scale / self.factor)
            self.good_steps = 0
            self.skipped_steps += 1
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= self.factor
            self.good_steps = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "good_steps": self.good_steps,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.good_steps = int(state.get("good_steps", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))


def build_loss_scaler(spec: Any, numerics: str) -> LossScaler:
    """``None``/``auto`` -> dynamic for fp16 and none otherwise; a number -> static."""
    if isinstance(spec, LossScaler):
        return spec
    if spec is None or spec == "auto":
        return DynamicScaling() if numerics == "fp16" else NoScaling()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return StaticScaling(float(spec))
    return LOSS_SCALERS.build(spec, where="backend.loss_scale")
