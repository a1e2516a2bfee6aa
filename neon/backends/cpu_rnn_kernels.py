"""Fused CPU kernels (numba) for the elementwise part of recurrent cells.

One pass over the (N, H) state computes every gate activation and the new cell and hidden
state, where numpy needs a dozen passes and temporaries; the contract (what is computed,
what is rounded) is the one documented on ``Backend.lstm_cell_fprop`` /
``lstm_cell_bprop``: these kernels compute in the arrays' dtype (fp32 or fp64) and the
caller rounds the outputs to the storage format afterwards. Rows are split between threads
for large batches (see ``cpu_kernels._kernel``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from neon.backends.cpu_kernels import _kernel

__all__ = ["lstm_bprop", "lstm_fprop"]

_ONE = np.float32(1.0)  # keeps fp32 arithmetic in fp32 (and fp64 in fp64)


@nb.njit(inline="always")
def _sigmoid(x):  # pragma: no cover - compiled
    return _ONE / (_ONE + np.exp(-x))


@_kernel
def lstm_fprop(gates, c_prev, c, tanh_c, h):  # pragma: no cover - compiled
    """Activations in place in ``gates`` (N, 4H); writes c, tanh(c), h (N, H)."""
    nh = c.shape[1]
    for n in nb.prange(c.shape[0]):
        for j in range(nh):
            i = _sigmoid(gates[n, j])
            f = _sigmoid(gates[n, nh + j])
            o = _sigmoid(gates[n, 2 * nh + j])
            g = np.tanh(gates[n, 3 * nh + j])
            gates[n, j] = i
            gates[n, nh + j] = f
            gates[n, 2 * nh + j] = o
            gates[n, 3 * nh + j] = g
            cn = f * c_prev[n, j] + i * g
            tc = np.tanh(cn)
            c[n, j] = cn
            tanh_c[n, j] = tc
            h[n, j] = o * tc


@_kernel
def lstm_bprop(gates, c_prev, tanh_c, dh, dc, dgates, dc_prev):  # pragma: no cover - compiled
    """Pre-activation gradients ``dgates`` (N, 4H) and ``dc_prev`` (may alias ``dc``)."""
    nh = dh.shape[1]
    for n in nb.prange(dh.shape[0]):
        for j in range(nh):
            i = gates[n, j]
            f = gates[n, nh + j]
            o = gates[n, 2 * nh + j]
            g = gates[n, 3 * nh + j]
            tc = tanh_c[n, j]
            d = dh[n, j]
            dct = d * o * (_ONE - tc * tc) + dc[n, j]
            dgates[n, j] = dct * g * (i * (_ONE - i))
            dgates[n, nh + j] = dct * c_prev[n, j] * (f * (_ONE - f))
            dgates[n, 2 * nh + j] = d * tc * (o * (_ONE - o))
            dgates[n, 3 * nh + j] = dct * i * (_ONE - g * g)
            dc_prev[n, j] = dct * f
