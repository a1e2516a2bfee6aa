"""Numba kernels behind the CPU backend's convolution, pooling and LRN primitives.

Each kernel implements one ``Backend`` method whose contract (shapes, layouts, in-place
semantics) is documented in ``neon/backends/backend.py``; the generic array-module versions
there are the reference the tests compare these against. All kernels are compiled twice by
``cpu_kernels._kernel`` (serial for small inputs, parallel over independent output planes
for large ones; the first argument's size decides) with ``cache=True``. Importing
``cpu_kernels`` also pins numba's threading layer to ``workqueue`` (OpenMP's spinning
threads starve OpenBLAS on small machines), which these kernels share.

No kernel writes the same element from two parallel iterations: ``col2im`` and the pooling
back-propagations, which scatter, are parallel over (image, channel) planes and each plane
is summed by one thread in a fixed order, so results do not depend on the thread count.
"""

from __future__ import annotations

import numba as nb

from neon.backends.cpu_kernels import _kernel

__all__ = [
    "avg_pool_bprop",
    "avg_pool_fprop",
    "cn_to_nchw",
    "col2im",
    "im2col",
    "lrn_bprop",
    "lrn_fprop",
    "max_pool_bprop",
    "max_pool_fprop",
    "nchw_to_cn",
]


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


@_kernel
def im2col(x, col, R, S, sh, sw, ph, pw, P, Q):  # pragma: no cover - compiled
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
        base = n * PQ
        for p in range(P):
            h = p * sh - ph + r
            o = base + p * Q
            if h < 0 or h >= H:
                for q in range(Q):
                    col[row, o + q] = 0
                continue
            for q in range(q0):
                col[row, o + q] = 0
            if sw == 1:
                for q in range(q1 - q0):
                    col[row, o + q0 + q] = x[n, c, h, w0 + q]
            else:
                for q in range(q1 - q0):
                    col[row, o + q0 + q] = x[n, c, h, w0 + q * sw]
            for q in range(q1, Q):
                col[row, o + q] = 0


@_kernel
def col2im(col, x, R, S, sh, sw, ph, pw, P, Q):  # pragma: no cover - compiled
    """x[n, c, h, w] = sum of the ``col`` entries that ``im2col`` copies from it (adjoint)."""
    N, C, H, W = x.shape
    PQ = P * Q
    for job in nb.prange(N * C):
        n = job // C
        c = job - n * C
        for h in range(H):
            for w in range(W):
                x[n, c, h, w] = 0
        for r in range(R):
            p0, p1 = _valid_range(H, P, sh, ph, r)
            for s in range(S):
                row = (c * R + r) * S + s
                q0, q1 = _valid_range(W, Q, sw, pw, s)
                w0 = q0 * sw - pw + s
                for p in range(p0, p1):
                    h = p * sh - ph + r
                    o = n * PQ + p * Q + q0
                    if sw == 1:
                        for q in range(q1 - q0):
                            x[n, c, h, w0 + q] += col[row, o + q]
                    else:
                        for q in range(q1 - q0):
                            x[n, c, h, w0 + q * sw] += col[row, o + q]


@_kernel
def cn_to_nchw(src, dst, bias, has_bias, relu):  # pragma: no cover - compiled
    """dst[n, k, i] = act(src[k, n*PQ + i] + bias[k]); act is max(., 0) (NaN kept) or none."""
    N, K, PQ = dst.shape
    for job in nb.prange(N * K):
        n = job // K
        k = job - n * K
        b = bias[k] if has_bias else src.dtype.type(0)
        o = n * PQ
        if relu:
            for i in range(PQ):
                v = src[k, o + i] + b
                dst[n, k, i] = 0 if v < 0 else v
        else:
            for i in range(PQ):
                dst[n, k, i] = src[k, o + i] + b


@_kernel
def nchw_to_cn(src, dst, y, relu, dbias, want_dbias):  # pragma: no cover - compiled
    """dst[k, n*PQ + i] = src[n, k, i] (times y[n, k, i] > 0 with relu); dbias = row sums."""
    N, K, PQ = src.shape
    zero = src.dtype.type(0)
    for k in nb.prange(K):
        total = 0.0
        for n in range(N):
            o = n * PQ
            part = zero
            if relu:
                for i in range(PQ):
                    v = src[n, k, i]
                    if not y[n, k, i] > 0:
                        v = v * zero  # 0, but NaN/inf deltas stay NaN as in numpy
                    dst[k, o + i] = v
                    part += v
            else:
                for i in range(PQ):
                    v = src[n, k, i]
                    dst[k, o + i] = v
                    part += v
            total += part
        if want_dbias:
            dbias[k] = total


@_kernel
def max_pool_fprop(x, y, argmax, R, S, sh, sw, ph, pw):  # pragma: no cover - compiled
    """Per (n*c) plane: y = window max over the unpadded input, argmax = h*W + w (first max)."""
    NC, H, W = x.shape
    _, P, Q = y.shape
    for j in nb.prange(NC):
        for p in range(P):
            h0 = p * sh - ph
            h1 = min(h0 + R, H)
            h0 = max(h0, 0)
            for q in range(Q):
                w0 = q * sw - pw
                w1 = min(w0 + S, W)
                w0 = max(w0, 0)
                best = x[j, h0, w0]
                idx = h0 * W + w0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        v = x[j, h, w]
                        if v > best or (v != v and best == best):
                            best = v
                            idx = h * W + w
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


@_kernel
def avg_pool_fprop(x, y, R, S, sh, sw, ph, pw):  # pragma: no cover - compiled
    """Per plane: y = mean over the window's positions inside the input (padding excluded)."""
    NC, H, W = x.shape
    _, P, Q = y.shape
    for j in nb.prange(NC):
        for p in range(P):
            h0 = p * sh - ph
            h1 = min(h0 + R, H)
            h0 = max(h0, 0)
            for q in range(Q):
                w0 = q * sw - pw
                w1 = min(w0 + S, W)
                w0 = max(w0, 0)
                acc = x.dtype.type(0)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        acc += x[j, h, w]
                y[j, p, q] = acc / ((h1 - h0) * (w1 - w0))


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
            h1 = min(h0 + R, H)
            h0 = max(h0, 0)
            for q in range(Q):
                w0 = q * sw - pw
                w1 = min(w0 + S, W)
                w0 = max(w0, 0)
                g = dy[j, p, q] / ((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        dx[j, h, w] += g


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
