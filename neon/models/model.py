"""Model: a stack of layers and a cost, trained with ``fit`` and evaluated with ``eval``."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neon.backends import Backend, FlowCounter, gen_backend
from neon.callbacks import Callback, CallbackList
from neon.datasets.iterator import ArrayIterator
from neon.diagnostics import Diagnostics, LayerTimer, RangeRecorder, build_diagnostics
from neon.errors import TrainingDiverged
from neon.layers import Layer, Param, build_layer
from neon.layers.convolution import Conv
from neon.layers.pooling import Pool
from neon.metrics import Metric, build_metrics
from neon.optimizers import Optimizer
from neon.optimizers.loss_scaling import LossScaler, build_loss_scaler
from neon.transforms import Cost, build_cost

__all__ = ["History", "Model"]


@dataclass
class History:
    """Per-epoch records of a ``fit`` call; ``final`` is the last epoch's record.
    ``numerics`` is the backend's description (``Backend.describe``: numerics, recipe and
    the format each tensor class was stored in)."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    numerics: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}

    def metric(self, name: str) -> list[float]:
        return [e[name] for e in self.epochs if name in e]

    def __len__(self) -> int:
        return len(self.epochs)


class Model:
    """Layers applied in order, then a cost.

    ``Model(layers, cost, be=None)``; layers are Layer objects or YAML-style specs. The model
    is initialized (shapes, parameters) on the first ``fit``/``eval``/``predict``, or by
    ``initialize(in_shape)``. ``config`` is the model YAML it was built from; built in
    Python from specs, it is those specs (so that ``save`` and ``Model.load`` rebuild it).
    """

    def __init__(
        self,
        layers: Sequence[Layer | dict],
        cost: str | dict | Cost = "cross_entropy",
        be: Backend | None = None,
        name: str = "model",
        config: dict[str, Any] | None = None,
    ) -> None:
        flat: list[Layer] = []
        for i, spec in enumerate(layers):
            flat.extend(build_layer(spec, where=f"model.layers.{i}").expand())
        if not flat:
            raise ValueError("a model needs at least one layer")
        counts: dict[str, int] = {}
        for layer in flat:
            if layer.name is None:
                kind = layer.registry_name
                layer.name = f"{kind}_{counts.get(kind, 0)}"
                counts[kind] = counts.get(kind, 0) + 1
        self.layers = flat
        self.cost = build_cost(cost)
        self.be = be
        self.name = name
        self.config = config if config is not None else self._spec_config(layers, cost)
        self.in_shape: tuple[int, ...] | None = None
        self.epoch = 0  # epochs trained so far
        self.shortcut = False
        self.optimizer: Optimizer | None = None
        self.loss_scaler: LossScaler | None = None
        self.meta: dict[str, Any] = {}

    def _spec_config(self, layers: Sequence[Layer | dict], cost: Any) -> dict[str, Any] | None:
        """The model YAML of a model built in Python from plain specs (None when a layer or
        the cost is an object, which no YAML names)."""
        model: dict[str, Any] = {"layers": list(layers), "cost": cost}
        kind = getattr(type(self), "registry_name", None)
        if kind:
            model["type"] = kind
        config = {"name": self.name, "model": model}
        try:
            return json.loads(json.dumps(config))  # a plain copy, or not expressible
        except (TypeError, ValueError):
            return None

    # ----------------------------------------------------------------- set-up
    @property
    def initialized(self) -> bool:
        return self.in_shape is not None

    def initialize(self, in_shape: Sequence[int], be: Backend | None = None) -> Model:
        """Configure shapes and allocate parameters on ``be`` (default: CPU fp32)."""
        if self.initialized:
            return self
        self.be = be = be or self.be or gen_backend("cpu")
        shape = tuple(int(s) for s in in_shape)
        self.in_shape = shape
        for layer in self.layers:
            shape = layer.configure(shape)
            with be.storing("master_weights"):  # initial values at the stepped precision
                layer.allocate(be)
            for p in layer.params:
                p.layer = layer.name or ""
                be.attach_master(p)
        self.out_shape = shape
        self.layers[0].need_input_grad = False
        last = self.layers[-1]
        act = getattr(last, "activation", None)
        self.shortcut = act is not None and act.registry_name == self.cost.shortcut
        if self.shortcut:
            last.skip_act_bprop = True
        for conv, pool in itertools.pairwise(self.layers):
            # the convolution computes the pool and takes its gradient unexpanded: one pass
            # over the convolution's output each way instead of two and three
            if isinstance(pool, Pool):
                pool.fused = (isinstance(conv, Conv) and pool.non_overlapping_max
                              and conv.can_fuse_pool)
                if pool.fused:
                    conv.fused_pool = pool
        return self

    @property
    def params(self) -> list[Param]:
        return [p for layer in self.layers for p in layer.params]

    @property
    def nparams(self) -> int:
        return sum(layer.nparams for layer in self.layers)

    def summary(self) -> str:
        lines = [layer.describe() for layer in self.layers]
        lines.append(f"cost: {self.cost}; {self.nparams:,} parameters")
        return "\n".join(lines)

    # ----------------------------------------------------------------- compute
    def fprop(self, x: Any, inference: bool = False, timer: LayerTimer | None = None) -> Any:
        be = self.be
        with be.storing("activations"):
            for layer in self.layers:
                with be.scope(layer.name or ""):
                    if timer is None:
                        x = layer.fprop(x, inference)
                    else:
                        with timer.span(layer.name or "", "fprop"):
                            x = layer.fprop(x, inference)
        return x

    def bprop(self, delta: Any, timer: LayerTimer | None = None) -> None:
        be = self.be
        with be.storing("gradients"):
            for layer in reversed(self.layers):
                with be.scope(layer.name or ""):
                    if timer is None:
                        delta = layer.bprop(delta)
                    else:
                        with timer.span(layer.name or "", "bprop"):
                            delta = layer.bprop(delta)

    def _targets(self, y_host: np.ndarray, out_buf: dict[str, Any]) -> Any:
        """Targets on the device: one-hot rows for integer labels when the cost wants them."""
        be = self.be
        if self.cost.needs_onehot and np.issubdtype(y_host.dtype, np.integer):
            nclass = self.out_shape[-1]
            flat = y_host.reshape(-1)
            buf = out_buf.get("t")
            buf = be.onehot(be.asarray(flat), nclass, out=buf)
            out_buf["t"] = buf
            return buf.reshape((*y_host.shape, nclass))
        return be.array(y_host)

    def _inputs(self, x_host: np.ndarray, bufs: dict[str, Any]) -> Any:
        """The batch in the compute dtype, rounded to storage: a contiguous batch of that
        dtype is used as it is when nothing rounds it (read-only on the host, so that no
        layer can write into the dataset), else copied into a buffer and rounded there."""
        be = self.be
        x = be.asarray(x_host)
        with be.storing("activations"):
            if not be.format.emulated and x.dtype == be.dtype and x.flags.c_contiguous:
                if isinstance(x, np.ndarray):
                    x = x.view()
                    x.flags.writeable = False
                return be.quantize(x)
            buf = bufs.get("x")
            if buf is None or buf.shape != x_host.shape:
                buf = be.empty(x_host.shape)
                bufs["x"] = buf
            buf[...] = x
            return be.quantize(buf)

    # ----------------------------------------------------------------- training
    def fit(
        self,
        train: ArrayIterator,
        optimizer: Optimizer,
        epochs: int,
        callbacks: Iterable[Callback] | None = None,
        valid: ArrayIterator | None = None,
        metrics: Sequence[str | dict | Metric] | None = ("misclassification",),
        loss_scale: Any = None,
        diagnostics: Diagnostics | dict | bool | None = None,
        initial_epoch: int | None = None,
    ) -> History:
        """Train until ``epochs`` epochs in total have run (Keras semantics).

        Starts at ``initial_epoch`` (default: epochs already trained, so a loaded checkpoint
        continues). Each epoch's record holds ``train_loss``, ``val_<metric>`` for every
        metric on ``valid``, ``seconds`` and, when enabled, ``diagnostics``. Raises
        ``TrainingDiverged`` on a NaN/Inf loss.
        """
        self.initialize(train.shape)
        be = self.be
        diag = build_diagnostics(diagnostics)
        metric_objs = build_metrics(metrics)
        self.optimizer = optimizer
        if self.loss_scaler is None or loss_scale is not None:
            self.loss_scaler = build_loss_scaler(loss_scale, be.storage.of("gradients").name)
        scaler = self.loss_scaler
        params = self.params
        grads = [p.grad for p in params]
        bufs: dict[str, Any] = {}
        timer = LayerTimer(be) if diag.timing else None
        ranges = RangeRecorder(be) if diag.ranges else None

        def run_epoch(epoch: int) -> dict[str, Any]:
            record = self._train_epoch(
                train, optimizer, scaler, epoch, params, grads, bufs, timer, ranges, diag
            )
            if valid is not None and metric_objs:
                for name, value in self.eval(valid, metric_objs).items():
                    record[f"val_{name}"] = value
            if diag.enabled:
                record["diagnostics"] = self._diagnostics(timer, ranges)
            return record

        saved_flow = be.flow
        if diag.ranges:
            be.flow = FlowCounter()
        try:
            return self._run_epochs(epochs, callbacks, initial_epoch, run_epoch)
        finally:
            be.flow = saved_flow

    def _run_epochs(self, epochs: int, callbacks: Iterable[Callback] | None,
                    initial_epoch: int | None,
                    run_epoch: Callable[[int], dict[str, Any]]) -> History:
        """The epoch loop every ``fit`` shares: ``run_epoch(epoch)`` trains one epoch and
        returns its record; callbacks see each record and may stop the loop."""
        start = self.epoch if initial_epoch is None else int(initial_epoch)
        cbs = CallbackList(callbacks)
        history = History(numerics=self.be.describe())
        cbs.on_train_begin(self, epochs, start)
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(start, epochs):
                cbs.on_epoch_begin(epoch + 1)
                record = run_epoch(epoch)
                self.epoch = epoch + 1
                history.epochs.append(record)
                if cbs.on_epoch_end(epoch + 1, record):
                    history.stopped_early = epoch + 1 < epochs
                    break
        cbs.on_train_end(history)
        return history

    def _train_epoch(
        self,
        train: ArrayIterator,
        optimizer: Optimizer,
        scaler: LossScaler,
        epoch: int,
        params: list[Param],
        grads: list[Any],
        bufs: dict[str, Any],
        timer: LayerTimer | None,
        ranges: RangeRecorder | None,
        diag: Diagnostics,
    ) -> dict[str, Any]:
        be = self.be
        t0 = time.perf_counter()
        optimizer.set_epoch(epoch)
        train.set_epoch(epoch)
        be.set_epoch(epoch)
        if timer is not None:
            timer.reset()
        if ranges is not None:
            ranges.reset()
            be.flow.reset()
        sample_every = max(1, train.nbatches // max(1, diag.samples))
        # nothing reads the gradients between bprop and the update (see fold_updates)
        fold = ranges is None and not scaler.checks_overflow and scaler.scale == 1.0
        total_loss, total_rows, skipped = 0.0, 0, 0
        for b, (xb, yb) in enumerate(train):
            x = self._inputs(xb, bufs)
            t = self._targets(yb, bufs)
            y = self.fprop(x, timer=timer)
            loss = self.cost.fprop(be, y, t)
            if not math.isfinite(loss):
                raise TrainingDiverged(epoch + 1, b + 1, loss)
            total_loss += loss * len(xb)
            total_rows += len(xb)
            delta = self._delta_buffer(y, bufs)
            with be.scope("cost"), be.storing("gradients"):
                if self.shortcut:
                    self.cost.bprop_shortcut(be, y, t, delta, scaler.scale)
                else:
                    self.cost.bprop(be, y, t, delta, scaler.scale)
                be.quantize(delta)
            if fold:
                optimizer.fold_updates(params, be)
            self.bprop(delta, timer=timer)
            step = True
            if scaler.checks_overflow:
                step = scaler.update(be.all_finite(grads))
            if step:
                if timer is None:
                    optimizer.optimize(params, be, grad_scale=scaler.scale)
                else:
                    with timer.span("optimizer", "update"):
                        optimizer.optimize(params, be, grad_scale=scaler.scale)
            else:
                skipped += 1
            if ranges is not None and b % sample_every == 0:
                self._observe_ranges(ranges)
            if timer is not None:
                timer.batches += 1
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": total_loss / max(1, total_rows),
            "lr": optimizer.lr,
        }
        if scaler.checks_overflow or scaler.scale != 1.0:
            record["loss_scale"] = scaler.scale
            record["skipped_steps"] = skipped
        record["seconds"] = time.perf_counter() - t0
        return record

    def _delta_buffer(self, y: Any, bufs: dict[str, Any]) -> Any:
        buf = bufs.get("delta")
        if buf is None or buf.shape != y.shape:
            buf = self.be.empty(y.shape)
            bufs["delta"] = buf
        return buf

    def _observe_ranges(self, ranges: RangeRecorder) -> None:
        for layer in self.layers:
            name = layer.name or ""
            ranges.observe(name, "output", getattr(layer, "y", None))
            for p in layer.params:
                ranges.observe(name, p.name, p.value)
                ranges.observe(name, f"d{p.name}", p.grad)
                ranges.observe_param_state(name, p)

    def _diagnostics(
        self, timer: LayerTimer | None, ranges: RangeRecorder | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if timer is not None:
            out["timing"] = timer.summary()
        if ranges is not None:
            out["ranges"] = ranges.summary()
            if self.be.flow is not None:
                out["flow"] = self.be.flow.fractions()
                out["flow_total"] = self.be.flow.total()
                out["flow_classes"] = self.be.flow.class_fractions()
        return out

    # ----------------------------------------------------------------- inference
    def eval(
        self, data: ArrayIterator, metrics: Sequence[str | dict | Metric] = ("misclassification",)
    ) -> dict[str, float]:
        """Metric values on ``data`` (inference mode: no dropout, running batch norm)."""
        self.initialize(data.shape)
        be = self.be
        metric_objs = build_metrics(metrics)
        sums = {m.name: [0.0, 0] for m in metric_objs}
        bufs: dict[str, Any] = {}
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for xb, yb in data:
                y = self.fprop(self._inputs(xb, bufs), inference=True)
                labels = be.asarray(yb)
                for m in metric_objs:
                    s, n = m.batch(be, y, labels)
                    sums[m.name][0] += s
                    sums[m.name][1] += n
        return {m.name: m.value(*sums[m.name]) for m in metric_objs}

    def predict(self, data: ArrayIterator | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outputs for every example, as a host array."""
        if isinstance(data, np.ndarray):
            data = ArrayIterator(data, np.zeros(len(data), np.int64), batch_size, name="predict")
        self.initialize(data.shape)
        bufs: dict[str, Any] = {}
        outs = []
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for xb, _ in data:
                y = self.fprop(self._inputs(xb, bufs), inference=True)
                outs.append(self.be.to_host(y).astype(np.float32))
        return np.concatenate(outs)

    # ----------------------------------------------------------------- persistence
    def save(self, path: str, optimizer: Optimizer | None = None, **meta: Any) -> None:
        """Weights, optimizer state and config to ``path`` (.npz, no pickle)."""
        from neon.serialize import save_model

        save_model(self, path, optimizer or self.optimizer, meta)

    @classmethod
    def load(cls, path: str, be: Backend | None = None) -> Model:
        """A model saved by ``save``; ``model.optimizer`` holds the restored optimizer."""
        from neon.serialize import load_model

        return load_model(path, be)
