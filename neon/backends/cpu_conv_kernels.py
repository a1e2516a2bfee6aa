"""Numba kernels behind the CPU backend's convolution, pooling and LRN primitives.

Each kernel implements (part of) one ``Backend`` method whose contract (shapes, layouts,
in-place semantics) is documented in ``neon/backends/backend.py``; the generic array-module
versions there are the reference the tests compare these against. All kernels are compiled
twice by ``cpu_kernels._kernel`` (serial for small inputs, parallel over independent outputs
for large ones; the first argument's size decides) with ``cache=True``. Importing
``cpu_kernels`` also pins numba's threading layer to ``workqueue`` (OpenMP's spinning
threads starve the BLAS's on small machines), which these kernels share.

Unfolding works on a CHWN copy of the images (``nchw_to_chwn``): a filter tap's source
row is then ``(q1 - q0) * N`` contiguous values, which ``im2col``/``col2im`` move as whole
slices (3x faster than the Q-long pieces of NCHW on 16x16 maps). Unfolded columns are
ordered (p, q, n) to match.

No kernel writes the same element from two parallel iterations: ``col2im`` and the pooling
back-propagations, which scatter, are parallel over channels or (image, channel) planes and
each target is summed by one thread in a fixed order, so results do not depend on threads.
"""

from __future__ import annotations

import numba as nb

from neon.backends.cpu_kernels import _Kernel, _kernel

__all__ = [
    "avg_pool_bprop",
    "avg_pool_fprop",
    "chwn_to_nchw",
    "cn_to_nchw",
    "cn_to_nchw_npq",
    "col2im_chwn",
    "col2im_nchw",
    "im2col_chwn",
    "im2col_nchw",
    "lrn_bprop",
    "lrn_fprop",
    "max_pool_bprop",
    "max_pool_fprop",
    "max_unpool_cn",
    "nchw_to_chwn",
    "nchw_to_cn",
    "nchw_to_cn_npq",
]

_BLOCK = 16  # pixels per block of the layout transposes (keeps both sides in L1)


def _sum_kernel(fn):
    """``_kernel`` allowing floating-point reassociation, so that loops with a sum (the bias
    gradient) vectorize: the sum's order changes (not its accuracy), nothing else does."""
    return _Kernel(fn, fastmath={"reassoc"})


@nb.njit(inline="always")
def _valid_range(size, out, stride, pad, offset):  # pragma: no cover - compiled
    """Output positions ``o`` in [lo, hi) whose input ``o*stride - pad + offset`` is inside."""
    lo = 0
    first = pad - offset
    if first > 0:
        lo = (first + stride - 1) // stride
    last = size - 1 + pad - offset
    hi = 0 if last < 0 else min(out, last // stride + 1)
    return lo, max(lo, hi)


# ----------------------------------------------------------------------------- layouts
@_kernel
def nchw_to_chwn(x, xt):  # pragma: no cover - compiled
    """xt[c, i, n] = x[n, c, i] for x (N, C, HW) and xt (C, HW, N)."""
    N, C, HW = x.shape
    for c in nb.prange(C):
        for i0 in range(0, HW, _BLOCK):
            i1 = min(i0 + _BLOCK, HW)
            for n in range(N):
                for i in range(i0, i1):
                    xt[c, i, n] = x[n, c, i]


@_kernel
def chwn_to_nchw(xt, x):  # pragma: no cover - compiled
    """x[n, c, i] = xt[c, i, n] for xt (C, HW, N) and x (N, C, HW)."""
    C, HW, N = xt.shape
    for c in nb.prange(C):
        for i0 in range(0, HW, _BLOCK):
            i1 = min(i0 + _BLOCK, HW)
            for n in range(N):
                for i in range(i0, i1):
                    x[n, c, i] = xt[c, i, n]


@nb.njit(inline="always")
def _pool_2x2(planes, pooled, argmax, j):  # pragma: no cover - compiled
    """``max_pool_fprop`` of plane j with 2x2 windows at stride 2 (no padding)."""
    for p in range(pooled.shape[1]):
        for q in range(pooled.shape[2]):
            pooled[j, p, q], argmax[j, p, q] = _max_2x2(planes, j, 2 * p, 2 * q)


@_kernel
def cn_to_nchw(src, dst, bias, has_bias, relu, planes, pooled, argmax, pool):  # pragma: no cover
    """dst[n, k, i] = act(src[k, i, n] + bias[k]); act is max(., 0) (NaN kept) or none;
    with ``pool``, then the 2x2/2 max pool of each finished plane (``planes`` is dst as
    (N*K, H, W)) into pooled, argmax (N*K, P', Q') while it is in cache.

    src (K, PQ, N), dst (N, K, PQ). Blocks of 16 pixels; the loop order that streams
    best depends on N (measured: n-outer for N >= 32, pixel-outer below).
    """
    K, PQ, N = src.shape
    zero = src.dtype.type(0)
    for k in nb.prange(K):
        b = bias[k] if has_bias else zero
        for i0 in range(0, PQ, _BLOCK):
            i1 = min(i0 + _BLOCK, PQ)
            if N >= 32:
                for n in range(N):
                    for i in range(i0, i1):
                        v = src[k, i, n] + b
                        dst[n, k, i] = zero if relu and v < zero else v
            else:
                for i in range(i0, i1):
                    for n in range(N):
                        v = src[k, i, n] + b
                        dst[n, k, i] = zero if relu and v < zero else v
        if pool:
            for n in range(N):
                _pool_2x2(planes, pooled, argmax, n * K + k)


@_sum_kernel
def nchw_to_cn(src, dst, y, relu, dbias, want_dbias):  # pragma: no cover - compiled
    """dst[k, i, n] = src[n, k, i] (times y[n, k, i] > 0 with relu); dbias[k] = sum over k.

    src, y (N, K, PQ); dst (K, PQ, N). NaN/inf deltas stay NaN where y <= 0, as in numpy.
    The sum runs over dst's contiguous block afterwards (it vectorizes there).
    """
    N, K, PQ = src.shape
    zero = src.dtype.type(0)
    for k in nb.prange(K):
        for i0 in range(0, PQ, _BLOCK):
            i1 = min(i0 + _BLOCK, PQ)
            if N >= 32:
                for n in range(N):
                    for i in range(i0, i1):
                        v = src[n, k, i]
                        dst[k, i, n] = v * zero if relu and not y[n, k, i] > zero else v
            else:
                for i in range(i0, i1):
                    for n in range(N):
                        v = src[n, k, i]
                        dst[k, i, n] = v * zero if relu and not y[n, k, i] > zero else v
        if want_dbias:
            flat = dst[k].reshape(PQ * N)
            total = zero
            for i in range(PQ * N):
                total += flat[i]
            dbias[k] = total


# ----------------------------------------------------------------------------- unfolding
@_kernel
def im2col_chwn(xt, col, C, H, W, N, R, S, sh, sw, ph, pw, P, Q):  # pragma: no cover
    """col[(c*R + r)*S + s, (p*Q + q)*N + n] = xt[c, p*sh - ph + r, q*sw - pw + s, n] or 0.

    Flat arrays: xt is (C, H, W, N), col is (C*R*S, P*Q*N).
    """
    QN = Q * N
    PQN = P * QN
    step = sw * N
    for job in nb.prange(C * R * S * P):
        row = job // P
        p = job - row * P
        c = row // (R * S)
        rs = row - c * (R * S)
        r = rs // S
        s = rs - r * S
        q0, q1 = _valid_range(W, Q, sw, pw, s)
        o = row * PQN + p * QN
        h = p * sh - ph + r
        if h < 0 or h >= H:
            col[o:o + QN] = 0
            continue
        col[o:o + q0 * N] = 0
        src = ((c * H + h) * W + q0 * sw - pw + s) * N
        if sw == 1:
            n_copy = (q1 - q0) * N
            col[o + q0 * N:o + q0 * N + n_copy] = xt[src:src + n_copy]
        else:
            d = o + q0 * N
            for _ in range(q1 - q0):
                for n in range(N):
                    col[d + n] = xt[src + n]
                d += N
                src += step
        col[o + q1 * N:o + QN] = 0


@_kernel
def col2im_chwn(col, xt, C, H, W, N, R, S, sh, sw, ph, pw, P, Q):  # pragma: no cover
    """Adjoint of ``im2col_chwn``: xt (C, H, W, N) = sum of the col entries copied from it."""
    QN = Q * N
    PQN = P * QN
    HWN = H * W * N
    step = sw * N
    for c in nb.prange(C):
        xt[c * HWN:(c + 1) * HWN] = 0
        for r in range(R):
            p0, p1 = _valid_range(H, P, sh, ph, r)
            for s in range(S):
                row = (c * R + r) * S + s
                q0, q1 = _valid_range(W, Q, sw, pw, s)
                for p in range(p0, p1):
                    h = p * sh - ph + r
                    o = row * PQN + p * QN + q0 * N
                    dst = ((c * H + h) * W + q0 * sw - pw + s) * N
                    if sw == 1:
                        n_add = (q1 - q0) * N
                        xt[dst:dst + n_add] += col[o:o + n_add]
                    else:
                        for _ in range(q1 - q0):
                            for n in range(N):
                                xt[dst + n] += col[o + n]
                            o += N
                            dst += step


@_kernel
def im2col_nchw(x, col, R, S, sh, sw, ph, pw, P, Q):  # pragma: no cover - compiled
    """col[(c*R + r)*S + s, (n*P + p)*Q + q] = x[n, c, p*sh - ph + r, q*sw - pw + s] or 0."""
    N, C, H, W = x.shape
    PQ = P * Q
    for job in nb.prange(C * R * S * N):
        row = job // N
        n = job - row * N
        c = row // (R * S)
        rs = row - c * (R * S)
        r = rs // S
        s = rs - r * S
        q0, q1 = _valid_range(W, Q, sw, pw, s)
        w0 = q0 * sw - pw + s
        for p in range(P):
            h = p * sh - ph + r
            o = n * PQ + p * Q
            if h < 0 or h >= H:
                col[row, o:o + Q] = 0
                continue
            col[row, o:o + q0] = 0
            if sw == 1:
                col[row, o + q0:o + q1] = x[n, c, h, w0:w0 + q1 - q0]
            else:
                for i in range(q1 - q0):
                    col[row, o + q0 + i] = x[n, c, h, w0 + i * sw]
            col[row, o + q1:o + Q] = 0


@_kernel
def col2im_nchw(col, x, R, S, sh, sw, ph, pw, P, Q):  # pragma: no cover - compiled
    """Adjoint of ``im2col_nchw``: x (N, C, H, W) = sum of the col entries copied from it."""
    N, C, H, W = x.shape
    PQ = P * Q
    for job in nb.prange(N * C):
        n = job // C
        c = job - n * C
        x[n, c] = 0
        for r in range(R):
            p0, p1 = _valid_range(H, P, sh, ph, r)
            for s in range(S):
                row = (c * R + r) * S + s
                q0, q1 = _valid_range(W, Q, sw, pw, s)
                w0 = q0 * sw - pw + s
                for p in range(p0, p1):
                    h = p * sh - ph + r
                    o = n * PQ + p * Q
                    if sw == 1:
                        x[n, c, h, w0:w0 + q1 - q0] += col[row, o + q0:o + q1]
                    else:
                        for i in range(q1 - q0):
                            x[n, c, h, w0 + i * sw] += col[row, o + q0 + i]


@_kernel
def cn_to_nchw_npq(src, dst, bias, has_bias, relu, planes, pooled, argmax,
                   pool):  # pragma: no cover - compiled
    """dst[n, k, i] = act(src[k, n*PQ + i] + bias[k]) for src (K, N*PQ), dst (N, K, PQ);
    ``pool`` as in ``cn_to_nchw``."""
    N, K, PQ = dst.shape
    zero = src.dtype.type(0)
    for job in nb.prange(N * K):
        n = job // K
        k = job - n * K
        b = bias[k] if has_bias else zero
        o = n * PQ
        for i in range(PQ):
            v = src[k, o + i] + b
            dst[n, k, i] = zero if relu and v < zero else v
        if pool:
            _pool_2x2(planes, pooled, argmax, job)


@_sum_kernel
def nchw_to_cn_npq(src, dst, y, relu, dbias, want_dbias):  # pragma: no cover - compiled
    """dst[k, n*PQ + i] = src[n, k, i] (times y > 0 with relu); dbias[k] = row sums."""
    N, K, PQ = src.shape
    zero = src.dtype.type(0)
    for k in nb.prange(K):
        total = 0.0
        for n in range(N):
            o = n * PQ
            part = zero
            for i in range(PQ):
                v = src[n, k, i]
                v = v * zero if relu and not y[n, k, i] > zero else v
                dst[k, o + i] = v
                part += v
            total += part
        if want_dbias:
            dbias[k] = total


# ----------------------------------------------------------------------------- pooling
@nb.njit(inline="always")
def _pick(v, best, i, idx):  # pragma: no cover - compiled
    """The running (max, index) after seeing v at i: a NaN wins, ties keep the earlier one."""
    take = (v > best) | (v != v)
    return (v if take else best), (i if take else idx)


@nb.njit(inline="always")
def _max_2x2(x, j, h, w):  # pragma: no cover - compiled
    """(max, h*W + w index) of the 2x2 window at (h, w) of plane j of x (NC, H, W)."""
    i = h * x.shape[2] + w
    best, idx = x[j, h, w], i
    best, idx = _pick(x[j, h, w + 1], best, i + 1, idx)
    best, idx = _pick(x[j, h + 1, w], best, i + x.shape[2], idx)
    return _pick(x[j, h + 1, w + 1], best, i + x.shape[2] + 1, idx)


@_kernel
def max_pool_fprop(x, y, argmax, R, S, sh, sw, ph, pw):  # pragma: no cover - compiled
    """Per (n*c) plane: y = window max over the unpadded input, argmax = h*W + w of the first
    maximum in row-major window order (a NaN wins over numbers; the last NaN is kept).

    Unpadded 2x2 and 3x3 windows take unrolled branch-free paths (3.5x faster).
    """
    NC, H, W = x.shape
    _, P, Q = y.shape
    unpadded = ph == 0 and pw == 0
    for j in nb.prange(NC):
        if unpadded and R == 2 and S == 2:
            for p in range(P):
                h = p * sh
                for q in range(Q):
                    y[j, p, q], argmax[j, p, q] = _max_2x2(x, j, h, q * sw)
        elif unpadded and R == 3 and S == 3:
            for p in range(P):
                h = p * sh
                for q in range(Q):
                    w = q * sw
                    i = h * W + w
                    best, idx = x[j, h, w], i
                    best, idx = _pick(x[j, h, w + 1], best, i + 1, idx)
                    best, idx = _pick(x[j, h, w + 2], best, i + 2, idx)
                    best, idx = _pick(x[j, h + 1, w], best, i + W, idx)
                    best, idx = _pick(x[j, h + 1, w + 1], best, i + W + 1, idx)
                    best, idx = _pick(x[j, h + 1, w + 2], best, i + W + 2, idx)
                    best, idx = _pick(x[j, h + 2, w], best, i + 2 * W, idx)
                    best, idx = _pick(x[j, h + 2, w + 1], best, i + 2 * W + 1, idx)
                    best, idx = _pick(x[j, h + 2, w + 2], best, i + 2 * W + 2, idx)
                    y[j, p, q] = best
                    argmax[j, p, q] = idx
        else:
            for p in range(P):
                h0 = p * sh - ph
                hlo = max(h0, 0)
                hhi = min(h0 + R, H)
                for q in range(Q):
                    w0 = q * sw - pw
                    wlo = max(w0, 0)
                    whi = min(w0 + S, W)
                    best = x[j, hlo, wlo]
                    idx = hlo * W + wlo
                    for h in range(hlo, hhi):
                        for w in range(wlo, whi):
                            best, idx = _pick(x[j, h, w], best, h * W + w, idx)
                    y[j, p, q] = best
                    argmax[j, p, q] = idx


@_kernel
def max_pool_bprop(dy, argmax, dx):  # pragma: no cover - compiled
    """Per (n*c) plane: dx = 0, then dx.flat[argmax[p, q]] += dy[p, q] in (p, q) order."""
    NC, P, Q = dy.shape
    _, HW = dx.shape
    for j in nb.prange(NC):
        for i in range(HW):
            dx[j, i] = 0
        for p in range(P):
            for q in range(Q):
                dx[j, argmax[j, p, q]] += dy[j, p, q]


@_sum_kernel
def max_unpool_cn(dy, argmax, pooled, relu, cn, dbias, want_dbias, pqn):  # pragma: no cover
    """``Backend.max_unpool_cn`` for dy, argmax, pooled (N, K, P'Q') and cn (K, N*PQ) with
    columns (n, p, q), or (p, q, n) with ``pqn``: each row zeroed, then dy added at its
    argmax (times pooled > 0 with relu, NaN kept as in ``nchw_to_cn``); dbias = row sums.
    One pass over cn instead of the dense gradient's three (measured 2-3x faster)."""
    N, K, PQ2 = dy.shape
    PQ = cn.shape[1] // N
    zero = dy.dtype.type(0)
    for k in nb.prange(K):
        row = cn[k]
        row[:] = zero
        total = zero
        for n in range(N):
            for i in range(PQ2):
                v = dy[n, k, i]
                if relu and not pooled[n, k, i] > zero:
                    v = v * zero
                a = argmax[n, k, i]
                row[a * N + n if pqn else n * PQ + a] += v
                total += v
        if want_dbias:
            dbias[k] = total


@_kernel
def avg_pool_fprop(x, y, R, S, sh, sw, ph, pw):  # pragma: no cover - compiled
    """Per plane: y = mean over the window's positions inside the input (padding excluded)."""
    NC, H, W = x.shape
    _, P, Q = y.shape
    for j in nb.prange(NC):
        for p in range(P):
            h0 = p * sh - ph
            hlo = max(h0, 0)
            hhi = min(h0 + R, H)
            for q in range(Q):
                w0 = q * sw - pw
                wlo = max(w0, 0)
                whi = min(w0 + S, W)
                acc = x.dtype.type(0)
                for h in range(hlo, hhi):
                    for w in range(wlo, whi):
                        acc += x[j, h, w]
                y[j, p, q] = acc / ((hhi - hlo) * (whi - wlo))


@_kernel
def avg_pool_bprop(dy, dx, R, S, sh, sw, ph, pw):  # pragma: no cover - compiled
    """Adjoint of ``avg_pool_fprop``: dx = 0, then each dy spread evenly over its window."""
    NC, P, Q = dy.shape
    _, H, W = dx.shape
    for j in nb.prange(NC):
        for h in range(H):
            for w in range(W):
                dx[j, h, w] = 0
        for p in range(P):
            h0 = p * sh - ph
            hlo = max(h0, 0)
            hhi = min(h0 + R, H)
            for q in range(Q):
                w0 = q * sw - pw
                wlo = max(w0, 0)
                whi = min(w0 + S, W)
                g = dy[j, p, q] / ((hhi - hlo) * (whi - wlo))
                for h in range(hlo, hhi):
                    for w in range(wlo, whi):
                        dx[j, h, w] += g


# ----------------------------------------------------------------------------- LRN
@_kernel
def lrn_fprop(x, y, scale, depth, alpha, beta, k):  # pragma: no cover - compiled
    """scale = k + alpha/depth * sum of x**2 over the channel window; y = x * scale**-beta.

    x, y, scale are (N, C, HW); the window of channel c is [c - depth//2, c + depth//2].
    """
    N, C, HW = x.shape
    half = depth // 2
    a = x.dtype.type(alpha / depth)
    kk = x.dtype.type(k)
    nb_ = x.dtype.type(-beta)
    for job in nb.prange(N * C):
        n = job // C
        c = job - n * C
        lo = max(0, c - half)
        hi = min(C, c + half + 1)
        for i in range(HW):
            acc = x.dtype.type(0)
            for cc in range(lo, hi):
                v = x[n, cc, i]
                acc += v * v
            s = kk + a * acc
            scale[n, c, i] = s
            y[n, c, i] = x[n, c, i] * s**nb_


@_kernel
def lrn_bprop(x, y, scale, dy, dx, tmp, depth, alpha, beta):  # pragma: no cover - compiled
    """dx = dy * scale**-beta - 2*alpha*beta/depth * x * window_sum(dy * y / scale).

    ``tmp`` (same shape) receives dy * y / scale; all arrays are (N, C, HW).
    """
    N, C, HW = x.shape
    half = depth // 2
    coef = x.dtype.type(2.0 * alpha * beta / depth)
    nb_ = x.dtype.type(-beta)
    for job in nb.prange(N * C):
        n = job // C
        c = job - n * C
        for i in range(HW):
            tmp[n, c, i] = dy[n, c, i] * y[n, c, i] / scale[n, c, i]
    for job in nb.prange(N * C):
        n = job // C
        c = job - n * C
        lo = max(0, c - half)
        hi = min(C, c + half + 1)
        for i in range(HW):
            acc = x.dtype.type(0)
            for cc in range(lo, hi):
                acc += tmp[n, cc, i]
            dx[n, c, i] = dy[n, c, i] * scale[n, c, i] ** nb_ - coef * x[n, c, i] * acc
