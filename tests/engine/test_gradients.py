"""Every layer, activation and cost against central differences, in fp64 and fp32."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_cost, check_layer

from neon.backends import gen_backend
from neon.layers import ActivationLayer, Affine, BatchNorm, Dropout
from neon.transforms.cost import COSTS

ACTIVATIONS = ["identity", "relu", "leaky_relu", "logistic", "tanh", "softmax"]


@pytest.fixture(params=["fp64", "fp32"])
def be(request, backend_name):
    return gen_backend(backend_name, request.param, seed=0)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_affine_with_activation(be, act):
    # inputs away from relu's kink so that finite differences are well defined
    x = np.random.default_rng(1).standard_normal((4, 5))
    check_layer(Affine(nout=3, init={"type": "gaussian", "scale": 0.5}, activation=act),
                be, (5,), x=x)


def test_affine_without_bias_and_multiaxis_input(be):
    check_layer(Affine(nout=4, bias=False, init="glorot"), be, (2, 3))


def test_affine_time_distributed(be):
    layer = Affine(nout=3, flatten=False, activation="tanh")
    check_layer(layer, be, (4, 5))
    assert layer.out_shape == (4, 3)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_layer(be, act):
    check_layer(ActivationLayer(act), be, (6,), seed=3)


@pytest.mark.parametrize("shape", [(5,), (3, 4, 4)])
def test_batch_norm(be, shape):
    # gamma/beta away from their init so that every term of the gradient matters
    layer = BatchNorm()
    layer.configure(shape)
    layer.allocate(be)
    rng = np.random.default_rng(2)
    layer.gamma.value[...] = be.array(rng.uniform(0.5, 1.5, layer.gamma.value.shape))
    layer.beta.value[...] = be.array(rng.standard_normal(layer.beta.value.shape))
    layer.configure = lambda s: layer.out_shape  # keep the parameters set above
    layer.allocate = lambda b: None
    check_layer(layer, be, shape, batch=6, rtol=1e-5 if be.dtype == np.float64 else 8e-2)


def test_dropout_with_fixed_mask(be):
    layer = Dropout(keep=0.6)
    layer.configure((7,))
    layer.allocate(be)
    x = be.array(np.random.default_rng(0).standard_normal((4, 7)))
    be.rng = np.random.default_rng(5)
    y = be.to_host(layer.fprop(x))
    mask = be.to_host(layer.mask)
    assert np.all(np.isclose(mask, 0) | np.isclose(mask, 1 / 0.6))
    assert 0 < (mask > 0).mean() < 1
    np.testing.assert_allclose(y, be.to_host(x) * mask, rtol=1e-6)
    delta = be.array(np.ones((4, 7)))
    np.testing.assert_allclose(be.to_host(layer.bprop(delta)), mask, rtol=1e-6)
    assert layer.fprop(x, inference=True) is x


@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_binary", "sum_squared", "mse"])
def test_cost_gradients(name, backend_name):
    be = gen_backend(backend_name, "fp64")
    rng = np.random.default_rng(0)
    y = rng.uniform(0.05, 0.95, (4, 3))
    if name == "cross_entropy":
        y /= y.sum(axis=1, keepdims=True)
        t = np.eye(3)[rng.integers(0, 3, 4)]
    elif name == "cross_entropy_binary":
        t = rng.integers(0, 2, (4, 3)).astype(float)
    else:
        t = rng.standard_normal((4, 3))
    check_cost(COSTS.get(name)(), be, y, t)


@pytest.mark.parametrize("cost_name,act", [("cross_entropy", "softmax"),
                                           ("cross_entropy_binary", "logistic")])
def test_shortcut_equals_full_chain(cost_name, act, backend_name):
    """(y - t) / N equals the cost gradient pushed through the activation's derivative."""
    be = gen_backend(backend_name, "fp64")
    rng = np.random.default_rng(0)
    layer = ActivationLayer(act)
    layer.configure((5,))
    layer.allocate(be)
    z = be.array(rng.standard_normal((3, 5)))
    y = layer.fprop(z)
    t = be.array(np.eye(5)[rng.integers(0, 5, 3)])
    cost = COSTS.get(cost_name)()
    full = layer.bprop(cost.bprop(be, y, t, be.empty(y.shape)))
    short = cost.bprop_shortcut(be, y, t, be.empty(y.shape))
    np.testing.assert_allclose(be.to_host(full), be.to_host(short), rtol=1e-8, atol=1e-12)
