"""Optimizer base class: learning-rate schedule, loss-scale removal, weight decay, clipping.

Subclasses implement ``update(be, param, grad, lr)`` in place on ``param.primary`` (the
master copy of the weights where the backend's storage keeps one); state arrays live in
``param.state`` (so they are saved with the model). After every step the state is rounded
to the optimizer state's format, the stepped array to the master weights' and the weights the
layers read to the weights' (``numerics.Storage``).
"""

from __future__ import annotations

from typing import Any

from neon.layers.layer import Param
from neon.optimizers.schedules import Schedule, build_schedule
from neon.registry import Registry, spec_of

__all__ = ["OPTIMIZERS", "Optimizer"]

OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")


class Optimizer:
    """Base class of optimizers; ``slots`` names the per-parameter state arrays."""

    registry_name = "optimizer"
    slots: tuple[str, ...] = ()

    def __init__(
        self,
        learning_rate: float = 0.01,
        schedule: str | dict | Schedule | None = None,
        weight_decay: float = 0.0,
        gradient_clip_value: float | None = None,
        gradient_clip_norm: float | None = None,
    ) -> None:
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.learning_rate = float(learning_rate)
        self.schedule = build_schedule(schedule)
        self.weight_decay = float(weight_decay)
        self.gradient_clip_value = gradient_clip_value
        self.gradient_clip_norm = gradient_clip_norm
        self.steps = 0
        self.epoch = 0
        self.lr = self.learning_rate

    def set_epoch(self, epoch: int) -> None:
        """Apply the schedule for 0-based ``epoch``."""
        self.epoch = int(epoch)
        self.lr = float(self.schedule(self.learning_rate, self.epoch))

    @property
    def clips(self) -> bool:
        """Whether gradients are clipped (by value or norm): the fused steps need them
        whole."""
        return self.gradient_clip_value is not None or self.gradient_clip_norm is not None

    @staticmethod
    def state(be: Any, p: Param, slot: str) -> Any:
        """``p``'s state array ``slot``, created as zeros on first use."""
        arr = p.state.get(slot)
        if arr is None:
            arr = p.state[slot] = be.zeros(p.value.shape)
        return arr

    def fold_updates(self, params: list[Param], be: Any) -> None:
        """Before a step's bprop (unscaled loss, gradients not inspected): ask the layers to
        compute this step's update into the optimizer state inside their gradient GEMMs
        and epilogues (``Param.fold``) where this optimizer can; ``optimize`` then finishes
        those with ``finish_fold``. None by default."""

    def finish_fold(self, be: Any, p: Param) -> None:
        """The rest of the step of a parameter whose layer honoured ``fold``."""
        raise NotImplementedError

    def optimize(self, params: list[Param], be: Any, grad_scale: float = 1.0) -> None:
        """One update of every parameter from its gradient (divided by ``grad_scale``)."""
        self.steps += 1
        xp = be.xp
        keeps_master = be.storage.keeps_master
        for p in params:
            with be.scope(p.layer):
                if keeps_master and p.master is None:  # a Param made outside Model
                    be.attach_master(p)
                folded, p.fold, p.folded = p.folded, None, False
                if folded:
                    self.finish_fold(be, p)
                    with be.storing(be.storage.stepped):
                        be.quantize(p.primary)
                    be.sync_weights(p)
                    continue
                if self.fused_step(be, p, grad_scale):
                    continue
                g = p.grad
                if grad_scale != 1.0:
                    g *= 1.0 / grad_scale
                if self.weight_decay and p.decay:
                    g += self.weight_decay * p.primary
                if self.gradient_clip_value is not None:
                    xp.clip(g, -self.gradient_clip_value, self.gradient_clip_value, out=g)
                if self.gradient_clip_norm is not None:
                    norm = float(xp.sqrt((g * g).sum()))
                    if norm > self.gradient_clip_norm:
                        g *= self.gradient_clip_norm / norm
                for slot in self.slots:
                    self.state(be, p, slot)
                self.update(be, p, g, self.lr)
                with be.storing(be.storage.stepped):
                    be.quantize(p.primary)
                with be.storing("optimizer_state"):
                    for slot in self.slots:
                        be.quantize(p.state[slot])
                be.sync_weights(p)

    def fused_step(self, be: Any, p: Param, grad_scale: float) -> bool:
        """Do the whole step of ``p`` in a backend primitive (``p.value`` included, where it
        is a master copy's rounding), if this optimizer has one and no clipping is asked
        for; True when done."""
        return False

    def update(self, be: Any, p: Param, g: Any, lr: float) -> None:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The spec that rebuilds this optimizer (``build_optimizer(opt.config())``), for
        checkpoints of models built in Python."""
        spec = spec_of(self, Optimizer)
        if spec.get("schedule", {}).get("type") == "constant":
            del spec["schedule"]
        return spec

    def state_dict(self) -> dict[str, Any]:
        """Scalars to resume from (per-parameter arrays are in ``Param.state``)."""
        return {"steps": self.steps, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self.set_epoch(int(state.get("epoch", 0)))

    def __repr__(self) -> str:
        return f"{self.registry_name}(lr={self.learning_rate})"
