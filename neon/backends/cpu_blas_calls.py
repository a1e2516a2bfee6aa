"""``cblas_?gemm`` and ``cblas_?axpy`` called from numba-compiled code, by address.

A training step makes a dozen BLAS calls; through ctypes each one cost 6 us of Python
(operand checks, ``ndarray.ctypes`` objects, argument conversion), here 1 us of numba
dispatch. The function's address is an argument (``ccall``), so the code is cached.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from neon.backends.ccall import call_void as _call
from neon.backends.ccall import pointer as _pointer

__all__ = ["axpy", "gemm"]

_OPTS = {"cache": True, "nogil": True}
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@nb.njit(inline="always")
def _row_ld(rows, cols, row_stride, col_stride, item):  # pragma: no cover - compiled
    """The leading dimension of a row-major cblas operand with these shape and byte strides:
    rows contiguous and not overlapping; 0 when it is not one."""
    if ((cols <= 1 or col_stride == item)
            and (rows <= 1 or (row_stride >= cols * item and row_stride % item == 0))):
        return max(row_stride // item, cols, 1)
    return 0


@nb.njit(inline="always")
def _operand(x, trans):  # pragma: no cover - compiled
    """``(ld, trans)`` for cblas: a transposed view is a transpose of its base block; ld is 0
    when ``x`` is neither."""
    rows, cols = x.shape
    s0, s1 = x.strides
    ld = _row_ld(rows, cols, s0, s1, x.itemsize)
    if ld:
        return ld, trans
    return _row_ld(cols, rows, s1, s0, x.itemsize), not trans


@nb.njit(**_OPTS)
def gemm(fn, wide, a, b, c, trans_a, trans_b, alpha, beta):  # pragma: no cover - compiled
    """``c = alpha * op(a) @ op(b) + beta * c`` by the cblas ``?gemm`` at address ``fn``
    (64-bit integers when ``wide``) for 2-D arrays of c's dtype; False, having done nothing,
    when an operand is not a row-major block (or its transpose) or ``c`` is not one."""
    lda, op_a = _operand(a, trans_a)
    ldb, op_b = _operand(b, trans_b)
    m, n = c.shape
    ldc = _row_ld(m, n, c.strides[0], c.strides[1], c.itemsize)
    if lda == 0 or ldb == 0 or ldc == 0:
        return False
    if m == 0 or n == 0:
        return True
    k = a.shape[0] if trans_a else a.shape[1]
    real = c.dtype.type
    order = np.int32(_ROW_MAJOR)
    ta = np.int32(_TRANS if op_a else _NO_TRANS)
    tb = np.int32(_TRANS if op_b else _NO_TRANS)
    pa, pb, pc = _pointer(a.ctypes.data), _pointer(b.ctypes.data), _pointer(c.ctypes.data)
    if wide:
        _call(fn, (order, ta, tb, np.int64(m), np.int64(n), np.int64(k), real(alpha), pa,
                   np.int64(lda), pb, np.int64(ldb), real(beta), pc, np.int64(ldc)))
    else:
        _call(fn, (order, ta, tb, np.int32(m), np.int32(n), np.int32(k), real(alpha), pa,
                   np.int32(lda), pb, np.int32(ldb), real(beta), pc, np.int32(ldc)))
    return True


@nb.njit(**_OPTS)
def axpy(fn, wide, alpha, x, y):  # pragma: no cover - compiled
    """``y += alpha * x`` by the cblas ``?axpy`` at address ``fn`` for contiguous arrays of
    one size and y's dtype."""
    if y.size == 0:
        return
    real = y.dtype.type
    px, py = _pointer(x.ctypes.data), _pointer(y.ctypes.data)
    if wide:
        _call(fn, (np.int64(y.size), real(alpha), px, np.int64(1), py, np.int64(1)))
    else:
        _call(fn, (np.int32(y.size), real(alpha), px, np.int32(1), py, np.int32(1)))
