"""A non-overlapping max pool right after a convolution is computed in the convolution's
last pass (``conv_fprop(pool=...)``) and hands it its gradient unexpanded (``PooledDelta``,
``max_unpool_cn``): the kernels against naive references in both column orders, the
fusion rules, and whole models against the unfused path and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numeric_grad

from neon.backends import gen_backend
from neon.backends.backend import Backend, MaxPoolArrays
from neon.models import Model


def naive_unpool_cn(delta, argmax, conv_out, relu, order):
    """Dense gradient by loops (delta added at each argmax, ReLU mask of the conv output),
    then laid out as (K, N*P*Q) with columns (n, p, q) or (p, q, n)."""
    n, k = conv_out.shape[:2]
    dense = np.zeros(conv_out.shape)
    for i in range(n):
        for j in range(k):
            plane = dense[i, j].reshape(-1)
            for a, d in zip(argmax[i, j].reshape(-1), delta[i, j].reshape(-1)):
                plane[a] += d
    if relu:
        dense = dense * (conv_out > 0)
    if order == "npq":
        return dense.transpose(1, 0, 2, 3).reshape(k, -1)
    return dense.transpose(1, 2, 3, 0).reshape(k, -1)


# (conv output N, K, P, Q; pool window, strides, padding): a remainder row and column, a gap
# between windows, padding, and the shape the CPU lays out in (n, p, q) order
GEOMETRIES = [
    ((3, 4, 6, 6), (2, 2), (2, 2), (0, 0)),
    ((2, 3, 7, 5), (2, 2), (2, 2), (0, 0)),
    ((2, 2, 7, 8), (2, 3), (3, 3), (0, 0)),
    ((2, 3, 6, 7), (3, 2), (3, 2), (1, 1)),
    ((32, 2, 8, 32), (2, 2), (2, 2), (0, 0)),
]


@pytest.mark.parametrize("order", ["npq", "pqn"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["2x2", "remainder", "gap",
                                                      "3x2-pad", "wide"])
def test_max_unpool_cn_matches_naive(order, relu, geometry):
    shape, fshape, strides, padding = geometry
    be = gen_backend("cpu", "fp32")
    rng = np.random.default_rng(0)
    conv_out = rng.standard_normal(shape, dtype=np.float32)
    conv_out[0, 0, 0, :2] = 0.0  # ReLU's boundary: a zero maximum passes no gradient
    n, k, h, w = shape
    (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
    p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
    pooled = np.empty((n, k, p, q), np.float32)
    argmax = np.empty((n, k, p, q), np.int32)
    be.pool_fprop(conv_out, pooled, argmax, "max", fshape, strides, padding)
    delta = rng.standard_normal(pooled.shape, dtype=np.float32)
    ws = {"cn": np.full((k, n * h * w), np.nan, np.float32), "cn_order": order}
    db = np.full(k, np.nan, np.float32)
    pool = MaxPoolArrays(pooled, argmax, fshape, strides, padding)
    be.max_unpool_cn(delta, pool, conv_out, ws, relu, db)
    want = naive_unpool_cn(delta, argmax, conv_out, relu, order)
    np.testing.assert_array_equal(ws["cn"], want.astype(np.float32))
    np.testing.assert_allclose(db, want.sum(axis=1), rtol=1e-5, atol=1e-5)
    if order == be.conv_col_order(n, h, w):  # the generic reference lays out the same way
        ref = {"cn": np.empty_like(ws["cn"])}
        ref_db = np.empty_like(db)
        Backend.max_unpool_cn(be, delta, pool, conv_out, ref, relu, ref_db)
        np.testing.assert_array_equal(ref["cn"], ws["cn"])
        np.testing.assert_allclose(ref_db, db, rtol=1e-5, atol=1e-5)


def test_nan_gradient_survives_the_relu_mask_as_in_the_dense_path():
    be = gen_backend("cpu", "fp32")
    conv_out = -np.ones((1, 1, 2, 2), np.float32)  # every position masked by the ReLU
    pooled = np.empty((1, 1, 1, 1), np.float32)
    argmax = np.empty((1, 1, 1, 1), np.int32)
    be.pool_fprop(conv_out, pooled, argmax, "max", (2, 2), (2, 2), (0, 0))
    delta = np.full((1, 1, 1, 1), np.nan, np.float32)
    ws = {"cn": np.empty((1, 4), np.float32), "cn_order": "npq"}
    pool = MaxPoolArrays(pooled, argmax, (2, 2), (2, 2), (0, 0))
    be.max_unpool_cn(delta, pool, conv_out, ws, True)
    dense = np.empty((1, 1, 2, 2), np.float32)
    be.pool_bprop(delta, dense, argmax, "max", (2, 2), (2, 2), (0, 0))
    ref = be.nchw_to_cn(dense, np.empty((1, 4), np.float32), conv_out)
    np.testing.assert_array_equal(np.isnan(ws["cn"]), np.isnan(ref))
    assert np.isnan(ws["cn"]).sum() == 1


def conv_pool_model(conv: dict, pool: dict, be, size: int = 8) -> Model:
    model = Model([{"type": "conv", **conv}, {"type": "pool", **pool},
                   {"type": "affine", "nout": 3}], "sum_squared", be=be)
    return model.initialize((3, size, size), be)


@pytest.mark.parametrize("conv,pool,fused", [
    ({"nfilters": 4, "fshape": 3, "padding": 1, "activation": "relu"}, {"fshape": 2}, True),
    ({"nfilters": 4, "fshape": 3, "bias": False}, {"fshape": 2, "strides": 3}, True),
    ({"nfilters": 4, "fshape": 3, "activation": "tanh"}, {"fshape": 2}, False),
    ({"nfilters": 4, "fshape": 3}, {"fshape": 3, "strides": 2}, False),
    ({"nfilters": 4, "fshape": 3}, {"fshape": 2, "op": "avg"}, False),
])
def test_which_pools_are_fused(conv, pool, fused):
    model = conv_pool_model(conv, pool, gen_backend("cpu", "fp32"))
    assert model.layers[1].fused is fused
    assert model.layers[0].fused_pool is (model.layers[1] if fused else None)
    generic = conv_pool_model(conv, pool, Backend("fp32"))
    assert generic.layers[1].fused is False  # no fused kernels: the separate passes


def _gradients(model: Model, x, r) -> dict[str, np.ndarray]:
    """Outputs of the conv and pool layers (and argmax) and every parameter gradient."""
    be = model.be
    model.fprop(be.array(x))
    out = {"conv": model.layers[0].y.copy(), "pool": model.layers[1].y.copy(),
           "argmax": model.layers[1].argmax.copy()}
    model.bprop(be.array(r))
    return {**out, **{p.key: be.to_host(p.grad).copy() for p in model.params}}


@pytest.mark.parametrize("numerics", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("conv", [
    {"nfilters": 4, "fshape": 3, "padding": 1, "activation": "relu"},  # im2col path
    {"nfilters": 8, "fshape": 5, "padding": 2, "activation": "relu"},  # row-shifted path
    {"nfilters": 2, "fshape": 3, "padding": 1},  # 32 wide at batch 32: (n, p, q), no ReLU
], ids=["im2col", "row-shifted", "npq-linear"])
def test_fused_model_equals_the_separate_passes(numerics, conv):
    wide = "activation" not in conv
    batch, size = (32, 32) if wide else (4, 8)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    r = rng.standard_normal((batch, 3)).astype(np.float32)
    grads = {}
    for fused in (True, False):
        be = gen_backend("cpu", numerics, seed=0)
        model = conv_pool_model(conv, {"fshape": 2}, be, size)
        assert model.layers[1].fused
        assert be.conv_col_order(batch, size, size) == ("npq" if wide else "pqn")
        if not fused:
            model.layers[1].fused, model.layers[0].fused_pool = False, None
        grads[fused] = _gradients(model, x, r)
    for key, g in grads[True].items():
        if key.endswith("/b"):  # the bias sum runs in another order
            np.testing.assert_allclose(g, grads[False][key], rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, grads[False][key], err_msg=key)


def test_fused_model_gradients_match_finite_differences():
    be = gen_backend("cpu", "fp64", seed=0)
    model = conv_pool_model({"nfilters": 3, "fshape": 3, "padding": 1, "activation": "relu"},
                            {"fshape": 2}, be)
    assert model.layers[1].fused
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 8, 8))
    r = rng.standard_normal((2, 3))
    analytic = _gradients(model, x, r)

    def loss() -> float:
        return float((model.fprop(x) * r).sum())

    conv = model.layers[0]
    for p in conv.params:
        numeric = numeric_grad(loss, p.value, 1e-6)
        np.testing.assert_allclose(analytic[p.key], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
@pytest.mark.parametrize("window", [((2, 2), (2, 2)), ((3, 3), (3, 3)), ((2, 2), (3, 3))],
                         ids=["2x2", "3x3", "2x2-gap"])
@pytest.mark.parametrize("x_shape,conv", [
    ((4, 3, 9, 9), {"fshape": (3, 3), "padding": (1, 1)}),  # im2col, (p, q, n) columns
    ((4, 8, 9, 9), {"fshape": (5, 5), "padding": (2, 2)}),  # row-shifted
    ((32, 3, 32, 32), {"fshape": (3, 3), "padding": (1, 1)}),  # im2col, (n, p, q) columns
], ids=["im2col", "row-shifted", "npq"])
def test_conv_fprop_with_pool_equals_conv_then_pool(numerics, window, x_shape, conv):
    be = gen_backend("cpu", numerics, seed=0)
    rng = np.random.default_rng(3)
    n, c, h, w = x_shape
    x = be.quantize(rng.standard_normal(x_shape, dtype=np.float32))
    wt = be.quantize(rng.standard_normal((6, c, *conv["fshape"]), dtype=np.float32))
    b = be.quantize(rng.standard_normal(6, dtype=np.float32))
    fshape, strides = window
    p, q = (h - fshape[0]) // strides[0] + 1, (w - fshape[1]) // strides[1] + 1
    outs = []
    for fused in (True, False):
        y = np.empty((n, 6, h, w), np.float32)
        pooled = np.empty((n, 6, p, q), np.float32)
        argmax = np.empty((n, 6, p, q), np.int32)
        pool = MaxPoolArrays(pooled, argmax, fshape, strides, (0, 0))
        be.conv_fprop(x, wt, b, y, conv["fshape"], (1, 1), conv["padding"], relu=True,
                      ws={}, quantize=True, pool=pool if fused else None)
        if not fused:
            be.pool_fprop(y, pooled, argmax, "max", fshape, strides, (0, 0), quantize=True)
        outs.append((y, pooled, argmax))
    for a, b_ in zip(*outs):
        np.testing.assert_array_equal(a, b_)
    assert (outs[0][0] == 0).any() and (outs[0][1] > 0).any()  # the ReLU cut some values
