"""The affine layer's epilogues (``Backend.bias_activation`` and
``Backend.activation_bias_grad``): the CPU backend's fused numba kernels against the generic
array-op versions, bit for bit, special values included, and the cases that fall back."""

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


def test_the_fused_kernels_run_for_relu_and_bias(monkeypatch):
    """The case an MLP's hidden layers hit goes to the kernels (not to the fallback)."""
    be = gen_backend("cpu", "fp32")
    calls = []
    for name in ("bias_activation", "activation_bias_grad"):
        real = getattr(cpu_kernels, name)
        monkeypatch.setattr(cpu_kernels, name,
                            lambda *a, real=real, name=name: calls.append(name) or real(*a))
    y, d, b = _arrays(np.float32)
    relu = build_activation("relu")
    be.bias_activation(y, b, relu)
    be.activation_bias_grad(y, d, relu, b)
    assert calls == ["bias_activation", "activation_bias_grad"]


@pytest.mark.parametrize("case", ["leaky_relu", "no_bias", "strided", "three_d", "mixed_dtype"])
def test_what_the_kernels_do_not_take_gets_the_generic_result(monkeypatch, case):
    be = gen_backend("cpu", "fp32")
    for name in ("bias_activation", "activation_bias_grad"):
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
