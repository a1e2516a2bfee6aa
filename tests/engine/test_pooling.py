"""Max and average pooling: forward against naive loops, gradients by central differences,
the backend contract (argmax included) and configuration errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_layer

from neon.backends import gen_backend
from neon.backends.backend import Backend
from neon.errors import ConfigError
from neon.layers import build_layer
from neon.layers.pooling import AvgPool, MaxPool, Pool


def naive_pool(x, op, fshape, strides, padding):
    """Loops over outputs; windows clipped to the input (padding neither max nor counted)."""
    n, c, h, w = x.shape
    (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
    p = (h + 2 * ph - r) // sh + 1
    q = (w + 2 * pw - s) // sw + 1
    y = np.zeros((n, c, p, q))
    for i in range(n):
        for j in range(c):
            for a in range(p):
                for b in range(q):
                    h0, w0 = a * sh - ph, b * sw - pw
                    win = x[i, j, max(h0, 0):min(h0 + r, h), max(w0, 0):min(w0 + s, w)]
                    y[i, j, a, b] = win.max() if op == "max" else win.mean()
    return y


CASES = [
    ((2, 6, 6), {"fshape": 2}),                                       # default stride = fshape
    ((3, 7, 7), {"fshape": 3, "strides": 2}),                         # overlapping (AlexNet)
    ((2, 7, 6), {"fshape": [3, 2], "strides": [2, 1], "padding": [1, 1]}),
    ((1, 5, 5), {"fshape": 3, "strides": 1, "padding": 2}),
]
IDS = ["2x2", "3x3s2-overlap", "nonsquare-pad", "pad2"]


@pytest.fixture(params=["fp64", "fp32"])
def be(request, backend_name):
    return gen_backend(backend_name, request.param, seed=0)


def distinct_input(shape, seed=0):
    """Values 0.1 apart in random order: no ties, and the fp32 check's +-1e-2 steps never
    change which element is a window's maximum."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) * 0.1 - n * 0.05).reshape(shape)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("in_shape,kw", CASES, ids=IDS)
def test_forward_matches_naive_loops(be, op, in_shape, kw):
    layer = Pool(op=op, **kw)
    layer.configure(in_shape)
    layer.allocate(be)
    x = distinct_input((3, *in_shape))
    y = be.to_host(layer.fprop(be.array(x))).astype(np.float64)
    ref = naive_pool(be.to_host(be.array(x)).astype(np.float64), op, layer.fshape,
                     layer.strides, layer.padding)
    assert y.shape == ref.shape == (3, *layer.out_shape)
    tol = 1e-6 if be.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("in_shape,kw", CASES, ids=IDS)
def test_gradients(be, op, in_shape, kw):
    check_layer(Pool(op=op, **kw), be, in_shape, batch=2, x=distinct_input((2, *in_shape), 1))


@pytest.mark.parametrize("op", ["max", "avg"])
def test_backend_contract_against_generic(backend_name, op):
    """CPU numba kernels (or the GPU's) equal the generic array-module reference, argmax too."""
    be = gen_backend(backend_name, "fp32")
    rng = np.random.default_rng(5)
    for shape, f, st, pad in [((2, 3, 13, 13), (3, 3), (2, 2), (0, 0)),
                              ((2, 2, 9, 8), (3, 2), (2, 3), (1, 1)),
                              ((64, 16, 32, 32), (2, 2), (2, 2), (0, 0))]:
        x = be.array(rng.standard_normal(shape))
        p = (shape[2] + 2 * pad[0] - f[0]) // st[0] + 1
        q = (shape[3] + 2 * pad[1] - f[1]) // st[1] + 1
        outs = []
        for impl in (type(be), Backend):
            y = be.empty((*shape[:2], p, q))
            am = be.empty(y.shape, dtype=np.int32) if op == "max" else None
            impl.pool_fprop(be, x, y, am, op, f, st, pad)
            d = be.array(np.arange(y.size).reshape(y.shape) % 7 - 3.0)
            dx = impl.pool_bprop(be, d, be.empty(shape), am, op, f, st, pad)
            outs.append([be.to_host(a) for a in (y, dx) + ((am,) if am is not None else ())])
        for a, b in zip(*outs):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_max_pool_bprop_sums_overlapping_windows(backend_name):
    be = gen_backend(backend_name, "fp32")
    layer = MaxPool(fshape=3, strides=1)
    layer.configure((1, 4, 4))
    layer.allocate(be)
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 5.0  # inside all four 3x3 windows
    y = layer.fprop(be.array(x))
    assert (be.to_host(y) == 5.0).all()
    dx = be.to_host(layer.bprop(be.array(np.ones((1, 1, 2, 2)))))
    assert dx[0, 0, 1, 2] == 4.0 and dx.sum() == 4.0


def test_aliases_and_defaults():
    mp = build_layer({"type": "max_pool", "fshape": 3, "strides": 2})
    ap = build_layer({"type": "avg_pool", "fshape": [2, 3]})
    assert isinstance(mp, MaxPool) and mp.op == "max" and mp.strides == (2, 2)
    assert isinstance(ap, AvgPool) and ap.op == "avg" and ap.strides == (2, 3)
    assert build_layer({"type": "pool", "op": "avg"}).fshape == (2, 2)
    assert AvgPool(2).configure((3, 55, 55)) == (3, 27, 27)
    assert MaxPool(3, strides=2).configure((64, 55, 55)) == (64, 27, 27)


@pytest.mark.parametrize("spec,match", [
    ({"type": "pool", "op": "min"}, "must be one of"),
    ({"type": "pool", "fshape": 2, "padding": 2}, "smaller than the window"),
    ({"type": "max_pool", "op": "avg"}, "unknown key"),
])
def test_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_layer(spec)


@pytest.mark.parametrize("f,st,pad", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (0, 0)),
                                      ((3, 3), (1, 1), (1, 1)), ((2, 3), (1, 2), (0, 1))])
def test_max_pool_ties_and_nan_follow_the_contract(backend_name, f, st, pad):
    """Ties pick the first position in row-major window order; a NaN in a window makes the
    output NaN and argmax point at the window's last NaN (the fast paths included)."""
    be = gen_backend(backend_name, "fp32")
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (2, 3, 9, 8)).astype(np.float64)  # many ties
    x[rng.random(x.shape) < 0.05] = np.nan
    p = (9 + 2 * pad[0] - f[0]) // st[0] + 1
    q = (8 + 2 * pad[1] - f[1]) // st[1] + 1
    xd = be.array(x)
    outs = []
    for impl in (type(be), Backend):
        y, am = be.empty((2, 3, p, q)), be.empty((2, 3, p, q), dtype=np.int32)
        impl.pool_fprop(be, xd, y, am, "max", f, st, pad)
        outs.append((be.to_host(y), be.to_host(am)))
    (y1, a1), (y2, a2) = outs
    np.testing.assert_array_equal(y1, y2)  # NaN positions included
    np.testing.assert_array_equal(a1, a2)
    assert np.isnan(y1).any()
    flat = x.reshape(2, 3, -1)
    picked = np.take_along_axis(flat, a1.reshape(2, 3, -1), axis=2).reshape(y1.shape)
    np.testing.assert_array_equal(picked, y1)


@pytest.mark.parametrize("h,w", [(8, 10), (9, 8)])  # tiled by 2x2 windows, and not
def test_max_pool_bprop_matches_the_generic_scatter(backend_name, h, w):
    be = gen_backend(backend_name, "fp32")
    p, q = h // 2, w // 2
    xd = be.array(distinct_input((2, 3, h, w)))
    y, am = be.empty((2, 3, p, q)), be.empty((2, 3, p, q), dtype=np.int32)
    be.pool_fprop(xd, y, am, "max", (2, 2), (2, 2), (0, 0))
    dy = np.random.default_rng(1).standard_normal((2, 3, p, q))
    outs = []
    for impl in (type(be), Backend):
        dx = be.array(np.full((2, 3, h, w), 7.0))  # every element must be written
        impl.pool_bprop(be, be.array(dy), dx, am, "max", (2, 2), (2, 2), (0, 0))
        outs.append(be.to_host(dx))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert (outs[0] != 0).sum() == 2 * 3 * p * q  # one nonzero per window, nothing left at 7
