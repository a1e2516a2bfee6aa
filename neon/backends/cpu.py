"""CPU backend: numpy arrays, one BLAS for every GEMM (``cpu_blas``: oneMKL or OpenBLAS),
numba kernels for rounding, statistics, convolution and recurrent cells."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from neon.backends import cpu_blas, cpu_omp
from neon.backends import cpu_conv_kernels as conv_kernels
from neon.backends import cpu_kernels as kernels
from neon.backends import cpu_rnn_kernels as rnn_kernels
from neon.backends.backend import Backend, MaxPoolArrays

__all__ = ["CPUBackend"]


def _npq(a: np.ndarray) -> tuple[int, int, int]:
    """(N, P, Q) of an (N, K, P, Q) array."""
    return a.shape[0], a.shape[2], a.shape[3]


def _contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` itself when C-contiguous (the kernels index flat views), else a copy."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


_RELU_FLAGS = {"identity": False, "relu": True}


def _relu_flag(activation: Any) -> bool | None:
    """True for ReLU, False for none or identity, None for what the fused kernels lack."""
    return _RELU_FLAGS.get("identity" if activation is None else activation.registry_name)


def _is_softmax(activation: Any) -> bool:
    return activation is not None and activation.registry_name == "softmax"


def _fusable(x: np.ndarray, bias: Any) -> bool:
    """A C-contiguous 2-D float array and, unless None, a contiguous bias vector (or bias
    gradient) of its width and dtype: what the fused affine kernels take."""
    return (x.ndim == 2 and x.dtype in (np.float32, np.float64) and x.flags.c_contiguous
            and (bias is None or (bias.dtype == x.dtype and bias.ndim == 1
                                  and bias.flags.c_contiguous and bias.shape[0] == x.shape[1])))


class CPUBackend(Backend):
    """numpy backend; fp16/bf16 live in fp32 arrays holding exactly representable values."""

    name = "cpu"
    xp = np
    fuses_max_unpool = True

    def __init__(
        self,
        numerics: str = "fp32",
        stochastic_rounding: bool = False,
        seed: int = 0,
        threads: int | None = None,
        recipe: str | None = None,
        storage: dict[str, str] | None = None,
    ) -> None:
        super().__init__(numerics, stochastic_rounding, seed, recipe, storage)
        if threads:
            self.set_threads(threads)

    def _round(self, x: np.ndarray) -> tuple[int, int]:
        """The numba rounding kernels; without counters, big arrays on the BLAS's threads."""
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            raise TypeError(f"can only round contiguous float32 arrays, got {x.dtype}")
        bits = x.reshape(-1).view(np.uint32)
        fmt = self.format.name
        counted = self.flow is not None  # the counting kernels run at half the speed
        if self.stochastic_rounding:
            offset = np.uint64(self.next_rounding_offset(bits.size))
            if counted:
                return kernels.sround.serial(bits, np.uint64(self.seed), offset, fmt == "bf16")
            if not cpu_omp.sround_16(bits, self.seed, int(offset), fmt == "bf16"):
                kernels.FAST_STOCHASTIC_ROUNDERS[fmt](bits, np.uint64(self.seed), offset)
            return 0, 0
        if not counted:
            if not cpu_omp.round_16(bits, fmt == "bf16"):
                kernels.FAST_ROUNDERS[fmt](bits)
            return 0, 0
        return kernels.ROUNDERS[fmt].serial(bits)

    def _flow_counts(self, x: np.ndarray) -> tuple[int, int]:
        return kernels.flow_counts(x.reshape(-1), x.dtype.type(self.format.tiny))

    def sgd_update(self, w: np.ndarray, g: np.ndarray, v: Any, lr: float, momentum: float,
                   nesterov: bool, inv_scale: float, weight_decay: float,
                   weights: Any = None) -> None:
        """One fused pass (measured 2-2.5x faster than array ops and separate roundings), on
        the BLAS's threads for big arrays with velocity and weights in one format
        (``cpu_omp``), the mixed recipe's master step writing the 16-bit copy in the same
        pass; numpy's array ops for non-contiguous arrays, and at full precision for plain
        SGD or with overflow counting on."""
        storage = self.storage
        wmode = self.store_mode_of(storage.of("master_weights"))
        vmode = self.store_mode_of(storage.of("optimizer_state")) if v is not None else wmode
        mode = wmode if vmode == wmode else -1
        contiguous = w.flags.c_contiguous and g.flags.c_contiguous and (
            v is None or v.flags.c_contiguous)
        if weights is not None:
            copy = self.store_mode_of(storage.of("weights"))
            if (mode == 0 and copy in (1, 2) and v is not None and self.flow is None
                    and contiguous and weights.flags.c_contiguous):
                dt = w.dtype.type
                args = (w.reshape(-1), g.reshape(-1), v.reshape(-1), weights.reshape(-1),
                        dt(lr), dt(momentum), bool(nesterov), dt(inv_scale), dt(weight_decay),
                        copy == 2)
                if not cpu_omp.momentum_master_16(*args):
                    kernels.momentum_master_16(*args)
                return None
            self.sgd_update(w, g, v, lr, momentum, nesterov, inv_scale, weight_decay)
            self._copy_weights(w, weights)
            return None
        if not contiguous or (mode == 0 and (v is None or self.flow is not None)):
            return super().sgd_update(w, g, v, lr, momentum, nesterov, inv_scale, weight_decay)
        dt = w.dtype.type
        if v is not None and 0 <= mode < 3 and self.flow is None:
            args = (w.reshape(-1), g.reshape(-1), v.reshape(-1), dt(lr), dt(momentum),
                    bool(nesterov), dt(inv_scale), dt(weight_decay))
            if mode == 0:
                teamed = cpu_omp.momentum_full(*args)
            else:  # the team runs the one-pass loop only
                one_pass = mode == 2 or kernels.FP16_IN_HARDWARE
                teamed = one_pass and cpu_omp.momentum_16(*args, bf16=mode == 2)
            if not teamed:
                kernels.FAST_MOMENTUM[storage.of("master_weights").name](*args)
            return None
        offset = self.next_rounding_offset(2 * w.size) if max(vmode, wmode) > 2 else 0
        vel = v.reshape(-1) if v is not None else np.empty(0, dtype=w.dtype)
        over_v, under_v, over_w, under_w = kernels.sgd_update.serial(
            w.reshape(-1), g.reshape(-1), vel, dt(lr), dt(momentum), bool(nesterov),
            dt(inv_scale), dt(weight_decay), np.int64(vmode), np.int64(wmode),
            np.uint64(self.seed), np.uint64(offset))
        if self.flow is not None:
            if vel.size:
                self.flow.add(int(vel.size), int(over_v), int(under_v), "optimizer_state")
            self.flow.add(int(w.size), int(over_w), int(under_w), storage.stepped)
        return None

    def describe(self) -> dict[str, Any]:
        """``Backend.describe`` plus the library behind the GEMMs (results may differ in the
        last bits between libraries)."""
        return {**super().describe(), "blas": cpu_blas.BLAS.source}

    @property
    def folds_updates(self) -> bool:
        """With a cblas to call: its GEMM takes the momentum update's alpha and beta."""
        return cpu_blas.BLAS.available

    def gemm(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return cpu_blas.gemm(a, b, out, trans_a, trans_b, beta=beta, alpha=alpha)

    def bias_activation(self, y: np.ndarray, bias: Any, activation: Any) -> np.ndarray:
        """One numba pass for a bias with identity or ReLU (measured 4x faster than numpy's
        two on a 128x1024 batch), and for softmax with or without a bias (5 against 16 us for
        numpy's six passes on a 128x10 batch)."""
        if _is_softmax(activation) and _fusable(y, bias):
            kernels.bias_softmax(y, np.empty(0, y.dtype) if bias is None else bias)
            return y
        relu = _relu_flag(activation)
        if relu is None or bias is None or not _fusable(y, bias):
            return super().bias_activation(y, bias, activation)
        kernels.bias_activation(y, bias, relu)
        return y

    def activation_bias_grad(self, y: np.ndarray, delta: np.ndarray, activation: Any,
                             bias_grad: Any, alpha: float = 1.0, beta: float = 0.0
                             ) -> np.ndarray:
        """One numba pass for a bias with identity or ReLU (measured 4x faster than numpy's
        three on a 128x1024 batch)."""
        relu = _relu_flag(activation)
        if (relu is None or bias_grad is None or not _fusable(delta, bias_grad)
                or (relu and not (y.shape == delta.shape and y.dtype == delta.dtype))):
            return super().activation_bias_grad(y, delta, activation, bias_grad, alpha, beta)
        kernels.activation_bias_grad(y, delta, bias_grad, relu, float(alpha), float(beta))
        return delta

    def momentum_finish(self, w: np.ndarray, v: np.ndarray, decay: float) -> None:
        """Without weight decay, ``w += v`` is the BLAS's axpy on its threads (1.55-1.97x
        the one-thread pass on 2 cores, in two measurements); with it, one numba pass
        updates both, on the same threads for big fp32 arrays (``cpu_omp``)."""
        if not (w.flags.c_contiguous and v.flags.c_contiguous):
            return super().momentum_finish(w, v, decay)
        if not decay and w.dtype in cpu_blas.BLAS.axpys:
            cpu_blas.BLAS.axpy(1.0, v, w)
            return None
        if not cpu_omp.momentum_finish(w.reshape(-1), v.reshape(-1), decay):
            kernels.momentum_finish(w.reshape(-1), v.reshape(-1), w.dtype.type(decay))
        return None

    def onehot(self, labels: Any, nclass: int, out: Any = None) -> np.ndarray:
        """One numba pass over ``out`` for a vector of integer labels (0.7 us against 2 us
        for numpy's zero fill and fancy indexing, 128 labels)."""
        labels = np.asarray(labels)
        if (labels.ndim != 1 or labels.dtype.kind not in "iu"
                or (out is not None and not out.flags.c_contiguous)):
            return super().onehot(labels, nclass, out)
        if out is None or out.shape != (labels.shape[0], nclass):
            out = self.empty((labels.shape[0], nclass))
        bad = kernels.onehot(labels, out)
        if bad >= 0:
            raise IndexError(f"label {labels[bad]} is out of range for {nclass} classes")
        return out

    def cross_entropy(self, y: np.ndarray, t: np.ndarray, eps: float) -> float:
        """One numba pass over contiguous float arrays of one shape that takes logarithms
        only under nonzero targets (2.4 against 3.5 us on a one-hot 128x10 batch)."""
        if not (y.shape == t.shape and y.dtype == t.dtype and y.dtype in (np.float32, np.float64)
                and y.flags.c_contiguous and t.flags.c_contiguous):
            return super().cross_entropy(y, t, eps)
        return float(kernels.cross_entropy(y.reshape(-1), t.reshape(-1), y.dtype.type(eps)))

    def range_stats(self, x: np.ndarray) -> tuple[float, float, float, int]:
        flat = np.ascontiguousarray(x).reshape(-1)
        lo, hi, total, bad = kernels.range_stats(flat)
        finite = flat.size - bad
        if finite == 0:
            return float("nan"), float("nan"), float("nan"), int(bad)
        return float(lo), float(hi), float(total) / finite, int(bad)

    def all_finite(self, arrays: list[Any]) -> bool:
        """One branch-free pass per array, big fp32 ones on the BLAS's threads."""
        for a in arrays:
            flat = np.ascontiguousarray(a).reshape(-1)
            if flat.dtype == np.float32:
                bits = flat.view(np.uint32)
                finite = cpu_omp.all_finite_bits(bits)
                if not (kernels.all_finite_bits(bits) if finite is None else finite):
                    return False
            elif kernels.range_stats(flat)[3]:
                return False
        return True

    # Numba versions of the convolution, pooling and LRN primitives (contracts in Backend).
    DOT_BLOCK_BYTES = 1 << 21  # rows of a big rounded GEMM result per block (fits in L2)

    def dot(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
            trans_a: bool = False, trans_b: bool = False, accumulate: bool = False,
            ) -> np.ndarray:
        """``Backend.dot``; a large result stored in fp16/bf16 is computed and rounded in
        row blocks that stay in cache: one pass over memory instead of three (AlexNet's
        4096-wide weight gradients at batch 16: the rounding cost 130 ms a step). The
        blocks are consecutive rows, so stochastic rounding draws the same bits; BLAS may
        sum a block in another order than the whole product (last fp32 bits)."""
        if (out is None or accumulate or not self.format.emulated
                or out.nbytes < 4 * self.DOT_BLOCK_BYTES or out.ndim != 2
                or not out.flags.c_contiguous):
            return super().dot(a, b, out, trans_a, trans_b, accumulate)
        rows = max(1, self.DOT_BLOCK_BYTES // (out.shape[1] * out.itemsize))
        for i in range(0, out.shape[0], rows):
            block = slice(i, i + rows)
            self.gemm(a[:, block] if trans_a else a[block], b, out[block], trans_a, trans_b)
            self.quantize(out[block])
        return out

    def conv_col_order(self, n: int, p: int, q: int) -> str:
        """"pqn" (unfolding from a CHWN copy: runs of (q1 - q0)*N contiguous values) except
        for long output rows of big batches, where "npq"'s Q-long runs are as fast and its
        layout changes are plain block copies (the (P*Q, N) transposes of "pqn" cost more
        with N: measured 2-4x on 32x32 maps at N = 64)."""
        return "npq" if q >= 32 and n >= 32 else "pqn"

    def _chwn_scratch(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A reused (C, H, W, N) work array (one per backend: unfolding is never nested)."""
        size = int(np.prod(shape))
        buf = getattr(self, "_conv_scratch", None)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = np.empty(max(size, 1), dtype=dtype)
            self._conv_scratch = buf
        return buf[:size]

    def im2col(
        self, x: np.ndarray, fshape: tuple[int, int], strides: tuple[int, int],
        padding: tuple[int, int], out: np.ndarray | None = None,
    ) -> np.ndarray:
        n, c, h, w = x.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        if out is None:
            out = self.empty((c * r * s, n * p * q), dtype=x.dtype)
        if self.conv_col_order(n, p, q) == "npq":
            conv_kernels.im2col_nchw(_contiguous(x), out, r, s, sh, sw, ph, pw, p, q)
            return out
        return self._im2col_chwn(x, out, fshape, strides, padding, p, q)

    def _im2col_chwn(self, x: np.ndarray, out: np.ndarray, fshape: tuple[int, int],
                     strides: tuple[int, int], padding: tuple[int, int], p: int, q: int,
                     ) -> np.ndarray:
        """Unfold ``x`` into ``out`` in "pqn" column order, through a CHWN copy; ``p``, ``q``
        are the output rows and columns to unfold."""
        n, c, h, w = x.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        xt = self._chwn_scratch((c, h, w, n), x.dtype)
        conv_kernels.nchw_to_chwn(_contiguous(x).reshape(n, c, h * w), xt.reshape(c, h * w, n))
        conv_kernels.im2col_chwn(xt, out.reshape(-1), c, h, w, n, r, s, sh, sw, ph, pw, p, q)
        return out

    def col2im(
        self, col: np.ndarray, out: np.ndarray, fshape: tuple[int, int],
        strides: tuple[int, int], padding: tuple[int, int],
    ) -> np.ndarray:
        n, _, h, w = out.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        return self._col2im(col, out, fshape, strides, padding, self.conv_col_order(n, p, q),
                            False)

    def _col2im(self, col: np.ndarray, out: np.ndarray, fshape: tuple[int, int],
                strides: tuple[int, int], padding: tuple[int, int], order: str,
                quantize: bool) -> np.ndarray:
        n, c, h, w = out.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        if order == "npq":
            conv_kernels.col2im_nchw(_contiguous(col), out, r, s, sh, sw, ph, pw, p, q)
        else:
            xt = self._chwn_scratch((c, h, w, n), out.dtype)
            conv_kernels.col2im_chwn(_contiguous(col).reshape(-1), xt, c, h, w, n, r, s, sh,
                                     sw, ph, pw, p, q)
            conv_kernels.chwn_to_nchw(xt.reshape(c, h * w, n), out.reshape(n, c, h * w))
        return self.quantize(out) if quantize else out

    def cn_to_nchw(
        self, src: np.ndarray, out: np.ndarray, bias: np.ndarray | None = None,
        relu: bool = False,
    ) -> np.ndarray:
        return self._to_nchw(src, out, bias, relu, self.conv_col_order(*_npq(out)))

    def nchw_to_cn(
        self, src: np.ndarray, out: np.ndarray, relu_y: np.ndarray | None = None,
        bias_grad: np.ndarray | None = None,
    ) -> np.ndarray:
        return self._to_cn(src, out, relu_y, bias_grad, self.conv_col_order(*_npq(src)))

    def _to_nchw(self, src: np.ndarray, out: np.ndarray, bias: np.ndarray | None, relu: bool,
                 order: str, quantize: bool = False, pool: MaxPoolArrays | None = None,
                 ) -> np.ndarray:
        """``cn_to_nchw`` in ``order``, then ``conv_fprop``'s rounding and pool; a 2x2/2 max
        pool of a result that needs no rounding runs in the same pass (measured 1.3-2x
        faster than the pool's own pass over the output)."""
        n, k, h, w = out.shape
        b = bias if bias is not None else np.empty(0, dtype=out.dtype)
        kernel = conv_kernels.cn_to_nchw_npq if order == "npq" else conv_kernels.cn_to_nchw
        src3 = (_contiguous(src).reshape(k, -1) if order == "npq"
                else _contiguous(src).reshape(k, -1, n))
        fused = pool is not None and not self.format.emulated and (
            pool.fshape == pool.strides == (2, 2) and pool.padding == (0, 0))
        if fused:
            planes = out.reshape(n * k, h, w)
            pooled, argmax = (a.reshape(n * k, h // 2, w // 2) for a in pool[:2])
        else:
            planes = pooled = np.empty((0, 0, 0), dtype=out.dtype)
            argmax = np.empty((0, 0, 0), dtype=np.int32)
        kernel(src3, out.reshape(n, k, -1), b, bias is not None, bool(relu), planes, pooled,
               argmax, fused)
        if quantize:
            self.quantize(out)
        if fused:
            self.quantize(pool.pooled)  # counts the pool's overflows, as pool_fprop would
            return out
        return self._then_pool(out, pool)

    def _to_cn(self, src: np.ndarray, out: np.ndarray, relu_y: np.ndarray | None,
               bias_grad: np.ndarray | None, order: str) -> np.ndarray:
        n, k = src.shape[:2]
        s3 = _contiguous(src).reshape(n, k, -1)
        y3 = _contiguous(relu_y).reshape(n, k, -1) if relu_y is not None else s3
        db = bias_grad if bias_grad is not None else np.empty(0, dtype=out.dtype)
        if order == "npq":
            conv_kernels.nchw_to_cn_npq(s3, out.reshape(k, -1), y3, relu_y is not None, db,
                                        bias_grad is not None)
        else:
            conv_kernels.nchw_to_cn(s3, out.reshape(k, -1, n), y3, relu_y is not None, db,
                                    bias_grad is not None)
        return out

    def _group_matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, groups: int,
                      trans_a: bool = False, trans_b: bool = False) -> None:
        ra, rb, ro = a.shape[0] // groups, b.shape[0] // groups, out.shape[0] // groups
        for g in range(groups):
            self.gemm(a[g * ra:(g + 1) * ra], b[g * rb:(g + 1) * rb], out[g * ro:(g + 1) * ro],
                      trans_a, trans_b)

    @staticmethod
    def _row_shifted(cg: int, fshape: tuple[int, int], strides: tuple[int, int]) -> bool:
        """Whether ``conv_fprop`` unfolds along the width only (see there)."""
        return strides[0] == 1 and fshape[0] > 1 and cg * fshape[1] >= 32

    def conv_fprop(
        self, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, out: np.ndarray,
        fshape: tuple[int, int], strides: tuple[int, int], padding: tuple[int, int],
        groups: int = 1, relu: bool = False, ws: dict[str, Any] | None = None,
        quantize: bool = False, pool: MaxPoolArrays | None = None,
    ) -> np.ndarray:
        """Same contract as ``Backend.conv_fprop``; at vertical stride 1 a row-shifted GEMM.

        The input is unfolded along the width only, into ``xs`` (C*S, Hpad*Q*N) with
        columns (h, q, n) over the zero-padded rows; the output rows p then read filter row
        r from the contiguous column block starting at r*Q*N, so out = sum_r W_r @ block_r
        (R accumulating GEMMs, K-dim C/groups*S): R times less unfolded data than im2col.
        """
        n, c, h = x.shape[:3]
        k = w.shape[0]
        cg, kg = c // groups, k // groups
        ws = {} if ws is None else ws
        ws["out_shape"] = out.shape
        if not self._row_shifted(cg, fshape, strides):
            return super().conv_fprop(x, w, bias, out, fshape, strides, padding, groups,
                                      relu, ws, quantize, pool)
        p, q = out.shape[2:]
        (r, s), (_, sw), (ph, _) = fshape, strides, padding
        hu, qn = h + 2 * ph, q * n
        pqn = p * qn
        xs = self._work(ws, "xs", (c * s, hu * qn), x.dtype)
        self._im2col_chwn(x, xs, (1, s), (1, sw), padding, hu, q)
        wr = self._work(ws, "wr", (r, k, cg * s), w.dtype)
        wr.reshape(r, k, cg, s)[...] = w.transpose(2, 0, 1, 3)
        cn = self._work(ws, "cn", (k, pqn), x.dtype)
        gemm = cpu_blas.gemm
        for g in range(groups):
            rows, krows = slice(g * cg * s, (g + 1) * cg * s), slice(g * kg, (g + 1) * kg)
            for i in range(r):
                gemm(wr[i, krows], xs[rows, i * qn:i * qn + pqn], cn[krows], beta=float(i > 0))
        return self._conv_out(cn, out, bias, relu, ws, quantize, pool, "pqn")

    def _conv_out(self, cn: np.ndarray, out: np.ndarray, bias: np.ndarray | None, relu: bool,
                  ws: dict[str, Any], quantize: bool, pool: MaxPoolArrays | None,
                  order: str | None = None) -> np.ndarray:
        """``Backend._conv_out`` through ``_to_nchw`` (rounding and pool fused); ``order``
        of ``cn``'s columns (default ``conv_col_order``) is kept for ``max_unpool_cn``."""
        ws["cn_order"] = order or self.conv_col_order(*_npq(out))
        return self._to_nchw(cn, out, bias, relu, ws["cn_order"], quantize, pool)

    def conv_bprop(
        self, delta: np.ndarray, w: np.ndarray, dw: np.ndarray, db: np.ndarray | None,
        dx: np.ndarray | None, fshape: tuple[int, int], strides: tuple[int, int],
        padding: tuple[int, int], groups: int = 1, relu_y: np.ndarray | None = None,
        ws: dict[str, Any] | None = None, quantize: bool = False,
    ) -> np.ndarray | None:
        assert ws is not None and "cn" in ws, "conv_bprop needs the ws of conv_fprop"
        n, k, p, q = ws["out_shape"]
        cg, kg = w.shape[1], k // groups
        if not self._row_shifted(cg, fshape, strides):
            return super().conv_bprop(delta, w, dw, db, dx, fshape, strides, padding, groups,
                                      relu_y, ws, quantize)
        (r, s), (_, sw) = fshape, strides
        qn = q * n
        pqn = p * qn
        cn, xs, wr = ws["cn"], ws["xs"], ws["wr"]
        if delta is not None:
            self._to_cn(delta, cn, relu_y, db, "pqn")
        # dW_r^T = xs block @ cn^T (12% faster than cn @ block^T in OpenBLAS, equal in oneMKL)
        dwt = self._work(ws, "dwt", (r, groups, cg * s, kg), dw.dtype)
        gemm = cpu_blas.gemm
        blocks = [(slice(g * cg * s, (g + 1) * cg * s), slice(g * kg, (g + 1) * kg))
                  for g in range(groups)]
        for g, (rows, krows) in enumerate(blocks):
            for i in range(r):
                gemm(xs[rows, i * qn:i * qn + pqn], cn[krows], dwt[i, g], trans_b=True)
        dw.reshape(groups, kg, cg, r, s)[...] = dwt.reshape(r, groups, cg, s, kg).transpose(
            1, 4, 2, 0, 3)
        if dx is None:
            return None
        # xs is no longer needed: it takes the width-unfolded gradient (columns past the
        # first block are only accumulated into, so they start at zero)
        xs[:, pqn:] = 0
        for rows, krows in blocks:
            for i in range(r):
                gemm(wr[i, krows], cn[krows], xs[rows, i * qn:i * qn + pqn], trans_a=True,
                     beta=float(i > 0))
        return self._col2im(xs, dx, (1, s), (1, sw), padding, "pqn", quantize)

    def pool_fprop(
        self, x: np.ndarray, out: np.ndarray, argmax: np.ndarray | None, op: str,
        fshape: tuple[int, int], strides: tuple[int, int], padding: tuple[int, int],
        quantize: bool = False,
    ) -> np.ndarray:
        n, c, h, w = x.shape
        p, q = out.shape[2:]
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        x3, y3 = _contiguous(x).reshape(n * c, h, w), out.reshape(n * c, p, q)
        if op == "max":
            conv_kernels.max_pool_fprop(x3, y3, argmax.reshape(n * c, p, q), r, s, sh, sw,
                                        ph, pw)
        else:
            conv_kernels.avg_pool_fprop(x3, y3, r, s, sh, sw, ph, pw)
        return self.quantize(out) if quantize else out

    def pool_bprop(
        self, delta: np.ndarray, out: np.ndarray, argmax: np.ndarray | None, op: str,
        fshape: tuple[int, int], strides: tuple[int, int], padding: tuple[int, int],
        quantize: bool = False,
    ) -> np.ndarray:
        n, c, h, w = out.shape
        p, q = delta.shape[2:]
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        d3 = _contiguous(delta).reshape(n * c, p, q)
        if op == "max":
            conv_kernels.max_pool_bprop(d3, argmax.reshape(n * c, p, q),
                                        out.reshape(n * c, h * w))
        else:
            conv_kernels.avg_pool_bprop(d3, out.reshape(n * c, h, w), r, s, sh, sw, ph, pw)
        return self.quantize(out) if quantize else out

    def max_unpool_cn(
        self, delta: np.ndarray, pool: MaxPoolArrays, conv_out: np.ndarray,
        ws: dict[str, Any], relu: bool, bias_grad: np.ndarray | None = None,
    ) -> np.ndarray:
        n, k = delta.shape[:2]
        cn = ws["cn"]
        db = bias_grad if bias_grad is not None else np.empty(0, dtype=cn.dtype)
        d3, a3, y3 = (_contiguous(a).reshape(n, k, -1)
                      for a in (delta, pool.argmax, pool.pooled))
        conv_kernels.max_unpool_cn(d3, a3, y3, bool(relu), cn, db, bias_grad is not None,
                                   ws["cn_order"] == "pqn")
        return cn

    def lrn_fprop(
        self, x: np.ndarray, out: np.ndarray, scale: np.ndarray, depth: int, alpha: float,
        beta: float, k: float,
    ) -> np.ndarray:
        n, c = x.shape[:2]
        conv_kernels.lrn_fprop(_contiguous(x).reshape(n, c, -1), out.reshape(n, c, -1),
                               scale.reshape(n, c, -1), int(depth), float(alpha),
                               float(beta), float(k))
        return out

    def lrn_bprop(
        self, x: np.ndarray, y: np.ndarray, scale: np.ndarray, delta: np.ndarray,
        out: np.ndarray, depth: int, alpha: float, beta: float, k: float,
    ) -> np.ndarray:
        n, c = x.shape[:2]
        shape = (n, c, -1)
        tmp = np.empty(x.shape, dtype=x.dtype).reshape(shape)
        conv_kernels.lrn_bprop(_contiguous(x).reshape(shape), _contiguous(y).reshape(shape),
                               _contiguous(scale).reshape(shape),
                               _contiguous(delta).reshape(shape), out.reshape(shape), tmp,
                               int(depth), float(alpha), float(beta))
        return out

    def set_threads(self, n: int) -> None:
        from threadpoolctl import threadpool_limits

        n = max(1, int(n))
        threadpool_limits(limits=n)
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    # Fused numba versions of the recurrent-cell primitives (same contract as Backend's; the
    # fp32 forward kernel's tanh/sigmoid are within 4e-7 of exact, see cpu_rnn_kernels).
    # Nearest rounding to fp16/bf16 happens inside the kernels, row by row.
    def _fused_rounding(self, *arrays: Any) -> bool:
        return (self.format.emulated and not self.stochastic_rounding
                and all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays))

    def lstm_cell_fprop(self, gates: Any, c_prev: Any, c: Any, tanh_c: Any, h: Any) -> None:
        if gates.dtype != np.float32:
            return super().lstm_cell_fprop(gates, c_prev, c, tanh_c, h)
        if self._fused_rounding(gates, c, tanh_c, h):
            u32 = np.uint32
            over, under = rnn_kernels.run(
                rnn_kernels.LSTM_FPROP_ROUNDED[self.format.name], c.size, gates, c_prev, c,
                tanh_c, h, gates.view(u32), c.view(u32), tanh_c.view(u32), h.view(u32))
            if self.flow is not None:
                self.flow.add(gates.size + 3 * c.size, int(over), int(under))
            return None
        rnn_kernels.run(rnn_kernels.lstm_fprop, c.size, gates, c_prev, c, tanh_c, h)
        for a in (gates, c, tanh_c, h):
            self.quantize(a)
        return None

    def lstm_cell_bprop(
        self, gates: Any, c_prev: Any, tanh_c: Any, dh: Any, dc: Any, dgates: Any, dc_prev: Any
    ) -> None:
        if self._fused_rounding(dgates, dc_prev):
            u32 = np.uint32
            over, under = rnn_kernels.run(
                rnn_kernels.LSTM_BPROP_ROUNDED[self.format.name], dh.size, gates, c_prev,
                tanh_c, dh, dc, dgates, dc_prev, dgates.view(u32), dc_prev.view(u32))
            if self.flow is not None:
                self.flow.add(dgates.size + dc_prev.size, int(over), int(under))
            return
        rnn_kernels.run(rnn_kernels.lstm_bprop, dh.size, gates, c_prev, tanh_c, dh, dc, dgates,
                        dc_prev)
        self.quantize(dgates)
        self.quantize(dc_prev)
