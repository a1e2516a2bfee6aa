"""The affine layer's epilogues (``Backend.bias_activation`` and
``Backend.activation_bias_grad``) and the cost's helpers (``cross_entropy``, ``onehot``): the
CPU backend's fused numba kernels against the generic array-op versions, bit for bit
(softmax and the cross-entropy's sum to rounding), special values included, and the cases
that fall back."""

from __future__ import annotations

import numpy as np
import pytest

from neon.backends import cpu_kernels, gen_backend
from neon.backends.backend import Backend
from neon.transforms.activation import build_activation

NUMERICS = {np.float32: "fp32", np.float64: "fp64"}
# the special values make NaN from inf * 0 on purpose
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _arrays(dtype, rows=37, cols=129, seed=0):
    rng = np.random.default_rng(seed)
    y, d = rng.standard_normal((2, rows, cols)).astype(dtype)
    b = rng.standard_normal(cols).astype(dtype)
    y[0, :6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1e-30]  # kept as numpy.maximum does
    d[1, :3] = [np.inf, np.nan, -np.inf]  # inf * 0 is NaN where y <= 0, as numpy's product
    y[1, :3] = [-1.0, -1.0, 2.0]
    return y, d, b


def _same(got, want):
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))  # -0.0 against 0.0 too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [None, "identity", "relu"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_fused_epilogues_are_the_generic_ones_bit_for_bit(dtype, act, direction):
    be = gen_backend("cpu", NUMERICS[dtype])
    activation = None if act is None else build_activation(act)
    y, d, b = _arrays(dtype)
    if direction == "forward":
        want = Backend.bias_activation(be, y.copy(), b, activation)
        _same(be.bias_activation(y, b, activation), want)
        return
    y_relu = np.maximum(y, 0)
    want_d, want_g = d.copy(), np.empty(y.shape[1], dtype)
    Backend.activation_bias_grad(be, y_relu, want_d, activation, want_g)
    grad = np.full(y.shape[1], 7.0, dtype)  # overwritten, not added to
    got_d = be.activation_bias_grad(y_relu, d, activation, grad)
    _same(got_d, want_d)
    _same(grad, want_g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,beta", [(-0.05, 0.9), (1.0, 1.0), (2.5, 0.0), (1.0, -0.5)])
def test_the_bias_gradient_takes_alpha_and_beta_as_gemm_does(dtype, alpha, beta):
    """An optimizer's folded step (``v = -lr * g + momentum * v``), bit for bit."""
    be = gen_backend("cpu", NUMERICS[dtype])
    relu = build_activation("relu")
    y, d, b = _arrays(dtype)
    y = np.maximum(y, 0)
    v = np.random.default_rng(3).standard_normal(b.shape).astype(dtype)
    v[:2] = [np.inf, -0.0]
    v0, want_d, want_v = v.copy(), d.copy(), v.copy()
    Backend.activation_bias_grad(be, y, want_d, relu, want_v, alpha, beta)
    _same(be.activation_bias_grad(y, d, relu, v, alpha, beta), want_d)
    _same(v, want_v)
    np.testing.assert_allclose(  # and it is what it says
        want_v[2:], alpha * want_d.sum(axis=0)[2:] + beta * v0[2:], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_softmax_is_the_generic_one(dtype, bias):
    be = gen_backend("cpu", NUMERICS[dtype])
    softmax = build_activation("softmax")
    y, _, b = _arrays(dtype, cols=10)
    y[2:] *= 30  # rows whose exp overflows without the max taken out
    b = b if bias else None
    want = Backend.bias_activation(be, y.copy(), b, softmax)
    got = be.bias_activation(y, b, softmax)
    nan_rows = np.isnan(want).any(axis=1)
    assert nan_rows[0] and not nan_rows[1:].any()  # NaN and inf-inf in row 0
    assert np.isnan(got[nan_rows]).all()
    np.testing.assert_allclose(got[~nan_rows], want[~nan_rows],
                               rtol=2e-6 if dtype == np.float32 else 1e-14, atol=1e-30)
    np.testing.assert_allclose(got[~nan_rows].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_cross_entropy_is_the_generic_one(dtype):
    be = gen_backend("cpu", NUMERICS[dtype])
    softmax = build_activation("softmax")
    y = be.bias_activation(_arrays(dtype, cols=10)[0][2:], None, softmax)
    t = be.onehot(np.arange(len(y)) % 10, 10)
    t[0] = 0.1  # soft targets too
    y[1, t[1] == 1] = 0.0  # log(eps), not -inf
    want = Backend.cross_entropy(be, y, t, 1e-12)
    assert be.cross_entropy(y, t, 1e-12) == pytest.approx(want, rel=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 0.0])
@pytest.mark.parametrize("target", [0.0, 1.0])
def test_fused_cross_entropy_keeps_what_the_array_ops_make_of_special_values(value, target):
    """NaN or +inf under a zero target still makes the sum NaN (0 * inf), as numpy's does."""
    be = gen_backend("cpu", "fp32")
    t = np.zeros((2, 3), np.float32)
    t[:, 1] = 1.0
    y = np.full((2, 3), 0.3, np.float32)
    y[0, 1 if target else 0] = value
    want = Backend.cross_entropy(be, y, t, 1e-12)
    got = be.cross_entropy(y, t, 1e-12)
    assert got == pytest.approx(want, rel=1e-6, nan_ok=True)


def test_fused_onehot_is_the_generic_one_and_rejects_labels_out_of_range():
    be = gen_backend("cpu", "fp32")
    labels = np.array([0, 9, 3, -1, -10, 5], np.int64)  # negatives count from the end
    out = np.full((6, 10), 7.0, np.float32)  # overwritten
    _same(be.onehot(labels, 10, out=out), Backend.onehot(be, labels, 10))
    unsigned = (np.abs(labels) % 10).astype(np.uint8)
    _same(be.onehot(unsigned, 10), Backend.onehot(be, unsigned, 10))
    for bad in (10, -11):
        with pytest.raises(IndexError, match=f"label {bad} is out of range for 10 classes"):
            be.onehot(np.array([1, bad]), 10)


KERNELS = ("bias_activation", "activation_bias_grad", "bias_softmax", "cross_entropy",
           "onehot")


def test_the_fused_kernels_run_for_an_mlp(monkeypatch):
    """The cases an MLP's layers and cost hit go to the kernels (not to the fallbacks)."""
    be = gen_backend("cpu", "fp32")
    calls = []
    for name in KERNELS:
        real = getattr(cpu_kernels, name)
        monkeypatch.setattr(cpu_kernels, name,
                            lambda *a, real=real, name=name: calls.append(name) or real(*a))
    y, d, b = _arrays(np.float32)
    relu = build_activation("relu")
    be.bias_activation(y, b, relu)
    be.activation_bias_grad(y, d, relu, b, -0.1, 0.9)
    out = be.bias_activation(y[:, :10].copy(), b[:10], build_activation("softmax"))
    be.cross_entropy(out, be.onehot(np.arange(len(y)) % 10, 10), 1e-12)
    assert calls == ["bias_activation", "activation_bias_grad", "bias_softmax", "onehot",
                     "cross_entropy"]


@pytest.mark.parametrize("case", ["leaky_relu", "no_bias", "strided", "three_d", "mixed_dtype"])
def test_what_the_kernels_do_not_take_gets_the_generic_result(monkeypatch, case):
    be = gen_backend("cpu", "fp32")
    for name in KERNELS:
        monkeypatch.setattr(cpu_kernels, name, None)  # calling one would raise
    y, d, b = _arrays(np.float32)
    act = build_activation("leaky_relu" if case == "leaky_relu" else "relu")
    grad = np.empty_like(b)
    if case == "no_bias":
        b = grad = None
    elif case == "strided":
        y, d, b = y[:, ::2], d[:, ::2], b[::2].copy()
        grad = np.empty_like(b)
    elif case == "three_d":
        y, d = y[:36].reshape(4, 9, -1), d[:36].reshape(4, 9, -1)
    elif case == "mixed_dtype":
        b, grad = b.astype(np.float64), grad.astype(np.float64)
    want_y = Backend.bias_activation(be, y.copy(), b, act)
    _same(be.bias_activation(y, b, act), want_y)  # y itself: a copy would be contiguous
    if case == "three_d":
        return  # a bias gradient is the sum over the rows of a 2-D delta
    want_d = d.copy()
    want_g = None if grad is None else np.empty_like(grad)
    Backend.activation_bias_grad(be, want_y, want_d, act, want_g)
    _same(be.activation_bias_grad(want_y, d, act, grad), want_d)
    if grad is not None:
        _same(grad, want_g)


def test_softmax_cross_entropy_and_onehot_fall_back_where_the_kernels_do_not_apply(
        monkeypatch):
    be = gen_backend("cpu", "fp32")
    for name in KERNELS:
        monkeypatch.setattr(cpu_kernels, name, None)  # calling one would raise
    softmax = build_activation("softmax")
    y = _arrays(np.float32, cols=20)[0][2:]
    for arr in (y[:, ::2], y.reshape(5, 7, 20)):  # strided, 3-D
        want = Backend.bias_activation(be, arr.copy(), None, softmax)
        _same(be.bias_activation(arr, None, softmax), want)
    t = np.zeros_like(y)
    t[:, 0] = 1.0
    for yy, tt in ((y[:, ::2], t[:, ::2]), (y, t.astype(np.float64))):
        assert be.cross_entropy(yy, tt, 1e-12) == Backend.cross_entropy(be, yy, tt, 1e-12)
    out = np.full((4, 8), 7.0, np.float32)[:, ::2]  # not contiguous: written all the same
    assert be.onehot(np.array([1, 2, 3, 0]), 4, out=out) is out
    _same(out, np.eye(4, dtype=np.float32)[[1, 2, 3, 0]])
