"""Convolution: forward against a naive loop reference, gradients by central differences,
the im2col/col2im backend contract, fp16 storage against fp32, flatten and config errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_layer

from neon.backends import cpu_blas, gen_backend
from neon.backends.backend import Backend
from neon.errors import ConfigError
from neon.layers import LAYERS, ActivationLayer, BatchNorm, build_layer
from neon.layers.convolution import Conv
from neon.layers.flatten import Flatten
from neon.models import Model


def naive_conv(x, w, b, strides, padding, groups):
    """Direct loops over outputs: y[n, k, p, q] = sum_{c,r,s} w[k, c, r, s] * xpad[...]."""
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    (sh, sw), (ph, pw) = strides, padding
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    p = (h + 2 * ph - r) // sh + 1
    q = (wd + 2 * pw - s) // sw + 1
    kg = k // groups
    y = np.zeros((n, k, p, q))
    for i in range(n):
        for f in range(k):
            g = f // kg
            for a in range(p):
                for bb in range(q):
                    patch = xp[i, g * cg:(g + 1) * cg, a * sh:a * sh + r, bb * sw:bb * sw + s]
                    y[i, f, a, bb] = (patch * w[f]).sum() + (b[f] if b is not None else 0.0)
    return y


# (in_shape, layer keywords): stride, padding, groups, non-square filters and inputs
CASES = [
    ((3, 6, 5), {"nfilters": 4, "fshape": 3}),
    ((2, 7, 6), {"nfilters": 3, "fshape": [3, 2], "strides": [2, 1], "padding": [1, 0]}),
    ((4, 6, 6), {"nfilters": 6, "fshape": 3, "strides": 2, "padding": 1, "groups": 2}),
    ((2, 5, 7), {"nfilters": 2, "fshape": [1, 3], "padding": [0, 2], "bias": False}),
    ((3, 5, 5), {"nfilters": 4, "fshape": 5, "padding": "same"}),
    ((6, 4, 4), {"nfilters": 3, "fshape": 1, "groups": 3}),
]
IDS = ["3x3", "nonsquare-stride-pad", "groups-stride2", "1x3-nobias", "same", "1x1-groups3"]


@pytest.fixture(params=["fp64", "fp32"])
def be(request, backend_name):
    return gen_backend(backend_name, request.param, seed=0)


@pytest.mark.parametrize("in_shape,kw", CASES, ids=IDS)
def test_forward_matches_naive_loops(be, in_shape, kw):
    layer = Conv(**kw)
    layer.configure(in_shape)
    layer.allocate(be)
    if layer.b is not None:
        layer.b.value[...] = be.array(np.linspace(-1, 1, layer.nfilters))
    x = np.random.default_rng(0).standard_normal((3, *in_shape))
    y = be.to_host(layer.fprop(be.array(x))).astype(np.float64)
    w = be.to_host(layer.W.value).astype(np.float64)
    b = be.to_host(layer.b.value).astype(np.float64) if layer.b is not None else None
    ref = naive_conv(be.to_host(be.array(x)).astype(np.float64), w, b, layer.strides,
                     layer.padding, layer.groups)
    assert y.shape == ref.shape == (3, *layer.out_shape)
    tol = 1e-12 if be.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("in_shape,kw", CASES, ids=IDS)
def test_gradients(be, in_shape, kw):
    check_layer(Conv(**kw, init={"type": "gaussian", "scale": 0.5}), be, in_shape, batch=2)


@pytest.mark.parametrize("act", ["relu", "tanh", "logistic"])
def test_fused_and_plain_activation_gradients(backend_name, act):
    be = gen_backend(backend_name, "fp64")
    layer = Conv(nfilters=3, fshape=3, padding=1, strides=2, activation=act,
                 init={"type": "gaussian", "scale": 0.5}, bias=0.1)
    check_layer(layer, be, (2, 5, 6), batch=2, seed=4)


def test_activation_matches_separate_layer(backend_name):
    be = gen_backend(backend_name, "fp64")
    x = be.array(np.random.default_rng(1).standard_normal((2, 3, 6, 6)))
    fused = Conv(nfilters=4, fshape=3, activation="relu")
    plain = Conv(nfilters=4, fshape=3)
    for layer in (fused, plain):
        layer.configure((3, 6, 6))
        layer.allocate(be)
    plain.W.value[...] = fused.W.value
    relu = ActivationLayer("relu")
    relu.configure(plain.out_shape)
    relu.allocate(be)
    np.testing.assert_array_equal(be.to_host(fused.fprop(x)),
                                  be.to_host(relu.fprop(plain.fprop(x))))


@pytest.mark.parametrize("dtype", ["fp64", "fp32"])
def test_im2col_col2im_contract(backend_name, dtype):
    """The backend's primitives equal the generic reference and are adjoint to each other."""
    be = gen_backend(backend_name, dtype)
    rng = np.random.default_rng(0)
    for shape, f, st, pad in [((2, 3, 7, 6), (3, 2), (2, 1), (1, 0)),
                              ((3, 2, 9, 9), (3, 3), (2, 3), (2, 1)),
                              ((1, 1, 4, 4), (5, 5), (1, 1), (2, 2)),
                              ((2, 2, 5, 5), (1, 1), (3, 3), (0, 0)),
                              ((32, 2, 3, 34), (3, 3), (1, 1), (1, 1)),
                              ((33, 1, 4, 70), (2, 3), (2, 2), (0, 1))]:
        x = be.array(rng.standard_normal(shape))
        col = be.im2col(x, f, st, pad)
        ref = Backend.im2col(be, x, f, st, pad)
        np.testing.assert_array_equal(be.to_host(col), be.to_host(ref))
        g = be.array(rng.standard_normal(col.shape))
        dx = be.col2im(g, be.empty(shape), f, st, pad)
        dref = Backend.col2im(be, g, be.empty(shape), f, st, pad)
        np.testing.assert_allclose(be.to_host(dx), be.to_host(dref), rtol=1e-5, atol=1e-5)
        lhs = float((be.to_host(col).astype(np.float64) * be.to_host(g)).sum())
        rhs = float((be.to_host(x).astype(np.float64) * be.to_host(dx)).sum())
        assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (32, 3, 2, 32)], ids=["small", "wide"])
def test_layout_primitives_contract(backend_name, relu, shape):
    be = gen_backend(backend_name, "fp32")
    rng = np.random.default_rng(2)
    n, k, p, q = shape
    src = be.array(rng.standard_normal((k, n * p * q)))
    bias = be.array(rng.standard_normal(k))
    order = be.conv_col_order(n, p, q)
    assert order in ("npq", "pqn")
    out = be.cn_to_nchw(src, be.empty((n, k, p, q)), bias, relu)
    host = be.to_host(src)
    logical = (host.reshape(k, n, p, q) if order == "npq"
               else host.reshape(k, p, q, n).transpose(0, 3, 1, 2))  # (k, n, p, q)
    ref = logical.transpose(1, 0, 2, 3) + be.to_host(bias)[:, None, None]
    ref = np.maximum(ref, 0) if relu else ref
    np.testing.assert_allclose(be.to_host(out), ref, rtol=1e-6)
    delta = be.array(rng.standard_normal((n, k, p, q)))
    db = be.empty((k,))
    cn = be.nchw_to_cn(delta, be.empty((k, n * p * q)), out if relu else None, db)
    d = be.to_host(delta) * ((be.to_host(out) > 0) if relu else 1)
    back = be.cn_to_nchw(cn, be.empty((n, k, p, q)))  # the inverse layout change
    np.testing.assert_allclose(be.to_host(back), d, rtol=1e-6)
    np.testing.assert_allclose(be.to_host(db), d.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)


def test_fp16_storage_within_rounding_bound(backend_name):
    """fp16 storage vs fp32: inputs and weights are rounded once (relative error at most
    u = 2**-11 each), products and sums run in fp32 (error ~1e-7 relative, negligible) and
    the output is rounded once more. First order, |y16 - y32| <= u*|y32| + 2u * sum|w||x|
    elementwise; we allow 1.5x that for second-order terms and fp32 accumulation."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8, 9, 9))
    layers, outs = {}, {}
    for fmt in ("fp32", "fp16"):
        be = gen_backend(backend_name, fmt, seed=1)
        layer = Conv(nfilters=16, fshape=3, padding=1, strides=1, activation="relu")
        layer.configure((8, 9, 9))
        layer.allocate(be)
        layers[fmt] = (be, layer)
    be32, l32 = layers["fp32"]
    be16, l16 = layers["fp16"]
    l16.W.value[...] = be16.array(be32.to_host(l32.W.value))
    outs["fp32"] = be32.to_host(l32.fprop(be32.array(x))).astype(np.float64)
    outs["fp16"] = be16.to_host(l16.fprop(be16.array(x))).astype(np.float64)
    y16 = outs["fp16"]
    assert np.array_equal(y16.astype(np.float16).astype(np.float64), y16)  # really fp16 values
    u = 2.0**-11
    absw = np.abs(be32.to_host(l32.W.value).astype(np.float64))
    mag = naive_conv(np.abs(x), absw, None, (1, 1), (1, 1), 1)
    bound = 1.5 * (u * np.abs(outs["fp32"]) + 2 * u * mag) + 1e-30
    err = np.abs(y16 - outs["fp32"])
    assert (err <= bound).all(), f"worst excess {np.max(err / bound):.2f}x the bound"
    assert err.max() > 0  # the comparison is not vacuous


def test_batch_norm_expansion_and_spatial_gradient(backend_name):
    layers = Conv(nfilters=4, fshape=3, activation="relu", batch_norm=True, name="c").expand()
    assert [type(layer).__name__ for layer in layers] == ["Conv", "BatchNorm",
                                                          "ActivationLayer"]
    assert layers[0].bias is False and layers[0].name == "c"
    assert LAYERS.get("spatial_batch_norm") is BatchNorm
    be = gen_backend(backend_name, "fp64")
    check_layer(BatchNorm(), be, (3, 4, 5), batch=4, rtol=1e-5)


def test_conv_model_trains_a_step(backend_name):
    """conv -> bn -> pool -> flatten -> affine learns a tiny synthetic problem."""
    from neon.datasets import load_dataset
    from neon.optimizers import build_optimizer

    be = gen_backend(backend_name, "fp32", seed=0)
    data = load_dataset({"name": "synthetic", "shape": [2, 8, 8], "nclass": 3, "ntrain": 96,
                         "nvalid": 32, "batch_size": 32})
    model = Model([{"type": "conv", "nfilters": 8, "fshape": 3, "padding": 1,
                    "activation": "relu", "batch_norm": True},
                   {"type": "pool", "fshape": 2},
                   {"type": "flatten"},
                   {"type": "affine", "nout": 3, "activation": "softmax"}], be=be)
    hist = model.fit(data.train, build_optimizer({"type": "momentum", "learning_rate": 0.05}),
                     epochs=4)
    losses = hist.metric("train_loss")
    assert losses[-1] < losses[0]
    assert "conv" in model.summary()


def test_flatten_roundtrip(backend_name):
    be = gen_backend(backend_name, "fp32")
    layer = build_layer({"type": "flatten"})
    assert isinstance(layer, Flatten)
    assert layer.configure((3, 4, 5)) == (60,)
    layer.allocate(be)
    x = be.array(np.arange(2 * 60).reshape(2, 3, 4, 5))
    y = layer.fprop(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(be.to_host(layer.bprop(y)), be.to_host(x))


@pytest.mark.parametrize("spec,match", [
    ({"type": "conv", "nfilters": 4, "groups": 3}, "groups"),
    ({"type": "conv", "nfilters": 4, "fshape": 2, "padding": "same"}, "same"),
    ({"type": "conv", "nfilters": 4, "fshape": [1, 2, 3]}, "fshape"),
    ({"type": "conv", "nfilters": 0}, "nfilters"),
    ({"type": "conv", "nfilter": 4}, "did you mean 'nfilters'"),
])
def test_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_layer(spec)


def test_shape_errors():
    with pytest.raises(ValueError, match="does not fit"):
        Conv(nfilters=2, fshape=5).configure((1, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        Conv(nfilters=4, groups=2).configure((3, 8, 8))
    with pytest.raises(ValueError, match="channels, height, width"):
        Conv(nfilters=4).configure((64,))


@pytest.mark.parametrize("order", ["npq", "pqn"])
def test_generic_primitives_in_both_column_orders(order):
    """The generic array-module primitives (what a backend inherits) in either column order
    give the naive convolution and correct gradients through the layer."""
    be = gen_backend("cpu", "fp64")
    be.conv_col_order = lambda n, p, q: order
    for name in ("im2col", "col2im", "cn_to_nchw", "nchw_to_cn", "conv_fprop", "conv_bprop",
                 "_group_matmul"):
        setattr(be, name, getattr(Backend, name).__get__(be))
    in_shape, kw = CASES[2]
    layer = Conv(**kw, activation="relu", init={"type": "gaussian", "scale": 0.5}, bias=0.2)
    check_layer(layer, be, in_shape, batch=2)
    x = np.random.default_rng(0).standard_normal((2, *in_shape))
    y = be.to_host(layer.fprop(be.array(x)))
    ref = naive_conv(x, be.to_host(layer.W.value), be.to_host(layer.b.value), layer.strides,
                     layer.padding, layer.groups)
    np.testing.assert_allclose(y, np.maximum(ref, 0), rtol=1e-12, atol=1e-12)


PATH_CASES = [*CASES, ((4, 7, 6), {"nfilters": 6, "fshape": [3, 2], "padding": [1, 1],
                                    "strides": [1, 2], "groups": 2})]


@pytest.mark.parametrize("path", ["row-shifted", "im2col", "row-shifted-no-cblas"])
@pytest.mark.parametrize("in_shape,kw", PATH_CASES, ids=[*IDS, "groups-stride1x2"])
def test_cpu_conv_paths(monkeypatch, in_shape, kw, path):
    """The CPU backend's two algorithms (width-unfolded row-shifted GEMMs at vertical stride
    1, im2col otherwise), with and without the direct cblas binding, against naive loops
    and central differences."""
    be = gen_backend("cpu", "fp64")
    if path == "im2col":
        be._row_shifted = lambda cg, f, st: False
    else:
        be._row_shifted = lambda cg, f, st: st[0] == 1
    if path.endswith("no-cblas"):
        monkeypatch.setattr(cpu_blas.BLAS, "gemms", {})
    layer = Conv(**kw, init={"type": "gaussian", "scale": 0.5}, activation="relu")
    check_layer(layer, be, in_shape, batch=2, seed=1)
    x = np.random.default_rng(0).standard_normal((3, *in_shape))
    y = be.to_host(layer.fprop(be.array(x)))
    b = be.to_host(layer.b.value) if layer.b is not None else None
    ref = naive_conv(x, be.to_host(layer.W.value), b, layer.strides, layer.padding,
                     layer.groups)
    np.testing.assert_allclose(y, np.maximum(ref, 0), rtol=1e-12, atol=1e-12)
    used = "xs" in layer._ws
    assert used == (path != "im2col" and layer.strides[0] == 1)


def _wide(rng, shape):
    """Values over a wide dynamic range: fp16 overflows and underflows (subnormals) occur."""
    return rng.standard_normal(shape) * np.exp(rng.uniform(-20, 12, shape))


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("geometry", [
    ((2, 6, 7, 5), dict(nfilters=4, fshape=3, padding=1)),                    # row-shifted
    ((2, 3, 9, 9), dict(nfilters=4, fshape=3, strides=2, padding=1)),         # im2col, pqn
    ((32, 2, 3, 33), dict(nfilters=3, fshape=[2, 2], strides=[2, 1])),        # im2col, npq
], ids=["row", "im2col-pqn", "im2col-npq"])
def test_fused_storage_rounding_equals_quantize(backend_name, fmt, stochastic, geometry):
    """Outputs a backend rounds itself (conv_fprop/conv_bprop/pool_* with quantize=True,
    which a backend may fuse into its kernels) are bit for bit what ``be.quantize`` gives
    afterwards, stochastic rounding's random stream and the overflow/underflow counts
    included."""
    from neon.backends import FlowCounter

    shape, kw = geometry
    rng = np.random.default_rng(11)
    x, w = _wide(rng, shape), rng.standard_normal((kw["nfilters"], shape[1], 3, 3)) * 0.5
    layer = Conv(**kw)
    out_shape = layer.configure(shape[1:])
    w = w[:, :, :layer.fshape[0], :layer.fshape[1]]
    delta = _wide(rng, (shape[0], *out_shape))
    results = []
    for fused in (True, False):
        be = gen_backend(backend_name, fmt, stochastic_rounding=stochastic, seed=5)
        be.flow = FlowCounter()
        xd, wd, dd = be.array(x, quantize=False), be.array(w), be.array(delta, quantize=False)
        bias = be.array(np.linspace(-1, 1, kw["nfilters"]))
        ws: dict = {}
        y = be.empty((shape[0], *out_shape))
        be.conv_fprop(xd, wd, bias, y, layer.fshape, layer.strides, layer.padding, 1, True,
                      ws, quantize=fused)
        if not fused:
            be.quantize(y)
        dx, dw, db = be.empty(shape), be.empty(w.shape), be.empty((kw["nfilters"],))
        be.conv_bprop(dd, wd, dw, db, dx, layer.fshape, layer.strides, layer.padding, 1, y,
                      ws, quantize=fused)
        if not fused:
            be.quantize(dx)
        pooled = be.empty((shape[0], shape[1], shape[2] // 2, shape[3] // 2))
        am = be.empty(pooled.shape, dtype=np.int32)
        for op in ("max", "avg"):
            be.pool_fprop(xd, pooled, am, op, (2, 2), (2, 2), (0, 0), quantize=fused)
            if not fused:
                be.quantize(pooled)
            results.append(be.to_host(pooled).copy())
            back = be.pool_bprop(pooled, be.empty(shape), am, op, (2, 2), (2, 2), (0, 0),
                                 quantize=fused)
            if not fused:
                be.quantize(back)
            results.append(be.to_host(back).copy())
        results += [be.to_host(y), be.to_host(dx), dict(be.flow.counts)]
    half = len(results) // 2
    for a, b in zip(results[:half - 1], results[half:-1]):
        np.testing.assert_array_equal(a, b)
    assert results[half - 1] == results[-1]
    over, under = results[-1]["-"][1:]
    if fmt == "fp16":  # both ends of fp16's range were hit (bf16 has fp32's range)
        assert over > 0 and under > 0


def test_cpu_paths_agree_on_wide_batches():
    """Row-shifted and im2col paths give the same outputs and gradients where the shapes
    make the backend choose the "npq" column order for im2col (N >= 32, Q >= 32)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 3, 5, 34))
    delta = rng.standard_normal((32, 4, 5, 34))
    got = []
    for row in (True, False):
        be = gen_backend("cpu", "fp64")
        be._row_shifted = lambda cg, f, st, row=row: row
        layer = Conv(nfilters=4, fshape=3, padding=1, activation="relu", bias=0.1, name="c")
        layer.configure((3, 5, 34))
        layer.allocate(be)
        layer.W.value[...] = rng.standard_normal(layer.W.value.shape) if row else got[0][0]
        y = layer.fprop(be.array(x))
        dx = layer.bprop(be.array(delta))
        got.append((layer.W.value.copy(), y.copy(), dx.copy(), layer.W.grad.copy(),
                    layer.b.grad.copy(), "xs" in layer._ws))
    (_, y1, dx1, dw1, db1, used1), (_, y2, dx2, dw2, db2, used2) = got
    assert used1 and not used2 and be.conv_col_order(32, 5, 34) == "npq"
    for a, b in ((y1, y2), (dx1, dx2), (dw1, dw2), (db1, db2)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fmt,stochastic", [("fp16", False), ("bf16", False), ("fp16", True),
                                            ("bf16", True)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_cpu_blocked_rounded_dot(fmt, stochastic, trans_a, trans_b):
    """The CPU backend computes big fp16/bf16 GEMM results in row blocks rounded while in
    cache. Against ``Backend.dot``: the same values up to one step of the storage format
    (BLAS may sum a block in another order, which can move a value across a rounding
    boundary), the same stochastic draws, the same number of stored values counted."""
    from neon.backends import FlowCounter

    rng = np.random.default_rng(8)
    shape = (40, 16) if not trans_a else (16, 40)
    a = rng.standard_normal(shape) * np.exp(rng.uniform(-8, 4, shape))
    b = rng.standard_normal((16, 30) if not trans_b else (30, 16))
    outs = []
    for blocked in (True, True, False):
        be = gen_backend("cpu", fmt, stochastic_rounding=stochastic, seed=3)
        be.DOT_BLOCK_BYTES = 7 * 30 * 4 // 4  # 7-row blocks; the threshold is 4 blocks
        be.flow = FlowCounter()
        out = be.empty((40, 30))
        dot = be.dot if blocked else Backend.dot.__get__(be)
        dot(be.array(a), be.array(b), out=out, trans_a=trans_a, trans_b=trans_b)
        outs.append((be.to_host(out), be.flow.counts["-"]))
    (b1, c1), (b2, c2), (plain, c3) = outs
    np.testing.assert_array_equal(b1, b2)  # reproducible
    assert c1 == c2 and c1[0] == c3[0]  # as many stored values counted
    step = 2.0**-10 if fmt == "fp16" else 2.0**-7
    np.testing.assert_allclose(b1, plain, rtol=step, atol=0)
    assert (b1 == plain).mean() > (0.95 if stochastic else 0.99)
