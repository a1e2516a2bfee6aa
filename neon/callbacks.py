"""Training callbacks: hooks the search controller and the CLI use to watch and stop training.

``on_epoch_end(epoch, metrics)`` gets the 1-based epoch number and that epoch's record
(``train_loss``, ``val_<metric>``, ``seconds``, diagnostics); returning True (or raising
``StopTraining``) ends training after this epoch. A callback is any object with some of the
hooks (``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end``, ``on_train_end``): those it
lacks are skipped, so subclassing ``Callback`` is optional.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["HOOKS", "Callback", "CallbackList", "LambdaCallback", "StopTraining"]


class StopTraining(Exception):
    """Raised by a callback to end training after the current epoch."""


class Callback:
    """Base class; every hook is optional."""

    def on_train_begin(self, model: Any, epochs: int, initial_epoch: int) -> None:
        pass

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool | None:
        return None

    def on_train_end(self, history: Any) -> None:
        pass


class LambdaCallback(Callback):
    """A callback from plain functions, for quick hooks in scripts and tests."""

    def __init__(self, on_epoch_end: Any = None, on_train_end: Any = None) -> None:
        self._epoch_end = on_epoch_end
        self._train_end = on_train_end

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool | None:
        return self._epoch_end(epoch, metrics) if self._epoch_end else None

    def on_train_end(self, history: Any) -> None:
        if self._train_end:
            self._train_end(history)


HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end")


class CallbackList(Callback):
    """Dispatches each hook to the callbacks that have it; any of them may stop training."""

    def __init__(self, callbacks: Iterable[Any] | None = None) -> None:
        self.callbacks = list(callbacks or [])
        self._hooks: dict[str, list[Any]] = {h: [] for h in HOOKS}
        for cb in self.callbacks:
            hooks = [h for h in HOOKS if callable(getattr(cb, h, None))]
            if not hooks:
                raise TypeError(f"callback {cb!r} has none of the hooks {', '.join(HOOKS)}")
            for h in hooks:
                self._hooks[h].append(getattr(cb, h))

    def on_train_begin(self, model: Any, epochs: int, initial_epoch: int) -> None:
        for hook in self._hooks["on_train_begin"]:
            hook(model, epochs, initial_epoch)

    def on_epoch_begin(self, epoch: int) -> None:
        for hook in self._hooks["on_epoch_begin"]:
            hook(epoch)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        stop = False
        for hook in self._hooks["on_epoch_end"]:
            try:
                stop = bool(hook(epoch, metrics)) or stop
            except StopTraining:
                stop = True
        return stop

    def on_train_end(self, history: Any) -> None:
        for hook in self._hooks["on_train_end"]:
            hook(history)
