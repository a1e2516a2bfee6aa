"""Recurrent layers: BPTT gradients (fp64, fp32), direction, stacking, truncation, embedding,
the LSTM cell primitives of the backends, and a small sequence model that learns."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_layer, numeric_grad

from neon.backends import gen_backend
from neon.backends.backend import Backend
from neon.layers import Layer, build_layer
from neon.layers.embedding import Embedding
from neon.layers.recurrent import GRU, LSTM, SimpleRNN
from neon.models import Model
from neon.optimizers import build_optimizer

CELLS = [SimpleRNN, LSTM, GRU]
VARIANTS = [{}, {"reverse": True}, {"return_sequences": False},
            {"reverse": True, "return_sequences": False}]


@pytest.fixture(params=["fp64", "fp32"])
def be(request, backend_name):
    return gen_backend(backend_name, request.param, seed=0)


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("kw", VARIANTS, ids=str)
def test_bptt_gradients(be, cls, kw):
    layer = cls(4, **kw)
    check_layer(layer, be, (6, 3), batch=3)
    assert layer.out_shape == ((6, 4) if kw.get("return_sequences", True) else (4,))


def test_rnn_relu_and_lstm_biases(be):
    # fp32 steps of 1e-3 (not 1e-2) so that central differences do not cross relu's kink
    eps = None if be.dtype == np.float64 else 1e-3
    check_layer(SimpleRNN(3, activation="relu", init={"type": "gaussian", "scale": 0.5}), be,
                (4, 2), batch=2, seed=1, eps=eps)
    lstm = LSTM(3, bias=0.1, forget_bias=2.0)
    check_layer(lstm, be, (4, 2), batch=2)
    b = be.to_host(lstm.b.value).reshape(4, 3)
    np.testing.assert_allclose(b[1], 2.0)
    np.testing.assert_allclose(b[[0, 2, 3]], 0.1)


class Stack(Layer):
    """Layers applied in sequence, as one layer for ``check_layer``."""

    registry_name = "stack"

    def __init__(self, layers):
        super().__init__("stack")
        self.layers = layers

    def configure(self, in_shape):
        shape = in_shape
        for layer in self.layers:
            shape = layer.configure(shape)
        self.in_shape, self.out_shape = in_shape, shape
        return shape

    def allocate(self, be):
        self.be = be
        for i, layer in enumerate(self.layers):
            layer.name = f"l{i}"
            layer.allocate(be)
            for p in layer.params:
                p.name = f"{layer.name}.{p.name}"
        self.params = [p for layer in self.layers for p in layer.params]

    def fprop(self, x, inference=False):
        for layer in self.layers:
            x = layer.fprop(x, inference)
        return x

    def bprop(self, delta):
        for layer in reversed(self.layers):
            delta = layer.bprop(delta)
        return delta


def test_stacked_layers(be):
    stack = Stack([LSTM(4), GRU(3, reverse=True), SimpleRNN(2, return_sequences=False)])
    check_layer(stack, be, (5, 3), batch=2)
    assert stack.out_shape == (2,)


def _processing_order(a, reverse):
    return a[:, ::-1] if reverse else a


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("k", [2, 4])
def test_truncated_bptt_matches_its_definition(cls, reverse, k, backend_name):
    """truncate: k == the gradient of sum(R * y) with the state entering every chunk of k
    steps (in processing order) held constant at its forward value; finite differences of
    that definition, computed by running each chunk on its own from the frozen state."""
    be = gen_backend(backend_name, "fp64", seed=0)
    n, t, f, h = 2, 7, 3, 4
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, t, f))
    r = rng.standard_normal((n, t, h))
    layer = cls(h, reverse=reverse, truncate=k)
    layer.configure((t, f))
    layer.allocate(be)
    xd = be.array(x)
    layer.fprop(xd)
    dx = be.to_host(layer.bprop(be.array(r)))
    analytic = {p.name: be.to_host(p.grad).copy() for p in layer.params}
    frozen = {name: be.to_host(getattr(layer, attr)).copy()
              for name, attr in (("h", "hs"), ("c", "cs")) if hasattr(layer, attr)}

    xp_, rp = _processing_order(x, reverse), _processing_order(r, reverse)
    chunks = []
    for a in range(0, t, k):
        b = min(a + k, t)
        sub = cls(h)
        sub.configure((b - a, f))
        sub.allocate(be)
        for mine, theirs in zip(sub.params, layer.params):
            mine.value = theirs.value  # shared: perturbing the layer perturbs every chunk
        sub.init_state = {name: states[a] for name, states in frozen.items()}
        chunks.append((sub, a, b))
    xin = be.array(xp_)

    def definition():
        total = 0.0
        for sub, a, b in chunks:
            y = be.to_host(sub.fprop(xin[:, a:b].copy()))
            total += float((y * rp[:, a:b]).sum())
        return total

    for p in layer.params:
        num = numeric_grad(definition, p.value, 1e-6)
        np.testing.assert_allclose(analytic[p.name], num, rtol=1e-5, atol=1e-8,
                                   err_msg=f"d{p.name}")
    num_x = numeric_grad(definition, xin, 1e-6)
    np.testing.assert_allclose(dx, _processing_order(num_x, reverse), rtol=1e-5, atol=1e-8)


def test_truncation_longer_than_sequence_is_full_bptt(backend_name):
    be = gen_backend(backend_name, "fp64", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    grads = []
    for trunc in (None, 5, 2):
        layer = LSTM(4, truncate=trunc)
        layer.configure((5, 3))
        be.rng = np.random.default_rng(1)
        layer.allocate(be)
        layer.fprop(be.array(x))
        layer.bprop(be.array(np.ones((2, 5, 4))))
        grads.append(be.to_host(layer.U.grad).copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)
    assert np.abs(grads[0] - grads[2]).max() > 1e-3


def test_embedding_lookup_and_gradient(be):
    layer = Embedding(vocab=7, nout=3)
    layer.configure((5,))
    layer.allocate(be)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (4, 5))
    ids[0, :3] = 2  # repeated ids accumulate
    x = be.array(ids.astype(float))
    y = layer.fprop(x)
    assert y.shape == (4, 5, 3)
    np.testing.assert_array_equal(be.to_host(y), be.to_host(layer.W.value)[ids])
    r = be.array(rng.standard_normal((4, 5, 3)))
    assert layer.bprop(r.copy()) is None

    def loss():
        return float((be.to_host(layer.fprop(x)) * be.to_host(r)).sum())

    num = numeric_grad(loss, layer.W.value, 1e-6 if be.dtype == np.float64 else 1e-2)
    tol = 1e-7 if be.dtype == np.float64 else 1e-3
    np.testing.assert_allclose(be.to_host(layer.W.grad), num, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="ids must lie"):
        layer.fprop(be.array(np.full((1, 5), 7.0)))


def test_embedding_refuses_inexact_ids():
    layer = Embedding(vocab=300, nout=2, name="emb")
    layer.configure((4,))
    with pytest.raises(Exception, match="not exact in bf16"):
        layer.allocate(gen_backend("cpu", "bf16"))


def test_layers_from_yaml_specs():
    lstm = build_layer({"type": "lstm", "nout": 8, "reverse": True, "truncate": 10,
                        "return_sequences": False})
    assert isinstance(lstm, LSTM) and lstm.reverse and lstm.truncate == 10
    assert isinstance(build_layer({"type": "gru", "nout": 3}), GRU)
    assert isinstance(build_layer({"type": "rnn", "nout": 3, "activation": "relu"}), SimpleRNN)
    assert isinstance(build_layer({"type": "embedding", "vocab": 10, "nout": 4}), Embedding)
    with pytest.raises(Exception, match="sequences"):
        LSTM(3).configure((64,))


# ----------------------------------------------------------------- backend primitives
@pytest.mark.parametrize("numerics", ["fp64", "fp32", "fp16", "bf16"])
def test_lstm_cell_primitives_match_reference(backend_name, numerics):
    """The backend's (fused) cell kernels against the generic xp implementation and plain
    numpy formulas; stored outputs are rounded to the storage format."""
    be = gen_backend(backend_name, numerics, seed=0)
    rng = np.random.default_rng(0)
    n, h = 5, 7
    pre = be.array(rng.standard_normal((n, 4 * h)) * 2)
    c_prev = be.array(rng.standard_normal((n, h)))
    outs = {}
    for label, fn in (("backend", type(be).lstm_cell_fprop), ("generic", Backend.lstm_cell_fprop)):
        gates, c, tc, hh = pre.copy(), be.empty((n, h)), be.empty((n, h)), be.empty((n, h))
        fn(be, gates, c_prev, c, tc, hh)
        outs[label] = [be.to_host(a) for a in (gates, c, tc, hh)]
    p = be.to_host(pre).astype(np.float64)
    sig = 1 / (1 + np.exp(-p[:, : 3 * h]))
    g = np.tanh(p[:, 3 * h:])
    i, f, o = sig[:, :h], sig[:, h: 2 * h], sig[:, 2 * h:]
    c_ref = f * be.to_host(c_prev) + i * g
    ref = [np.concatenate([sig, g], axis=1), c_ref, np.tanh(c_ref), o * np.tanh(c_ref)]
    tol = {"fp64": 1e-12, "fp32": 1e-6, "fp16": 2e-3, "bf16": 1.6e-2}[numerics]
    for a, b, want in zip(outs["backend"], outs["generic"], ref):
        np.testing.assert_allclose(a, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        if numerics in ("fp16", "bf16"):
            stored = a.astype(be.format.storage).astype(np.float32)
            np.testing.assert_array_equal(a, stored)

    gates = be.array(outs["generic"][0])
    tanh_c = be.array(outs["generic"][2])
    dh = be.array(rng.standard_normal((n, h)))
    dc = be.array(rng.standard_normal((n, h)))
    grads = {}
    for label, fn in (("backend", type(be).lstm_cell_bprop), ("generic", Backend.lstm_cell_bprop)):
        dg, dcp = be.empty((n, 4 * h)), dc.copy()
        fn(be, gates, c_prev, tanh_c, dh, dcp, dg, dcp)  # dc_prev aliasing dc is allowed
        grads[label] = [be.to_host(dg), be.to_host(dcp)]
    for a, b in zip(grads["backend"], grads["generic"]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("numerics", ["fp16", "bf16"])
def test_cpu_fused_rounding_is_bit_identical(numerics):
    """The CPU kernels round fp16/bf16 outputs inside the kernel; the values and the
    overflow/underflow counts equal those of the kernel followed by ``quantize``."""
    from neon.backends import FlowCounter
    from neon.backends import cpu_rnn_kernels as k

    be = gen_backend("cpu", numerics)
    rng = np.random.default_rng(0)
    n, h = 6, 9
    pre = (rng.standard_normal((n, 4 * h)) * 3).astype(np.float32)
    c_prev = be.array(rng.standard_normal((n, h)))
    dh = be.array(rng.standard_normal((n, h)) * 1e-6)  # some gradients underflow
    dc = be.array(rng.standard_normal((n, h)))
    results = []
    for fused in (True, False):
        be.flow = FlowCounter()
        gates, c, tc, hh = pre.copy(), *(np.empty((n, h), np.float32) for _ in range(3))
        dg, dcp = np.empty((n, 4 * h), np.float32), dc.copy()
        if fused:
            be.lstm_cell_fprop(gates, c_prev, c, tc, hh)
            be.lstm_cell_bprop(gates, c_prev, tc, dh, dcp, dg, dcp)
        else:
            k.lstm_fprop.serial(gates, c_prev, c, tc, hh)
            for a in (gates, c, tc, hh):
                be.quantize(a)
            k.lstm_bprop.serial(gates, c_prev, tc, dh, dcp, dg, dcp)
            be.quantize(dg)
            be.quantize(dcp)
        results.append(([gates, c, tc, hh, dg, dcp], be.flow.counts["-"]))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)
    assert results[0][1] == results[1][1]
    if numerics == "fp16":
        assert results[0][1][2] > 0  # the case has fp16 underflows to count


# ----------------------------------------------------------------- training
def test_sequence_model_learns_to_echo(backend_name):
    """Embedding + LSTM + per-step softmax learns y_t = x_{t-1} (a one-step memory)."""
    from neon.datasets.iterator import ArrayIterator

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, (256, 12))
    y = np.concatenate([np.zeros((256, 1), np.int64), ids[:, :-1]], axis=1)
    train = ArrayIterator(ids, y, 32, shuffle=True, seed=0)
    be = gen_backend(backend_name, "fp32", seed=0)
    model = Model([{"type": "embedding", "vocab": 6, "nout": 8},
                   {"type": "lstm", "nout": 16},
                   {"type": "affine", "nout": 6, "flatten": False, "activation": "softmax"}],
                  cost="cross_entropy", be=be)
    hist = model.fit(train, build_optimizer({"type": "adam", "learning_rate": 0.02}), 12,
                     valid=train, metrics=["misclassification", "bits_per_char"])
    assert hist.final["val_misclassification"] < 0.1, hist.final
    assert hist.final["val_bits_per_char"] < 0.5
