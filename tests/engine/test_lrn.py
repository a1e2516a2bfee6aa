"""Local response normalization: forward against naive loops (Caffe's alpha/depth
convention), gradients by central differences, backend contract, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_layer

from neon.backends import gen_backend
from neon.backends.backend import Backend
from neon.errors import ConfigError
from neon.layers import build_layer
from neon.layers.lrn import LRN


def naive_lrn(x, depth, alpha, beta, k):
    n, c = x.shape[:2]
    y = np.zeros_like(x, dtype=np.float64)
    for i in range(n):
        for j in range(c):
            lo, hi = max(0, j - depth // 2), min(c, j + depth // 2 + 1)
            sq = (x[i, lo:hi].astype(np.float64) ** 2).sum(axis=0)
            y[i, j] = x[i, j] / (k + alpha / depth * sq) ** beta
    return y


# strong normalization (large alpha) so that every term of the gradient matters
PARAMS = [dict(depth=5, alpha=0.5, beta=0.75, k=1.0), dict(depth=3, alpha=2.0, beta=0.5, k=2.0),
          dict(depth=1, alpha=1.0, beta=1.0, k=1.0)]


@pytest.fixture(params=["fp64", "fp32"])
def be(request, backend_name):
    return gen_backend(backend_name, request.param, seed=0)


@pytest.mark.parametrize("params", PARAMS, ids=["d5", "d3", "d1"])
def test_forward_matches_naive_loops(be, params):
    layer = LRN(**params)
    layer.configure((7, 3, 4))
    layer.allocate(be)
    x = np.random.default_rng(0).standard_normal((2, 7, 3, 4)) * 1.5
    y = be.to_host(layer.fprop(be.array(x))).astype(np.float64)
    ref = naive_lrn(be.to_host(be.array(x)), **params)
    np.testing.assert_allclose(y, ref, rtol=1e-12 if be.dtype == np.float64 else 2e-6,
                               atol=1e-7)


@pytest.mark.parametrize("params", PARAMS, ids=["d5", "d3", "d1"])
def test_gradients(be, params):
    check_layer(LRN(**params), be, (6, 3, 3), batch=2)


def test_alexnet_defaults_and_wide_channels(backend_name):
    be = gen_backend(backend_name, "fp64")
    layer = build_layer({"type": "lrn", "depth": 5, "alpha": 1.0e-4, "beta": 0.75, "k": 2})
    assert (layer.depth, layer.alpha, layer.beta, layer.k) == (5, 1e-4, 0.75, 2.0)
    layer.configure((16, 5, 5))
    layer.allocate(be)
    x = np.random.default_rng(2).standard_normal((2, 16, 5, 5)) * 20
    y = be.to_host(layer.fprop(be.array(x)))
    np.testing.assert_allclose(y, naive_lrn(x, 5, 1e-4, 0.75, 2.0), rtol=1e-12)


def test_backend_contract_against_generic(backend_name):
    be = gen_backend(backend_name, "fp32")
    rng = np.random.default_rng(3)
    x = be.array(rng.standard_normal((4, 12, 6, 5)))
    d = be.array(rng.standard_normal(x.shape))
    res = []
    for impl in (type(be), Backend):
        y, scale = be.empty(x.shape), be.empty(x.shape)
        impl.lrn_fprop(be, x, y, scale, 5, 0.3, 0.75, 1.5)
        dx = impl.lrn_bprop(be, x, y, scale, d, be.empty(x.shape), 5, 0.3, 0.75, 1.5)
        res.append([be.to_host(a) for a in (y, scale, dx)])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec,match", [
    ({"type": "lrn", "depth": 4}, "odd"),
    ({"type": "lrn", "k": 0}, "k > 0"),
    ({"type": "lrn", "size": 5}, "unknown key"),
])
def test_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_layer(spec)
