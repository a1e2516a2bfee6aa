"""The Backend: the only way layers, costs and optimizers touch arrays.

Array-module design: ``be.xp`` is numpy on the CPU and CuPy on the GPU, so elementwise code
is shared; what differs between devices (GEMM, rounding to the storage format, random bits,
host transfers, fused kernels) goes through the methods here. Every stored result is passed
through ``quantize`` so that fp16/bf16 storage is honoured with fp32 arithmetic. Which format
``quantize`` rounds to depends on the class of tensor being stored (``storing``): the
backend's ``storage`` (``numerics.Storage``) maps each class to its format.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from neon.backends.numerics import STORE_MODES, Format, Storage, resolve_storage

__all__ = ["Backend", "FlowCounter", "MaxPoolArrays"]

_NO_SCOPE = contextlib.nullcontext()


class MaxPoolArrays(NamedTuple):
    """A max pool fused with the convolution before it: its output and argmax
    (N, K, P', Q') and its window, for ``conv_fprop(pool=...)`` and ``max_unpool_cn``."""

    pooled: Any
    argmax: Any
    fshape: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int]


class FlowCounter:
    """Per-scope and per-tensor-class counts of stored values and of those that over- or
    underflowed.

    Scopes are layer names; the model sets ``scope`` while a layer runs, so every rounding
    of that layer's results lands in its row. The backend sets ``tensor_class`` while it
    stores a class (``Backend.storing``), so each class's rounding also lands in its row of
    ``by_class`` (the optimizer state's underflow shows there, apart from the activations').
    """

    def __init__(self) -> None:
        self.scope = "-"
        self.tensor_class = "activations"
        self.counts: dict[str, list[int]] = {}
        self.by_class: dict[str, list[int]] = {}

    def add(self, n: int, overflow: int, underflow: int, tensor_class: str | None = None
            ) -> None:
        for row in (self.counts.setdefault(self.scope, [0, 0, 0]),
                    self.by_class.setdefault(tensor_class or self.tensor_class, [0, 0, 0])):
            row[0] += n
            row[1] += overflow
            row[2] += underflow

    @staticmethod
    def _fractions(counts: dict[str, list[int]]) -> dict[str, dict[str, float]]:
        return {
            key: {"overflow": o / n if n else 0.0, "underflow": u / n if n else 0.0}
            for key, (n, o, u) in counts.items()
        }

    def fractions(self) -> dict[str, dict[str, float]]:
        """``{scope: {"overflow": f, "underflow": f}}`` as fractions of stored values."""
        return self._fractions(self.counts)

    def class_fractions(self) -> dict[str, dict[str, float]]:
        """``{tensor class: {"overflow": f, "underflow": f}}``."""
        return self._fractions(self.by_class)

    def total(self) -> dict[str, float]:
        """Overflow and underflow fractions over every scope together."""
        n = sum(row[0] for row in self.counts.values())
        over = sum(row[1] for row in self.counts.values())
        under = sum(row[2] for row in self.counts.values())
        return {"overflow": over / n if n else 0.0, "underflow": under / n if n else 0.0}

    def reset(self) -> None:
        self.counts.clear()
        self.by_class.clear()


def scale_into(out: Any, product: Any, alpha: float, beta: float) -> Any:
    """``out = alpha * product + beta * out`` in place (``product`` is scratch and may be
    scaled): the GEMM epilogue where a matrix product cannot take alpha and beta itself."""
    if alpha != 1.0:
        product *= alpha
    if beta == 0.0:
        out[...] = product
    else:
        if beta != 1.0:
            out *= beta
        out += product
    return out


class Backend:
    """Base class of compute backends; subclasses set ``xp`` and the device-specific parts."""

    name = "base"
    xp: Any = np
    # a max pool right after a convolution is computed in the convolution's last pass
    # (``conv_fprop(pool=...)``) and hands it its gradient unexpanded (``max_unpool_cn``):
    # set where those are fused kernels rather than the reference
    fuses_max_unpool = False

    def __init__(
        self,
        numerics: str | Format = "fp32",
        stochastic_rounding: bool = False,
        seed: int = 0,
        recipe: str | None = None,
        storage: dict[str, str] | None = None,
    ) -> None:
        self.storage: Storage = resolve_storage(numerics, recipe, storage)
        # the format ``quantize`` rounds to now: the activations' outside ``storing``
        self.format = self.storage.of("activations")
        self.stochastic_rounding = bool(stochastic_rounding) and self.storage.emulated
        self.seed = int(seed)
        self.flow: FlowCounter | None = None
        self._round_calls = 0
        self.rng = self._make_rng(self.seed)

    # ----------------------------------------------------------------- description
    @property
    def numerics(self) -> str:
        return self.storage.numerics.name

    @property
    def store_mode(self) -> int:
        """How the fused kernels round what they store now (``numerics.STORE_MODES``)."""
        return self.store_mode_of(self.format)

    def store_mode_of(self, fmt: Format) -> int:
        """How the fused kernels round a value stored in ``fmt``."""
        return STORE_MODES.get((fmt.name, self.stochastic_rounding), 0)

    @property
    def dtype(self) -> np.dtype:
        """dtype of arrays this backend allocates (the compute dtype unless overridden)."""
        return self.format.compute

    def __repr__(self) -> str:
        sr = ", stochastic rounding" if self.stochastic_rounding else ""
        recipe = f" {self.storage.recipe}" if self.storage.numerics.emulated else ""
        return f"{type(self).__name__}({self.numerics}{recipe}{sr}, seed={self.seed})"

    def describe(self) -> dict[str, Any]:
        """What the run used, for results: the numerics, the recipe and the format of each
        tensor class (``storage``)."""
        return {
            "backend": self.name,
            "numerics": self.numerics,
            "recipe": self.storage.recipe,
            "storage": self.storage.names(),
            "stochastic_rounding": self.stochastic_rounding,
            "seed": self.seed,
        }

    def config(self) -> dict[str, Any]:
        """The ``backend:`` section that rebuilds this backend's numerics."""
        return {"name": self.name, "numerics": self.numerics,
                "stochastic_rounding": self.stochastic_rounding,
                "recipe": self.storage.recipe, "storage": self.storage.names()}

    # ----------------------------------------------------------------- tensor classes
    def storing(self, tensor_class: str) -> contextlib.AbstractContextManager[None]:
        """Inside the block, ``quantize`` (and the fused kernels) round to the format of
        ``tensor_class`` (``numerics.TENSOR_CLASSES``); a shared no-op when that is the
        current format and nothing counts."""
        fmt = self.storage.formats[tensor_class]
        if self.flow is None and fmt is self.format:
            return _NO_SCOPE
        return self._storing(tensor_class, fmt)

    @contextlib.contextmanager
    def _storing(self, tensor_class: str, fmt: Format) -> Iterator[None]:
        previous = self.format
        self.format = fmt
        flow = self.flow
        counted = flow.tensor_class if flow is not None else None
        if flow is not None:
            flow.tensor_class = tensor_class
        try:
            yield
        finally:
            self.format = previous
            if flow is not None:
                flow.tensor_class = counted

    def attach_master(self, p: Any) -> None:
        """Give ``p`` the master copy its storage asks for (``p.master``: the array the
        optimizer steps), from ``p.value`` as it is, then round ``p.value`` to the weights'
        format. Without one, ``p.value`` is rounded to the weights' format."""
        if self.storage.keeps_master:
            p.master = self.xp.array(p.value, copy=True)
        else:
            p.master = None
        with self.storing("weights"):
            self.quantize(p.value)

    def sync_weights(self, p: Any) -> None:
        """After a step of ``p``'s master copy: the weights the layers read are that copy,
        rounded to the weights' format (nothing to do without a master copy)."""
        if p.master is not None:
            self._copy_weights(p.master, p.value)

    def _copy_weights(self, master: Any, weights: Any) -> None:
        weights[...] = master
        with self.storing("weights"):
            self.quantize(weights)

    def assign_param(self, p: Any, values: Any) -> None:
        """Set ``p`` to ``values`` (its master copy, where it keeps one, then its weights)."""
        if p.master is not None:
            p.master[...] = values
            with self.storing("master_weights"):
                self.quantize(p.master)
            self.sync_weights(p)
            return
        p.value[...] = values
        with self.storing("weights"):
            self.quantize(p.value)

    # ----------------------------------------------------------------- allocation
    def empty(self, shape: Any, dtype: Any = None) -> Any:
        return self.xp.empty(shape, dtype=dtype or self.dtype)

    def zeros(self, shape: Any, dtype: Any = None) -> Any:
        return self.xp.zeros(shape, dtype=dtype or self.dtype)

    def ones(self, shape: Any, dtype: Any = None) -> Any:
        return self.xp.ones(shape, dtype=dtype or self.dtype)

    def full(self, shape: Any, value: float, dtype: Any = None) -> Any:
        return self.xp.full(shape, value, dtype=dtype or self.dtype)

    def array(self, host: Any, dtype: Any = None, quantize: bool = True) -> Any:
        """Copy host data to the device in the backend dtype, rounded to the storage format."""
        out = self.xp.array(host, dtype=dtype or self.dtype, copy=True)
        if quantize and out.dtype == self.dtype:
            self.quantize(out)
        return out

    def asarray(self, host: Any, dtype: Any = None) -> Any:
        """Device view of ``host`` without rounding (labels, indices, masks)."""
        return self.xp.asarray(host, dtype=dtype)

    def to_host(self, x: Any) -> np.ndarray:
        """A numpy copy of a device array (float16/bfloat16 storage comes back as fp32)."""
        return np.array(x)

    def synchronize(self) -> None:
        """Wait for queued device work (timing); a no-op on the CPU."""

    # ----------------------------------------------------------------- rounding
    def quantize(self, x: Any) -> Any:
        """Round ``x`` in place to the storage format; returns ``x``."""
        if self.format.emulated:
            over, under = self._round(x)
            if self.flow is not None:
                self.flow.add(int(x.size), int(over), int(under))
        elif self.flow is not None:
            over, under = self._flow_counts(x)
            self.flow.add(int(x.size), int(over), int(under))
        return x

    def next_rounding_offset(self, n: int) -> int:
        """Counter for stochastic rounding's random bits: a fresh stream per call."""
        offset = self._round_calls
        self._round_calls += int(n)
        return offset

    def _round(self, x: Any) -> tuple[int, int]:
        raise NotImplementedError

    def _flow_counts(self, x: Any) -> tuple[int, int]:
        a = self.xp.abs(x)
        over = int(self.xp.isinf(a).sum())
        under = int(((a < self.format.tiny) & (a != 0)).sum())
        return over, under

    def scope(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Attribute roundings inside the block to ``name`` in the flow counter; a shared
        no-op when nothing counts (a step enters 13 of these)."""
        if self.flow is None:
            return _NO_SCOPE
        return self._flow_scope(name)

    @contextlib.contextmanager
    def _flow_scope(self, name: str) -> Iterator[None]:
        previous, self.flow.scope = self.flow.scope, name
        try:
            yield
        finally:
            self.flow.scope = previous

    # ----------------------------------------------------------------- linear algebra
    def dot(
        self,
        a: Any,
        b: Any,
        out: Any = None,
        trans_a: bool = False,
        trans_b: bool = False,
        accumulate: bool = False,
    ) -> Any:
        """``out = op(a) @ op(b)`` (``+=`` with ``accumulate``), rounded to storage."""
        if out is None:
            out = self.xp.matmul(a.T if trans_a else a, b.T if trans_b else b)
        else:
            self.gemm(a, b, out, trans_a, trans_b, beta=1.0 if accumulate else 0.0)
        return self.quantize(out)

    def gemm(self, a: Any, b: Any, out: Any, trans_a: bool = False, trans_b: bool = False,
             alpha: float = 1.0, beta: float = 0.0) -> Any:
        """``out = alpha * op(a) @ op(b) + beta * out`` for 2-D arrays, not rounded to
        storage (the caller rounds what it stores). Returns ``out``."""
        xp = self.xp
        a = a.T if trans_a else a
        b = b.T if trans_b else b
        if alpha == 1.0 and beta == 0.0:
            return xp.matmul(a, b, out=out)
        return scale_into(out, xp.matmul(a, b), alpha, beta)

    def bias_activation(self, y: Any, bias: Any, activation: Any) -> Any:
        """``y = activation(y + bias)`` in place: what follows an affine layer's GEMM.
        ``bias`` (broadcast over the rows of 2-D ``y``) and ``activation`` may be None;
        not rounded to storage."""
        if bias is not None:
            y += bias
        if activation is not None:
            activation.fprop(self, y, y)
        return y

    def activation_bias_grad(self, y: Any, delta: Any, activation: Any, bias_grad: Any,
                             alpha: float = 1.0, beta: float = 0.0) -> Any:
        """What starts an affine layer's bprop: ``delta *= activation'(y)`` in place, then
        ``bias_grad = alpha * delta.sum(axis=0) + beta * bias_grad`` for 2-D ``delta`` (alpha
        and beta as in ``gemm``: an optimizer's folded step). Either may be None; not
        rounded to storage."""
        if activation is not None:
            activation.bprop(self, y, delta, delta)
        if bias_grad is not None:
            if alpha == 1.0 and beta == 0.0:
                delta.sum(axis=0, out=bias_grad)
            else:
                scale_into(bias_grad, delta.sum(axis=0), alpha, beta)
        return delta

    # ----------------------------------------------------------------- convolution primitives
    # Contract shared by every backend (a GPU backend's raw kernels must match it): images
    # are C-contiguous NCHW arrays in the compute dtype; ``fshape``, ``strides`` and
    # ``padding`` are (height, width) pairs of ints; padding is zeros for convolution and is
    # excluded from pooling windows; output sizes are P = (H + 2*ph - R) // sh + 1 and
    # Q = (W + 2*pw - S) // sw + 1. Unfolded and "CN" arrays are channel-major: (rows,
    # N*P*Q), their columns in the order ``conv_col_order(N, P, Q)`` names: "npq" (column
    # index (n*P + p)*Q + q, the default) or "pqn" (column index (p*Q + q)*N + n: the image
    # index fastest, as in neon's CHWN kernels). Layers treat columns as opaque, so only the
    # four methods using them must agree. None of these methods rounds to the storage
    # format (the layer rounds what it stores); every ``out`` is overwritten.
    def conv_col_order(self, n: int, p: int, q: int) -> str:
        """Column order of unfolded and CN arrays of ``n`` images with P x Q outputs."""
        return "npq"

    def _cols(self, a: Any, lead: tuple[int, ...], n: int, p: int, q: int) -> Any:
        """View of a (lead..., N*P*Q) unfolded/CN array as (lead..., N, P, Q)."""
        if self.conv_col_order(n, p, q) == "npq":
            return a.reshape(*lead, n, p, q)
        k = len(lead)
        return a.reshape(*lead, p, q, n).transpose(*range(k), k + 2, k, k + 1)

    def im2col(
        self, x: Any, fshape: tuple[int, int], strides: tuple[int, int],
        padding: tuple[int, int], out: Any = None,
    ) -> Any:
        """Unfold filter windows: ``out`` (C*R*S, N*P*Q), returned.

        Row ``(c*R + r)*S + s``, column of (n, p, q) holds ``x[n, c, p*sh - ph + r,
        q*sw - pw + s]``, 0 where that position is in the padding. Rows of a channel group
        are contiguous, so a grouped convolution is one GEMM per block of C/groups*R*S rows.
        """
        xp = self.xp
        n, c, h, w = x.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        if out is None:
            out = self.empty((c * r * s, n * p * q), dtype=x.dtype)
        xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        o6 = self._cols(out, (c, r, s), n, p, q)
        for i in range(r):
            for j in range(s):
                window = xpad[:, :, i: i + sh * (p - 1) + 1: sh, j: j + sw * (q - 1) + 1: sw]
                o6[:, i, j] = window.transpose(1, 0, 2, 3)
        return out

    def col2im(
        self, col: Any, out: Any, fshape: tuple[int, int], strides: tuple[int, int],
        padding: tuple[int, int],
    ) -> Any:
        """Adjoint of ``im2col``: ``out`` (N, C, H, W) = sum of the ``col`` entries that
        ``im2col`` copies from each position (entries mapping to padding are dropped).
        ``col`` is (C*R*S, N*P*Q) as ``im2col`` lays it out; returns ``out``."""
        xp = self.xp
        n, c, h, w = out.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        xpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=out.dtype)
        c6 = self._cols(col, (c, r, s), n, p, q)
        for i in range(r):
            for j in range(s):
                window = xpad[:, :, i: i + sh * (p - 1) + 1: sh, j: j + sw * (q - 1) + 1: sw]
                window += c6[:, i, j].transpose(1, 0, 2, 3)
        out[...] = xpad[:, :, ph: ph + h, pw: pw + w]
        return out

    def cn_to_nchw(self, src: Any, out: Any, bias: Any = None, relu: bool = False) -> Any:
        """Convolution output from its GEMM: ``src`` (K, N*P*Q) -> ``out`` (N, K, P, Q).

        ``out[n, k, p, q] = src[k, column of (n, p, q)] + bias[k]`` (``bias`` (K,) or
        None), then ``max(., 0)`` with ``relu`` (NaN stays NaN). Returns ``out``.
        """
        xp = self.xp
        n, k, p, q = out.shape
        s4 = self._cols(src, (k,), n, p, q).transpose(1, 0, 2, 3)
        if bias is not None:
            xp.add(s4, bias.reshape(1, k, 1, 1), out=out)
        else:
            out[...] = s4
        if relu:
            xp.maximum(out, 0, out=out)
        return out

    def nchw_to_cn(
        self, src: Any, out: Any, relu_y: Any = None, bias_grad: Any = None
    ) -> Any:
        """A convolution's output gradient for its GEMMs: ``src`` (N, K, P, Q) -> ``out``
        (K, N*P*Q) with ``out[k, column of (n, p, q)] = src[n, k, p, q]``, times
        ``(relu_y[n, k, p, q] > 0)`` when ``relu_y`` (the ReLU output, (N, K, P, Q)) is
        given. ``bias_grad`` (K,), when given, is overwritten with the row sums of ``out``.
        ``src`` is not modified. Returns ``out``."""
        xp = self.xp
        n, k, p, q = src.shape
        o4 = self._cols(out, (k,), n, p, q)
        s4 = src.transpose(1, 0, 2, 3)
        if relu_y is not None:
            xp.multiply(s4, relu_y.transpose(1, 0, 2, 3) > 0, out=o4)
        else:
            o4[...] = s4
        if bias_grad is not None:
            out.sum(axis=1, out=bias_grad)
        return out

    def conv_fprop(
        self, x: Any, w: Any, bias: Any, out: Any, fshape: tuple[int, int],
        strides: tuple[int, int], padding: tuple[int, int], groups: int = 1,
        relu: bool = False, ws: dict[str, Any] | None = None, quantize: bool = False,
        pool: MaxPoolArrays | None = None,
    ) -> Any:
        """``out`` (N, K, P, Q) = conv(x, w) + bias, then max(., 0) with ``relu``; with
        ``quantize`` also rounded to the storage format exactly as ``quantize(out)`` would
        (flow counting included; backends fuse it into their last pass). With ``pool``, also
        ``pool_fprop`` of ``out`` into it (rounded), which backends may fuse likewise.

        ``x`` (N, C, H, W); ``w`` (K, C/groups, R, S): cross-correlation, filter k seeing
        the channels of its group (groups split C and K into equal consecutive blocks);
        ``bias`` (K,) or None. ``ws`` is a dict the layer keeps: the backend stores the work
        arrays there that ``conv_bprop`` of the same minibatch needs, and reuses them for the
        next minibatch. This generic version is im2col + one GEMM per group + cn_to_nchw.
        """
        n, c = x.shape[:2]
        k = w.shape[0]
        crs = int(np.prod(w.shape[1:]))
        r, s = fshape
        p, q = out.shape[2:]
        ws = {} if ws is None else ws
        col = self._conv_unfold(x, ws, (c * r * s, n * p * q), fshape, strides, padding)
        cn = self._work(ws, "cn", (k, n * p * q), x.dtype)
        self._group_matmul(w.reshape(k, crs), col, cn, groups)
        return self._conv_out(cn, out, bias, relu, ws, quantize, pool)

    def _conv_unfold(self, x: Any, ws: dict[str, Any], shape: tuple[int, int],
                     fshape: tuple[int, int], strides: tuple[int, int],
                     padding: tuple[int, int]) -> Any:
        """``conv_fprop``'s GEMM operand: ``x`` unfolded (``im2col``) into ``ws["col"]``."""
        col = self._work(ws, "col", shape, x.dtype)
        return self.im2col(x, fshape, strides, padding, out=col)

    def _conv_out(self, cn: Any, out: Any, bias: Any, relu: bool, ws: dict[str, Any],
                  quantize: bool, pool: MaxPoolArrays | None) -> Any:
        """``conv_fprop``'s last step: the GEMM result ``cn`` to ``out`` (bias, ReLU),
        rounded with ``quantize``, then the pool if any."""
        self.cn_to_nchw(cn, out, bias, relu)
        return self._then_pool(self.quantize(out) if quantize else out, pool)

    def _then_pool(self, out: Any, pool: MaxPoolArrays | None) -> Any:
        """``out``, after ``pool_fprop`` of it into ``pool`` (if any): ``conv_fprop``'s last
        step where nothing fuses the two."""
        if pool is not None:
            self.pool_fprop(out, pool.pooled, pool.argmax, "max", pool.fshape, pool.strides,
                            pool.padding, quantize=True)
        return out

    def conv_bprop(
        self, delta: Any, w: Any, dw: Any, db: Any, dx: Any, fshape: tuple[int, int],
        strides: tuple[int, int], padding: tuple[int, int], groups: int = 1,
        relu_y: Any = None, ws: dict[str, Any] | None = None, quantize: bool = False,
    ) -> Any:
        """Gradients of ``conv_fprop`` (called with the same ``ws`` after it).

        ``delta`` (N, K, P, Q) is dL/d(out); with ``relu_y`` (the fprop output of a fused
        ReLU) it is first multiplied by ``relu_y > 0``. Writes ``dw`` (K, C/groups, R, S),
        ``db`` (K,) unless None, and ``dx`` (N, C, H, W) unless None (no input gradient);
        with ``quantize``, ``dx`` is rounded as in ``conv_fprop`` (``dw`` and ``db`` are
        left to the caller). ``delta`` is not modified. Returns ``dx``. ``delta`` None:
        ``max_unpool_cn`` has already written it into ``ws`` (ReLU and ``db`` included).
        """
        assert ws is not None and "cn" in ws, "conv_bprop needs the ws of conv_fprop"
        k = w.shape[0]
        kg = k // groups
        crs = int(np.prod(w.shape[1:]))
        if delta is not None:
            self.nchw_to_cn(delta, ws["cn"], relu_y, db)
        unfolded, cn = self._conv_grad_operands(ws)
        dwt = self._work(ws, "dwt", (groups * crs, kg), dw.dtype)
        self._group_matmul(unfolded, cn, dwt, groups, trans_b=True)
        dw.reshape(groups, kg, crs)[...] = dwt.reshape(groups, crs, kg).transpose(0, 2, 1)
        if dx is None:
            return None
        # the unfolded input is no longer needed: its buffer (when it is fp32 like dx)
        # takes the unfolded gradient
        col = self._work(ws, "col", unfolded.shape, dx.dtype)
        self._group_matmul(w.reshape(k, crs), cn, col, groups, trans_a=True)
        self.col2im(col, dx, fshape, strides, padding)
        return self.quantize(dx) if quantize else dx

    def _conv_grad_operands(self, ws: dict[str, Any]) -> tuple[Any, Any]:
        """The unfolded input and the channel-major output gradient, as ``conv_bprop``'s
        GEMMs take them (``_conv_unfold``'s array and ``ws["cn"]``)."""
        return ws["col"], ws["cn"]

    def _group_matmul(self, a: Any, b: Any, out: Any, groups: int, trans_a: bool = False,
                      trans_b: bool = False) -> None:
        """``out = op(a) @ op(b)`` per group: each 2-D operand stacks its groups' blocks by
        row (``op`` transposes each block)."""
        if groups == 1:
            self.gemm(a, b, out, trans_a, trans_b)
            return
        a3 = a.reshape(groups, -1, a.shape[1])
        b3 = b.reshape(groups, -1, b.shape[1])
        self.xp.matmul(a3.transpose(0, 2, 1) if trans_a else a3,
                       b3.transpose(0, 2, 1) if trans_b else b3,
                       out=out.reshape(groups, -1, out.shape[1]))

    def _work(self, ws: dict[str, Any], key: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """``ws[key]``, (re)allocated when its shape or dtype differs."""
        buf = ws.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = self.empty(shape, dtype=dtype)
            ws[key] = buf
        return buf

    def pool_fprop(
        self, x: Any, out: Any, argmax: Any, op: str, fshape: tuple[int, int],
        strides: tuple[int, int], padding: tuple[int, int], quantize: bool = False,
    ) -> Any:
        """Max or average pooling of ``x`` (N, C, H, W) into ``out`` (N, C, P, Q).

        Windows are clipped to the input (padding is never a candidate nor counted; a window
        always holds at least one input position because padding < fshape). ``op='max'``:
        ``out`` = window maximum and ``argmax`` (N, C, P, Q) int32 = ``h*W + w`` of the first
        maximal position in row-major window order (a NaN in the window wins: ``out`` is NaN
        and ``argmax`` points at the last NaN).
        ``op='avg'``: ``out`` = mean over the window's input positions; ``argmax`` is unused
        (may be None). With ``quantize``, ``out`` is rounded as in ``conv_fprop``. Returns
        ``out``.
        """
        xp = self.xp
        n, c, h, w = x.shape
        p, q = out.shape[2:]
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        fill = -xp.inf if op == "max" else 0
        xpad = xp.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
        xpad[:, :, ph: ph + h, pw: pw + w] = x
        h0, w0 = xp.arange(p) * sh - ph, xp.arange(q) * sw - pw
        taps = [(i, j, xpad[:, :, i: i + sh * (p - 1) + 1: sh, j: j + sw * (q - 1) + 1: sw])
                for i in range(r) for j in range(s)]
        if op == "max":
            out.fill(-xp.inf)
            first = xp.maximum(h0, 0)[:, None] * w + xp.maximum(w0, 0)[None, :]
            argmax[...] = first.astype(np.int32)
            for i, j, v in taps:
                take = (v > out) | xp.isnan(v)
                xp.copyto(out, v, where=take)
                flat = ((h0 + i)[:, None] * w + (w0 + j)[None, :]).astype(np.int32)
                xp.copyto(argmax, xp.broadcast_to(flat, argmax.shape), where=take)
        else:
            out.fill(0)
            for _, _, v in taps:
                out += v
            out /= self._pool_counts(h, w, p, q, fshape, strides, padding).astype(out.dtype)
        return self.quantize(out) if quantize else out

    def pool_bprop(
        self, delta: Any, out: Any, argmax: Any, op: str, fshape: tuple[int, int],
        strides: tuple[int, int], padding: tuple[int, int], quantize: bool = False,
    ) -> Any:
        """Adjoint of ``pool_fprop``: ``out`` (N, C, H, W) from ``delta`` (N, C, P, Q).

        ``max``: each ``delta[n, c, p, q]`` is added at ``argmax[n, c, p, q]`` (overlapping
        windows sum). ``avg``: each is spread evenly over its window's input positions.
        With ``quantize``, ``out`` is rounded as in ``conv_fprop``. Returns ``out``.
        """
        xp = self.xp
        n, c, h, w = out.shape
        p, q = delta.shape[2:]
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        dpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=out.dtype)
        h0, w0 = xp.arange(p) * sh - ph, xp.arange(q) * sw - pw
        if op == "avg":
            g = delta / self._pool_counts(h, w, p, q, fshape, strides, padding).astype(
                delta.dtype)
        for i in range(r):
            for j in range(s):
                window = dpad[:, :, i: i + sh * (p - 1) + 1: sh, j: j + sw * (q - 1) + 1: sw]
                if op == "max":
                    flat = ((h0 + i)[:, None] * w + (w0 + j)[None, :]).astype(np.int32)
                    window += delta * (argmax == flat)
                else:
                    window += g
        out[...] = dpad[:, :, ph: ph + h, pw: pw + w]
        return self.quantize(out) if quantize else out

    def max_unpool_cn(
        self, delta: Any, pool: MaxPoolArrays, conv_out: Any, ws: dict[str, Any],
        relu: bool, bias_grad: Any = None,
    ) -> Any:
        """The output gradient of a convolution followed by a non-overlapping max pool,
        written for its ``conv_bprop(None, ...)``: ``pool_bprop`` of ``delta`` (N, K, P', Q')
        then ``nchw_to_cn`` into ``ws["cn"]`` with ``relu_y = conv_out`` when ``relu``.
        ``pool.pooled`` equals ``conv_out`` at each argmax, so it can stand in for the ReLU
        mask. Backends with ``fuses_max_unpool`` do this in one pass without the dense
        (N, K, P, Q) gradient; this version is their reference."""
        dense = self.empty(conv_out.shape, dtype=delta.dtype)
        self.pool_bprop(delta, dense, pool.argmax, "max", pool.fshape, pool.strides,
                        pool.padding)
        return self.nchw_to_cn(dense, ws["cn"], conv_out if relu else None, bias_grad)

    def _pool_counts(self, h: int, w: int, p: int, q: int, fshape: tuple[int, int],
                     strides: tuple[int, int], padding: tuple[int, int]) -> Any:
        """(P, Q) number of input positions in each pooling window."""
        xp = self.xp
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        h0, w0 = xp.arange(p) * sh - ph, xp.arange(q) * sw - pw
        ch = xp.minimum(h0 + r, h) - xp.maximum(h0, 0)
        cw = xp.minimum(w0 + s, w) - xp.maximum(w0, 0)
        return ch[:, None] * cw[None, :]

    def lrn_fprop(
        self, x: Any, out: Any, scale: Any, depth: int, alpha: float, beta: float, k: float
    ) -> Any:
        """Local response normalization across channels (AlexNet, Caffe's convention).

        For ``x`` (N, C, ...): ``scale = k + alpha/depth * sum(x[:, c']**2)`` over the
        channels c' in [c - depth//2, c + depth//2] inside [0, C) (``depth`` odd), and
        ``out = x * scale**-beta``. ``scale`` and ``out`` have x's shape and are written
        (``scale`` is kept for ``lrn_bprop``). Returns ``out``.
        """
        xp = self.xp
        c = x.shape[1]
        half = depth // 2
        sq = xp.zeros((x.shape[0], c + 2 * half, *x.shape[2:]), dtype=x.dtype)
        sq[:, half: half + c] = x * x
        acc = xp.zeros_like(x)
        for d in range(depth):
            acc += sq[:, d: d + c]
        xp.multiply(acc, alpha / depth, out=scale)
        scale += k
        xp.power(scale, -beta, out=out)
        out *= x
        return out

    def lrn_bprop(
        self, x: Any, y: Any, scale: Any, delta: Any, out: Any, depth: int, alpha: float,
        beta: float, k: float,
    ) -> Any:
        """Gradient of ``lrn_fprop``: ``out = delta * scale**-beta - 2*alpha*beta/depth * x *
        window_sum(delta * y / scale)`` (same channel window), from the ``x``, ``y`` and
        ``scale`` of the forward pass. ``out`` must not alias the inputs. Returns ``out``."""
        xp = self.xp
        c = x.shape[1]
        half = depth // 2
        t = xp.zeros((x.shape[0], c + 2 * half, *x.shape[2:]), dtype=x.dtype)
        t[:, half: half + c] = delta * y / scale
        acc = xp.zeros_like(x)
        for d in range(depth):
            acc += t[:, d: d + c]
        acc *= x
        acc *= 2.0 * alpha * beta / depth
        xp.power(scale, -beta, out=out)
        out *= delta
        out -= acc
        return out

    # ----------------------------------------------------------------- optimizer steps
    # Where ``folds_updates``, an optimizer may fold its step into a layer's weight-gradient
    # GEMM and bias-gradient epilogue (``gemm`` and ``activation_bias_grad`` with alpha and
    # beta: the gradient is never stored) and finish it with ``momentum_finish``; the generic
    # versions below are their reference.
    folds_updates = False

    def momentum_finish(self, w: Any, v: Any, decay: float) -> None:
        """The rest of ``sgd_update`` with momentum when ``v`` already holds
        ``momentum * v - lr * g`` (``gemm``): ``v -= decay * w``, then ``w += v``
        (``decay`` is lr times the weight decay). Full-precision storage only."""
        if decay:
            v -= decay * w
        w += v

    def sgd_update(self, w: Any, g: Any, v: Any, lr: float, momentum: float,
                   nesterov: bool, inv_scale: float, weight_decay: float,
                   weights: Any = None) -> None:
        """One SGD step in place, every stored result rounded: ``v`` to the optimizer
        state's format, ``w`` (a parameter's ``primary``) to the master weights'; then, when
        ``w`` is a master copy, ``weights`` (what the layers read) = ``w`` rounded to the
        weights' format.

        ``grad = g * inv_scale + weight_decay * w``; with a velocity ``v``:
        ``v = momentum * v - lr * grad`` (stored), then ``w += v`` (Nesterov:
        ``w += momentum * v - lr * grad``); without (``v`` None): ``w -= lr * grad``. ``g`` is
        not modified. Backends may fuse this into one pass; results agree to rounding.
        """
        xp = self.xp
        step = self._scratch(g.shape, g.dtype)  # -lr * grad, without temporaries
        xp.multiply(g, -lr * inv_scale, out=step)
        if weight_decay:
            step -= (lr * weight_decay) * w
        if v is None:
            w += step
        else:
            v *= momentum
            v += step
            with self.storing("optimizer_state"):
                self.quantize(v)
            if nesterov:
                step += momentum * v
                w += step
            else:
                w += v
        with self.storing(self.storage.stepped):
            self.quantize(w)
        if weights is not None:
            self._copy_weights(w, weights)

    def _scratch(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A reusable work array (one per shape and dtype) for in-place update formulas."""
        cache = self.__dict__.setdefault("_scratch_arrays", {})
        key = (tuple(shape), np.dtype(dtype).str)
        if key not in cache:
            cache[key] = self.xp.empty(shape, dtype=dtype)
        return cache[key]

    # ----------------------------------------------------------------- random numbers
    def _make_rng(self, seed: Any) -> Any:
        return np.random.default_rng(seed)

    def set_epoch(self, epoch: int) -> None:
        """Restart the random streams (dropout, stochastic rounding) from ``(seed, epoch)``.

        Training resumed from a checkpoint at epoch ``e`` then draws exactly what an
        uninterrupted run draws from epoch ``e`` on.
        """
        self.rng = self._make_rng([self.seed, int(epoch)])
        self._round_calls = int(epoch) << 40

    def uniform(self, shape: Any, low: float = 0.0, high: float = 1.0) -> Any:
        host = self.rng.uniform(low, high, size=shape)
        return self.array(host)

    def normal(self, shape: Any, loc: float = 0.0, scale: float = 1.0) -> Any:
        host = self.rng.normal(loc, scale, size=shape)
        return self.array(host)

    def bernoulli_mask(self, shape: Any, keep: float, out: Any = None) -> Any:
        """0/1 mask with P(1) = keep, in the backend dtype."""
        mask = self.rng.random(size=shape, dtype=np.float32) < keep
        if out is None:
            return self.xp.asarray(mask, dtype=self.dtype)
        out[...] = self.xp.asarray(mask)
        return out

    # ----------------------------------------------------------------- helpers
    def onehot(self, labels: Any, nclass: int, out: Any = None) -> Any:
        """One-hot rows for integer ``labels`` (shape ``(n, nclass)``)."""
        xp = self.xp
        labels = xp.asarray(labels)
        if out is None or out.shape != (labels.shape[0], nclass):
            out = self.zeros((labels.shape[0], nclass))
        else:
            out.fill(0)
        out[xp.arange(labels.shape[0]), labels] = 1
        return out

    def cross_entropy(self, y: Any, t: Any, eps: float) -> float:
        """``-sum(t * log(max(y, eps)))`` over all entries (the multiclass cross-entropy's
        sum); a NaN in ``y`` makes it NaN."""
        xp = self.xp
        logs = xp.log(xp.maximum(y, eps).astype(self.format.compute, copy=False))
        return float(-(t * logs).sum())

    def range_stats(self, x: Any) -> tuple[float, float, float, int]:
        """(min, max, mean |x|, non-finite count) over the finite values of ``x``."""
        xp = self.xp
        finite = xp.isfinite(x)
        bad = int(x.size - int(finite.sum()))
        if bad == x.size:
            return float("nan"), float("nan"), float("nan"), bad
        vals = x[finite] if bad else x
        return (
            float(vals.min()),
            float(vals.max()),
            float(xp.abs(vals).astype(np.float64).mean()),
            bad,
        )

    def all_finite(self, arrays: list[Any]) -> bool:
        """True when every array holds only finite values (dynamic loss scaling's check)."""
        return all(bool(self.xp.isfinite(a).all()) for a in arrays)

    def set_threads(self, n: int) -> None:
        """Limit the compute threads this backend uses (a no-op where it does not apply)."""

    # ----------------------------------------------------------------- recurrent cells
    # Contract shared by every backend (a fused GPU or numba kernel must match it): all
    # arithmetic in the compute dtype from the values as given; intermediate values are
    # not rounded; each output array is rounded to the storage format once, after it is
    # complete, in the order listed under "Rounds" (so stochastic rounding draws the same
    # streams). fp32 sigmoid/tanh may differ from the exact functions by up to 1e-6 absolute
    # (the CPU kernels use a rational tanh); fp64 must be exact to rounding. Gate blocks along
    # the last axis of ``gates`` are [input i | forget f | output o | candidate g], H wide.
    def lstm_cell_fprop(self, gates: Any, c_prev: Any, c: Any, tanh_c: Any, h: Any) -> None:
        """One LSTM step's elementwise part, after the gate GEMMs.

        ``gates`` (N, 4H): pre-activations ``x W + h_prev U + b`` on entry, replaced in place
        by the activations ``[sigmoid(i), sigmoid(f), sigmoid(o), tanh(g)]``.
        ``c_prev`` (N, H) is read. Writes ``c = f * c_prev + i * g``, ``tanh_c = tanh(c)``
        and ``h = o * tanh_c`` (each (N, H), none may alias ``gates`` or ``c_prev``).
        Rounds: gates, c, tanh_c, h.
        """
        xp = self.xp
        nh = c.shape[-1]
        sig = gates[:, : 3 * nh]
        xp.negative(sig, out=sig)
        xp.exp(sig, out=sig)
        sig += 1
        xp.reciprocal(sig, out=sig)
        g = gates[:, 3 * nh:]
        xp.tanh(g, out=g)
        i, f, o = gates[:, :nh], gates[:, nh: 2 * nh], gates[:, 2 * nh: 3 * nh]
        xp.multiply(f, c_prev, out=c)
        c += i * g
        xp.tanh(c, out=tanh_c)
        xp.multiply(o, tanh_c, out=h)
        for a in (gates, c, tanh_c, h):
            self.quantize(a)

    def lstm_cell_bprop(
        self, gates: Any, c_prev: Any, tanh_c: Any, dh: Any, dc: Any, dgates: Any, dc_prev: Any
    ) -> None:
        """Gradients of one LSTM step's elementwise part.

        Reads the activations ``gates`` (N, 4H) and ``c_prev``, ``tanh_c`` (N, H) stored by
        ``lstm_cell_fprop``, ``dh`` (N, H): dL/dh of this step (output and recurrent parts
        summed) and ``dc`` (N, H): dL/dc arriving from the next step (zeros at the last).
        With ``dct = dc + dh * o * (1 - tanh_c**2)`` writes the pre-activation gradients
        ``dgates`` (N, 4H) = [dct * g * i(1-i) | dct * c_prev * f(1-f) | dh * tanh_c * o(1-o)
        | dct * i * (1 - g**2)] and ``dc_prev = dct * f`` (N, H). ``dc_prev`` may alias
        ``dc``; ``dgates`` must not alias the inputs. Rounds: dgates, dc_prev.
        """
        xp = self.xp
        nh = dh.shape[-1]
        i, f, o, g = (gates[:, k * nh: (k + 1) * nh] for k in range(4))
        di, df, do, dg = (dgates[:, k * nh: (k + 1) * nh] for k in range(4))
        dct = dh * o * (1 - tanh_c * tanh_c)
        dct += dc
        xp.multiply(dh * tanh_c, o * (1 - o), out=do)
        xp.multiply(dct * g, i * (1 - i), out=di)
        xp.multiply(dct * c_prev, f * (1 - f), out=df)
        xp.multiply(dct * i, 1 - g * g, out=dg)
        xp.multiply(dct, f, out=dc_prev)
        self.quantize(dgates)
        self.quantize(dc_prev)
