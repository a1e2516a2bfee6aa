"""RBMs trained by contrastive divergence, and DBNs: greedy RBM pretraining, then an MLP.

Neither is trained by backpropagation alone, but both keep ``Model.fit``'s contract (per-epoch
records, callbacks with ``on_epoch_end(epoch, metrics)`` that may stop training, a
``History``), so ``neon FILE.yaml``, ``Experiment.run`` and the search controller drive them
like any model:

``model: {type: rbm, nhidden: 100, k: 1, persistent: false}`` trains one binary RBM with the
configured optimizer (its update is the CD gradient); records hold ``train_loss`` (the
training batches' mean reconstruction error) and ``val_<metric>`` for
``reconstruction_error``, ``pseudo_likelihood`` or ``mse``.

``model: {type: dbn, hidden: [256, 128], nout: 10, pretrain: {epochs: 5, ...}}`` is an MLP
of logistic layers plus a softmax output; the first ``fit`` pretrains one RBM per hidden
layer on the training inputs (each on the previous one's hidden probabilities), copies
their weights and hidden biases into the MLP, then fine-tunes the whole MLP by
backpropagation for the requested epochs. Pretraining statistics are kept in
``model.pretrain_history`` and the first fine-tuning record (``pretrain_seconds``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from neon.callbacks import Callback
from neon.errors import ConfigError, TrainingDiverged
from neon.initializers import Initializer
from neon.layers.affine import Affine
from neon.layers.rbm import RBMLayer
from neon.metrics import Metric, build_metrics
from neon.models.model import History, Model
from neon.optimizers import Optimizer, build_optimizer

__all__ = ["DBN", "RBM", "train_rbm"]

_RECONSTRUCTION_METRICS = ("reconstruction_error", "pseudo_likelihood", "mse")


def _check_metrics(metrics: Sequence[Metric]) -> None:
    for m in metrics:
        if not hasattr(m, "rbm_batch") and m.name not in _RECONSTRUCTION_METRICS:
            raise ConfigError(f"metric {m.name!r} does not apply to an rbm; use "
                              + ", ".join(_RECONSTRUCTION_METRICS), key="metrics")


def rbm_eval(layer: RBMLayer, batches: Iterable[Any], metrics: Sequence[Metric]
             ) -> dict[str, float]:
    """Metric values of an RBM over host batches of visible data."""
    be = layer.be
    sums = {m.name: [0.0, 0] for m in metrics}
    for vb in batches:
        v = be.array(np.asarray(vb).reshape(len(vb), -1))
        for m in metrics:
            if hasattr(m, "rbm_batch"):
                s, n = m.rbm_batch(be, layer, v)
            else:
                s, n = m.batch(be, layer.reconstruct(v), v)
            sums[m.name][0] += s
            sums[m.name][1] += n
    return {m.name: m.value(*sums[m.name]) for m in metrics}


def train_rbm(layer: RBMLayer, batches: Iterable[Any], optimizer: Optimizer, k: int,
              persistent: bool) -> float:
    """One epoch of CD-k/PCD updates over batches (host or device arrays, copied to the
    device); mean reconstruction error."""
    be = layer.be
    total, rows = 0.0, 0
    for vb in batches:
        v = be.array(vb).reshape(len(vb), -1)
        layer.cd_gradients(v, k=k, persistent=persistent)
        optimizer.optimize(layer.params, be)
        d = layer.reconstruct(v) - v
        total += float((d * d).sum())
        rows += len(vb)
    return total / max(1, rows)


class RBM(Model):
    """One binary RBM (``model.layers[0]`` is its ``RBMLayer``); ``predict`` gives hidden
    probabilities. ``fit`` trains by CD-k (``persistent``: PCD)."""

    def __init__(
        self,
        nhidden: int,
        k: int = 1,
        persistent: bool = False,
        init: str | dict | float | Initializer | None = None,
        be: Any = None,
        name: str = "rbm",
        config: dict[str, Any] | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        super().__init__([RBMLayer(nhidden, init=init, name="rbm")], "sum_squared", be=be,
                         name=name, config=config)
        self.k = int(k)
        self.persistent = bool(persistent)

    @property
    def rbm(self) -> RBMLayer:
        return self.layers[0]  # type: ignore[return-value]

    def fit(
        self,
        train: Any,
        optimizer: Optimizer,
        epochs: int,
        callbacks: Iterable[Callback] | None = None,
        valid: Any = None,
        metrics: Sequence[str | dict | Metric] | None = ("reconstruction_error",),
        loss_scale: Any = None,
        diagnostics: Any = None,
        initial_epoch: int | None = None,
    ) -> History:
        """CD training until ``epochs`` epochs in total; same records and callbacks as
        ``Model.fit`` (``loss_scale`` and ``diagnostics`` do not apply and are ignored)."""
        self.initialize(train.shape)
        be = self.be
        metric_objs = build_metrics(metrics)
        _check_metrics(metric_objs)
        self.optimizer = optimizer

        def run_epoch(epoch: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            optimizer.set_epoch(epoch)
            train.set_epoch(epoch)
            be.set_epoch(epoch)
            loss = train_rbm(self.rbm, (xb for xb, _ in train), optimizer, self.k,
                             self.persistent)
            if not np.isfinite(loss):
                raise TrainingDiverged(epoch + 1, None, loss)
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss,
                                      "lr": optimizer.lr}
            if valid is not None and metric_objs:
                for name, value in rbm_eval(self.rbm, (xb for xb, _ in valid),
                                            metric_objs).items():
                    record[f"val_{name}"] = value
            record["seconds"] = time.perf_counter() - t0
            return record

        return self._run_epochs(epochs, callbacks, initial_epoch, run_epoch)

    def eval(self, data: Any, metrics: Any = ("reconstruction_error",)) -> dict[str, float]:
        self.initialize(data.shape)
        metric_objs = build_metrics(metrics)
        _check_metrics(metric_objs)
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            return rbm_eval(self.rbm, (xb for xb, _ in data), metric_objs)


class DBN(Model):
    """Deep belief network: logistic MLP ``hidden`` -> softmax ``nout``, its hidden layers
    initialised by greedy layer-wise RBM pretraining on the first ``fit``.

    ``pretrain``: ``epochs`` (per RBM, default 5; 0 skips pretraining), ``k`` (1),
    ``persistent`` (false), ``optimizer`` (default ``{type: momentum, learning_rate: 0.05,
    momentum: 0.5}``).
    """

    def __init__(
        self,
        hidden: list[int],
        nout: int = 10,
        pretrain: dict[str, Any] | None = None,
        init: str | dict | float | Initializer | None = None,
        cost: str | dict = "cross_entropy",
        be: Any = None,
        name: str = "dbn",
        config: dict[str, Any] | None = None,
    ) -> None:
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of sizes, got {hidden}")
        opts = dict(pretrain or {})
        unknown = set(opts) - {"epochs", "k", "persistent", "optimizer"}
        if unknown:
            raise ValueError(f"unknown pretrain keys {sorted(unknown)}; valid: epochs, k, "
                             "persistent, optimizer")
        self.pretrain_epochs = int(opts.get("epochs", 5))
        self.pretrain_k = int(opts.get("k", 1))
        self.pretrain_persistent = bool(opts.get("persistent", False))
        self.pretrain_optimizer = opts.get("optimizer") or {
            "type": "momentum", "learning_rate": 0.05, "momentum": 0.5}
        if self.pretrain_epochs < 0 or self.pretrain_k < 1:
            raise ValueError("pretrain epochs must be >= 0 and k >= 1")
        build_optimizer(self.pretrain_optimizer)  # validate now, not after loading data
        self.rbm_init = init
        layers: list[Any] = [
            Affine(int(h), init=init if init is not None else {"type": "gaussian",
                                                               "scale": 0.01},
                   activation="logistic", name=f"hidden_{i}")
            for i, h in enumerate(hidden)]
        layers.append(Affine(int(nout), init="glorot", activation="softmax", name="output"))
        super().__init__(layers, cost, be=be, name=name, config=config)
        self.hidden = [int(h) for h in hidden]
        self.pretrained = False
        self.pretrain_history: list[dict[str, Any]] = []

    def pretrain(self, train: Any) -> list[dict[str, Any]]:
        """Greedy layer-wise CD pretraining of every hidden layer on ``train``'s inputs."""
        self.initialize(train.shape)
        be = self.be
        records = []
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for i, size in enumerate(self.hidden):
                below = self.layers[:i]
                rbm = RBMLayer(size, init=self.rbm_init, name=f"rbm_{i}")
                rbm.configure(self.layers[i].in_shape)
                rbm.allocate(be)
                opt = build_optimizer(self.pretrain_optimizer)

                def inputs(layers: list[Any] = below) -> Iterable[Any]:
                    for xb, _ in train:
                        x = be.array(xb)
                        for layer in layers:
                            x = layer.fprop(x, inference=True)
                        yield x  # stays on the device: train_rbm copies it there

                for epoch in range(self.pretrain_epochs):
                    t0 = time.perf_counter()
                    opt.set_epoch(epoch)
                    train.set_epoch(epoch)
                    loss = train_rbm(rbm, inputs(), opt, self.pretrain_k,
                                     self.pretrain_persistent)
                    records.append({"layer": i, "epoch": epoch + 1,
                                    "reconstruction_error": loss,
                                    "seconds": time.perf_counter() - t0})
                target = self.layers[i]
                be.assign_param(target.W, rbm.W.primary)
                be.assign_param(target.b, rbm.hbias.primary)
        self.pretrained = True
        self.pretrain_history = records
        return records

    def fit(self, train: Any, optimizer: Optimizer, epochs: int,
            callbacks: Iterable[Callback] | None = None, **kwargs: Any) -> History:
        """Pretrain (first call on a fresh model only), then fine-tune with ``Model.fit``."""
        extra = None
        if not self.pretrained and self.epoch == 0 and self.pretrain_epochs > 0:
            t0 = time.perf_counter()
            self.pretrain(train)
            extra = {"pretrain_seconds": time.perf_counter() - t0,
                     "pretrain_reconstruction_error": self.pretrain_history[-1][
                         "reconstruction_error"]}
        cbs: list[Callback] = list(callbacks or [])
        if extra is not None:
            cbs.insert(0, _AddToFirstRecord(extra))
        return super().fit(train, optimizer, epochs, callbacks=cbs, **kwargs)


class _AddToFirstRecord(Callback):
    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra: dict[str, Any] | None = extra

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.extra:
            metrics.update(self.extra)
            self.extra = None
