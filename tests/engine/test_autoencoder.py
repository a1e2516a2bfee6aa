"""Autoencoders: corruption layer, tied weights (model-level gradient checks), training on
digits with targets = inputs, the YAML model type and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numeric_grad

from neon.backends import gen_backend
from neon.config import build_experiment, load_config
from neon.datasets import load_dataset
from neon.errors import ConfigError
from neon.layers.autoencoder import Corrupt, TiedAffine
from neon.models import Autoencoder, Model
from neon.optimizers import build_optimizer


@pytest.fixture(params=["fp64", "fp32"])
def be(request, backend_name):
    return gen_backend(backend_name, request.param, seed=0)


def model_gradcheck(model, be, x, t):
    """Finite differences of the model's cost against fprop + cost gradient + bprop, for
    every parameter (shared tied weights included); returns the worst relative error."""
    fp64 = be.dtype == np.float64
    eps, rtol = (1e-6, 1e-6) if fp64 else (1e-2, 5e-2)
    model.initialize(x.shape[1:], be)
    xd, td = be.array(x), be.array(t)
    y = model.fprop(xd)
    delta = be.empty(y.shape)
    if model.shortcut:
        model.cost.bprop_shortcut(be, y, td, delta)
    else:
        model.cost.bprop(be, y, td, delta)
    model.bprop(delta)
    analytic = {p.key: be.to_host(p.grad).astype(np.float64).copy() for p in model.params}

    def loss():
        return model.cost.fprop(be, model.fprop(xd), td)

    worst = 0.0
    for p in model.params:
        num = numeric_grad(loss, p.value, eps)
        a = analytic[p.key]
        err = float(np.abs(a - num).max() / max(np.abs(num).max(), np.abs(a).max(), 1e-8))
        assert err < rtol, f"d{p.key}: relative error {err:.2e}"
        worst = max(worst, err)
    return worst


@pytest.mark.parametrize("cost,act", [("cross_entropy_binary", "logistic"), ("mse", "tanh"),
                                      ("sum_squared", None)])
def test_tied_autoencoder_gradients(be, cost, act):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 0.95, (4, 6))
    model = Autoencoder([{"type": "affine", "nout": 3, "activation": "logistic", "name": "enc",
                          "init": {"type": "gaussian", "scale": 0.5}},
                         {"type": "tied_affine", "tied_to": "enc", "activation": act}],
                        cost=cost, be=be)
    model_gradcheck(model, be, x, x)
    enc, dec = model.layers
    assert [p.name for p in model.params] == ["W", "b", "b"]  # one shared weight matrix
    assert dec.out_shape == (6,) and dec.source is enc
    assert model.shortcut == (cost == "cross_entropy_binary")


def test_deep_tied_autoencoder_gradients(be):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.05, 0.95, (3, 5))
    model = Autoencoder([{"type": "affine", "nout": 4, "activation": "tanh", "name": "e1"},
                         {"type": "affine", "nout": 2, "activation": "tanh", "name": "e2"},
                         {"type": "tied_affine", "tied_to": "e2", "activation": "tanh"},
                         {"type": "tied_affine", "tied_to": "e1", "activation": "logistic",
                          "bias": False}],
                        cost="mse", be=be)
    model_gradcheck(model, be, x, x)


def test_untied_autoencoder_gradients(be):
    x = np.random.default_rng(2).uniform(0, 1, (3, 5))
    model = Autoencoder([{"type": "affine", "nout": 3, "activation": "relu"},
                         {"type": "affine", "nout": 5, "activation": "logistic"}],
                        cost="cross_entropy_binary", be=be)
    model_gradcheck(model, be, x + 0.01, x)


def test_corrupt_layer(backend_name):
    be = gen_backend(backend_name, "fp32", seed=0)
    layer = Corrupt(level=0.3, kind="mask")
    layer.configure((1000,))
    layer.allocate(be)
    x = be.array(np.ones((4, 1000)))
    y = be.to_host(layer.fprop(x))
    assert set(np.unique(y)) <= {0.0, 1.0} and 0.25 < 1 - y.mean() < 0.35
    delta = layer.bprop(be.array(np.full((4, 1000), 2.0)))
    np.testing.assert_array_equal(be.to_host(delta), 2 * y)  # gradient only where kept
    assert layer.fprop(x, inference=True) is x
    noisy = Corrupt(level=0.5, kind="gaussian")
    noisy.configure((1000,))
    noisy.allocate(be)
    z = be.to_host(noisy.fprop(x)) - 1
    assert abs(z.std() - 0.5) < 0.03 and abs(z.mean()) < 0.03
    with pytest.raises(ValueError):
        Corrupt(level=1.0)


def test_tied_layer_errors():
    with pytest.raises(ConfigError, match="no earlier layer named 'nope'"):
        Autoencoder([{"type": "affine", "nout": 3, "name": "enc"},
                     {"type": "tied_affine", "tied_to": "nope"}])
    plain = Model([{"type": "affine", "nout": 3, "name": "enc"},
                   {"type": "tied_affine", "tied_to": "enc"}], cost="mse")
    with pytest.raises(ConfigError, match="type: autoencoder"):
        plain.initialize((5,))
    assert isinstance(plain.layers[1], TiedAffine)


@pytest.fixture(scope="module")
def digits01():
    return load_dataset({"name": "digits", "batch_size": 32, "standardized": False})


@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
def test_denoising_autoencoder_learns_digits(digits01, numerics):
    be = gen_backend("cpu", numerics, seed=0)
    model = Autoencoder([{"type": "corrupt", "level": 0.3},
                         {"type": "affine", "nout": 32, "activation": "logistic",
                          "name": "enc"},
                         {"type": "tied_affine", "tied_to": "enc", "activation": "logistic"}],
                        cost="cross_entropy_binary", be=be)
    before = model.eval(digits01.valid, ["reconstruction_error", "mse"])
    hist = model.fit(digits01.train, build_optimizer({"type": "adam", "learning_rate": 0.01}),
                     8, valid=digits01.valid, metrics=["reconstruction_error", "mse"])
    after = hist.final
    assert after["val_reconstruction_error"] < 0.25 * before["reconstruction_error"]
    np.testing.assert_allclose(after["val_mse"] * 64, after["val_reconstruction_error"],
                               rtol=1e-6)
    recon = model.predict(digits01.valid.x[:5])
    assert recon.shape == (5, 64) and recon.min() >= 0 and recon.max() <= 1


def test_autoencoder_yaml_and_checkpoint(tmp_path):
    cfg = load_config("examples/autoencoder/digits-dae.yaml")
    cfg["training"]["epochs"] = 2
    exp = build_experiment(cfg)
    assert isinstance(exp.model, Autoencoder)
    hist = exp.run()
    assert len(hist) == 2 and "val_reconstruction_error" in hist.final
    path = tmp_path / "dae.npz"
    exp.model.save(str(path), exp.optimizer)
    loaded = Model.load(str(path))
    assert isinstance(loaded, Autoencoder) and loaded.epoch == 2
    x = exp.data.valid.x[:7]
    np.testing.assert_array_equal(loaded.predict(x), exp.model.predict(x))
