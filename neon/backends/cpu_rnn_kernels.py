"""Fused CPU kernels (numba) for the elementwise part of recurrent cells.

One pass over the (N, H) state computes every gate activation and the new cell and hidden
state, where numpy needs a dozen passes and temporaries. The contract (what is computed,
what is rounded) is the one documented on ``Backend.lstm_cell_fprop`` / ``lstm_cell_bprop``;
these kernels compute in the arrays' dtype and the caller rounds the outputs to the storage
format afterwards.

numba has no vectorized ``exp``/``tanh`` without Intel's SVML (a scalar libm call costs
about 20 ns, which made a fused kernel 7x slower than numpy's SIMD loops), so the fp32
forward kernel uses a rational approximation of tanh (Eigen's, the one TensorFlow and
PyTorch's CPU kernels use; branch-free, so LLVM vectorizes it), and
``sigmoid(x) = 0.5 + 0.5 tanh(x / 2)``: within 4e-7 of the exact functions (absolute), i.e.
a few fp32 ulps. fp64 (gradient checks) goes through the exact numpy reference instead.
Kernels are compiled twice (serial and multi-threaded over rows, as in ``cpu_kernels``);
``run`` picks the threaded one for states of at least ``PARALLEL_MIN_STATE`` elements.
"""

from __future__ import annotations

import types

import numba as nb
import numpy as np

from neon.backends.cpu_kernels import _Kernel, round_bf16, round_fp16

__all__ = ["LSTM_BPROP_ROUNDED", "LSTM_FPROP_ROUNDED", "PARALLEL_MIN_STATE", "lstm_bprop",
           "lstm_fprop", "run", "tanh_approx"]

PARALLEL_MIN_STATE = 1 << 16  # N*H below this: one thread (start-up costs more than it saves)

_F = np.float32
_ONE = _F(1.0)  # typed constants keep fp32 arithmetic in fp32
_HALF = _F(0.5)
_CLAMP = _F(7.90531110763549805)  # tanh(x) rounds to +-1 in fp32 beyond this
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = (_F(v) for v in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (_F(v) for v in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))


def _kernel(fn) -> _Kernel:
    """Serial and threaded compilations of ``fn``; error_model="numpy": no ZeroDivisionError
    checks, which would stop loop vectorization."""
    return _Kernel(fn, error_model="numpy")


def run(kernel: _Kernel, state_size: int, *args):
    """Call ``kernel`` threaded when the state has ``PARALLEL_MIN_STATE`` elements or more."""
    return (kernel.parallel if state_size >= PARALLEL_MIN_STATE else kernel.serial)(*args)


@nb.njit(inline="always", error_model="numpy")
def tanh_approx(x):  # pragma: no cover - compiled
    """tanh as a 13/6 rational function of the clamped argument (|error| < 4e-7)."""
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    p = x * p
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return p / q


@nb.njit(inline="always", error_model="numpy")
def _sigmoid(x):  # pragma: no cover - compiled
    return _HALF + _HALF * tanh_approx(_HALF * x)


@nb.njit(inline="always", error_model="numpy")
def _lstm_fprop_row(gates, c_prev, c, tanh_c, h, n):  # pragma: no cover - compiled
    """Row ``n`` of ``_lstm_fprop``."""
    nh = c.shape[1]
    # 1-D row views: 2-D indexing in the inner loop stops LLVM from vectorizing it
    gi, gf = gates[n, :nh], gates[n, nh: 2 * nh]
    go, gg = gates[n, 2 * nh: 3 * nh], gates[n, 3 * nh:]
    cp, cn, tc, hn = c_prev[n], c[n], tanh_c[n], h[n]
    for j in range(nh):
        i = _sigmoid(gi[j])
        f = _sigmoid(gf[j])
        o = _sigmoid(go[j])
        g = tanh_approx(gg[j])
        gi[j] = i
        gf[j] = f
        go[j] = o
        gg[j] = g
        cj = f * cp[j] + i * g
        t = tanh_approx(cj)
        cn[j] = cj
        tc[j] = t
        hn[j] = o * t


@nb.njit(inline="always", error_model="numpy")
def _lstm_bprop_row(gates, c_prev, tanh_c, dh, dc, dgates, dc_prev, n):  # pragma: no cover
    """Row ``n`` of ``_lstm_bprop``."""
    nh = dh.shape[1]
    gi, gf = gates[n, :nh], gates[n, nh: 2 * nh]
    go, gg = gates[n, 2 * nh: 3 * nh], gates[n, 3 * nh:]
    di, df = dgates[n, :nh], dgates[n, nh: 2 * nh]
    do, dg = dgates[n, 2 * nh: 3 * nh], dgates[n, 3 * nh:]
    cp, tcn, dhn, dcn, dcp = c_prev[n], tanh_c[n], dh[n], dc[n], dc_prev[n]
    for j in range(nh):
        i = gi[j]
        f = gf[j]
        o = go[j]
        g = gg[j]
        tc = tcn[j]
        d = dhn[j]
        dct = d * o * (_ONE - tc * tc) + dcn[j]
        di[j] = dct * g * (i * (_ONE - i))
        df[j] = dct * cp[j] * (f * (_ONE - f))
        do[j] = d * tc * (o * (_ONE - o))
        dg[j] = dct * i * (_ONE - g * g)
        dcp[j] = dct * f


def _lstm_fprop(gates, c_prev, c, tanh_c, h):  # pragma: no cover - compiled
    """Activations in place in ``gates`` (N, 4H); writes c, tanh(c), h (N, H)."""
    for n in nb.prange(c.shape[0]):
        _lstm_fprop_row(gates, c_prev, c, tanh_c, h, n)


def _lstm_bprop(gates, c_prev, tanh_c, dh, dc, dgates, dc_prev):  # pragma: no cover - compiled
    """Pre-activation gradients ``dgates`` (N, 4H) and ``dc_prev`` (may alias ``dc``)."""
    for n in nb.prange(dh.shape[0]):
        _lstm_bprop_row(gates, c_prev, tanh_c, dh, dc, dgates, dc_prev, n)


_ROUND = round_fp16.serial  # replaced per storage format in the compiled copies below


def _lstm_fprop_rounded(gates, c_prev, c, tanh_c, h, gbits, cbits, tbits, hbits
                        ):  # pragma: no cover - compiled
    """``_lstm_fprop`` plus nearest rounding of each output row to the storage format
    (``*bits``: uint32 views of gates, c, tanh_c, h), while the row is in cache: the values
    equal those of the kernel followed by ``Backend.quantize`` of each output.
    Returns (overflow, underflow) counts."""
    over = 0
    under = 0
    for n in nb.prange(c.shape[0]):
        _lstm_fprop_row(gates, c_prev, c, tanh_c, h, n)
        o1, u1 = _ROUND(gbits[n])
        o2, u2 = _ROUND(cbits[n])
        o3, u3 = _ROUND(tbits[n])
        o4, u4 = _ROUND(hbits[n])
        over += o1 + o2 + o3 + o4
        under += u1 + u2 + u3 + u4
    return over, under


def _lstm_bprop_rounded(gates, c_prev, tanh_c, dh, dc, dgates, dc_prev, dgbits, dcbits
                        ):  # pragma: no cover - compiled
    """``_lstm_bprop`` plus nearest rounding of the dgates and dc_prev rows (uint32 views
    ``dgbits``, ``dcbits``); returns (overflow, underflow) counts."""
    over = 0
    under = 0
    for n in nb.prange(dh.shape[0]):
        _lstm_bprop_row(gates, c_prev, tanh_c, dh, dc, dgates, dc_prev, n)
        o1, u1 = _ROUND(dgbits[n])
        o2, u2 = _ROUND(dcbits[n])
        over += o1 + o2
        under += u1 + u2
    return over, under


def _with_rounder(fn, fmt: str, rounder):
    """A copy of ``fn`` whose ``_ROUND`` is ``rounder`` (one compiled kernel per format)."""
    copy = types.FunctionType(fn.__code__, {**fn.__globals__, "_ROUND": rounder},
                              f"{fn.__name__}_{fmt}", fn.__defaults__, fn.__closure__)
    copy.__qualname__ = f"{fn.__qualname__}_{fmt}"
    return copy


lstm_fprop = _kernel(_lstm_fprop)
lstm_bprop = _kernel(_lstm_bprop)
# fused nearest rounding to fp16 / bf16 storage (stochastic rounding uses Backend.quantize)
LSTM_FPROP_ROUNDED = {fmt: _kernel(_with_rounder(_lstm_fprop_rounded, fmt, r.serial))
                      for fmt, r in (("fp16", round_fp16), ("bf16", round_bf16))}
LSTM_BPROP_ROUNDED = {fmt: _kernel(_with_rounder(_lstm_bprop_rounded, fmt, r.serial))
                      for fmt, r in (("fp16", round_fp16), ("bf16", round_bf16))}
