"""Training callbacks: hooks the search controller and the CLI use to watch and stop training.

``on_epoch_end(epoch, metrics)`` gets the 1-based epoch number and that epoch's record
(``train_loss``, ``val_<metric>``, ``seconds``, diagnostics); returning True (or raising
``StopTraining``) ends training after this epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Callback", "CallbackList", "LambdaCallback", "StopTraining"]


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


class CallbackList(Callback):
    """Dispatches each hook to several callbacks; any of them may stop training."""

    def __init__(self, callbacks: Iterable[Callback] | None = None) -> None:
        self.callbacks = list(callbacks or [])

    def on_train_begin(self, model: Any, epochs: int, initial_epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(model, epochs, initial_epoch)

    def on_epoch_begin(self, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        stop = False
        for cb in self.callbacks:
            try:
                stop = bool(cb.on_epoch_end(epoch, metrics)) or stop
            except StopTraining:
                stop = True
        return stop

    def on_train_end(self, history: Any) -> None:
        for cb in self.callbacks:
            cb.on_train_end(history)
