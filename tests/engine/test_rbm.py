"""RBMs and DBNs: the CD-k and PCD updates against hand-computed cases with fixed random
draws, pseudo-likelihood against enumeration, training on digits through the same epoch
contract as Model.fit, and DBN pretraining against random initialisation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from gradcheck import check_layer

from neon.backends import gen_backend
from neon.callbacks import LambdaCallback
from neon.config import build_experiment, load_config
from neon.datasets import load_dataset
from neon.errors import ConfigError
from neon.layers.rbm import RBMLayer
from neon.models import DBN, RBM, Model
from neon.optimizers import build_optimizer


def sigm(x):
    return 1 / (1 + np.exp(-x))


def make_rbm(be, nv, nh, w=None, vbias=None, hbias=None, draws=None):
    layer = RBMLayer(nh)
    layer.configure((nv,))
    layer.allocate(be)
    for p, v in ((layer.W, w), (layer.vbias, vbias), (layer.hbias, hbias)):
        if v is not None:
            p.value[...] = be.array(np.asarray(v, dtype=float))
    if draws is not None:
        queue = [np.asarray(d, dtype=float) for d in draws]

        def draw(shape):
            d = queue.pop(0)
            assert d.shape == tuple(shape), (d.shape, shape)
            return be.array(d)

        layer.draw = draw
        layer.queue = queue
    return layer


def grads(layer):
    return {p.name: layer.be.to_host(p.grad) for p in layer.params}


def test_cd1_hand_computed(backend_name):
    """nv=2, nh=1, W=[[1], [-1]], zero biases, v0=[1, 0]:
    ph0 = sigm(1); draw 0.5 -> h = 1; P(v|h) = sigm([1, -1]); draws [0.9, 0.1] -> v = [0, 1];
    ph = sigm(-1). dW = -(v0^T ph0 - v^T ph) = [[-sigm(1)], [sigm(-1)]],
    dvbias = -(v0 - v) = [-1, 1], dhbias = -(sigm(1) - sigm(-1))."""
    be = gen_backend(backend_name, "fp64")
    layer = make_rbm(be, 2, 1, w=[[1.0], [-1.0]], draws=[[[0.5]], [[0.9, 0.1]]])
    layer.cd_gradients(be.array([[1.0, 0.0]]), k=1)
    g = grads(layer)
    s1, sm1 = sigm(1.0), sigm(-1.0)
    np.testing.assert_allclose(g["W"], [[-s1], [sm1]], rtol=1e-12)
    np.testing.assert_allclose(g["vbias"], [-1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(g["hbias"], [-(s1 - sm1)], rtol=1e-12)
    assert not layer.queue  # exactly the documented draws were used


def test_cd1_hand_computed_zero_weights(backend_name):
    """With W = 0 every probability is 1/2: the update only counts the data and the drawn
    visible states. v0 = [[1,0,1],[0,1,1]], v = [[1,0,0],[0,0,1]]:
    dW = -(v0^T/4 - v^T/4) per hidden unit, dvbias = -(mean v0 - mean v), dhbias = 0."""
    be = gen_backend(backend_name, "fp64")
    layer = make_rbm(be, 3, 2, w=np.zeros((3, 2)),
                     draws=[np.full((2, 2), 0.3), [[0.1, 0.9, 0.9], [0.9, 0.9, 0.1]]])
    layer.cd_gradients(be.array([[1.0, 0, 1], [0, 1, 1]]), k=1)
    g = grads(layer)
    np.testing.assert_allclose(g["W"], [[0, 0], [-0.25, -0.25], [-0.25, -0.25]], atol=1e-15)
    np.testing.assert_allclose(g["vbias"], [0, -0.5, -0.5], atol=1e-15)
    np.testing.assert_allclose(g["hbias"], [0, 0], atol=1e-15)


def reference_cd(w, vb, hb, v0, draws, k, chain=None):
    """The documented CD-k / PCD update in plain numpy, consuming ``draws`` in order."""
    draws = list(draws)
    ph0 = sigm(v0 @ w + hb)
    start = ph0 if chain is None else sigm(chain @ w + hb)
    h = (draws.pop(0) < start).astype(float)
    for step in range(k):
        v = (draws.pop(0) < sigm(h @ w.T + vb)).astype(float)
        ph = sigm(v @ w + hb)
        if step < k - 1:
            h = (draws.pop(0) < ph).astype(float)
    assert not draws
    n, m = len(v0), len(v)
    return ({"W": -(v0.T @ ph0 / n - v.T @ ph / m), "vbias": -(v0.mean(0) - v.mean(0)),
             "hbias": -(ph0.mean(0) - ph.mean(0))}, v)


@pytest.mark.parametrize("k", [1, 3])
def test_cdk_matches_reference(backend_name, k):
    be = gen_backend(backend_name, "fp64")
    rng = np.random.default_rng(k)
    nv, nh, n = 5, 4, 6
    w, vb, hb = rng.normal(0, 1, (nv, nh)), rng.normal(0, 1, nv), rng.normal(0, 1, nh)
    v0 = (rng.random((n, nv)) < 0.5).astype(float)
    draws = [rng.random((n, nh))]
    for step in range(k):
        draws.append(rng.random((n, nv)))
        if step < k - 1:
            draws.append(rng.random((n, nh)))
    layer = make_rbm(be, nv, nh, w, vb, hb, draws=draws)
    layer.cd_gradients(be.array(v0), k=k)
    want, _ = reference_cd(w, vb, hb, v0, draws, k)
    for name, value in grads(layer).items():
        np.testing.assert_allclose(value, want[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_pcd_keeps_its_chain(backend_name):
    """PCD: the chain starts as a copy of the first batch, its final visible states persist,
    and the next update's negative phase starts from them, not from the new data."""
    be = gen_backend(backend_name, "fp64")
    rng = np.random.default_rng(0)
    nv, nh, n = 4, 3, 5
    w, vb, hb = rng.normal(0, 1, (nv, nh)), rng.normal(0, 1, nv), rng.normal(0, 1, nh)
    batches = [(rng.random((n, nv)) < 0.5).astype(float), np.zeros((n, nv)), np.ones((n, nv))]
    draws = [d for _ in range(3) for d in (rng.random((n, nh)), rng.random((n, nv)))]
    layer = make_rbm(be, nv, nh, w, vb, hb, draws=list(draws))
    chain = batches[0]
    differs = False
    for i, v0 in enumerate(batches):
        layer.cd_gradients(be.array(v0), k=1, persistent=True)
        step_draws = draws[2 * i: 2 * i + 2]
        cd_want, _ = reference_cd(w, vb, hb, v0, step_draws, 1)
        want, chain = reference_cd(w, vb, hb, v0, step_draws, 1, chain=chain)
        differs |= bool(np.abs(cd_want["W"] - want["W"]).max() > 1e-3)
        for name, value in grads(layer).items():
            np.testing.assert_allclose(value, want[name], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(be.to_host(layer.chain), chain)
    assert differs  # the case tells PCD from CD restarted at the data


def test_pseudo_likelihood_and_free_energy_by_enumeration(backend_name):
    be = gen_backend(backend_name, "fp64")
    rng = np.random.default_rng(0)
    nv, nh = 4, 3
    w, vb, hb = rng.normal(0, 1, (nv, nh)), rng.normal(0, 1, nv), rng.normal(0, 1, nh)
    layer = make_rbm(be, nv, nh, w, vb, hb)
    states = np.array(list(itertools.product([0.0, 1.0], repeat=nv)))
    hs = np.array(list(itertools.product([0.0, 1.0], repeat=nh)))
    # F(v) = -log sum_h exp(-E(v, h))
    energy = -(states @ vb)[:, None] - (hs @ hb)[None, :] - states @ w @ hs.T
    free = -np.log(np.exp(-energy).sum(axis=1))
    np.testing.assert_allclose(be.to_host(layer.free_energy(be.array(states))), free,
                               rtol=1e-10)
    want = np.zeros(len(states))
    for i in range(nv):
        flipped = states.copy()
        flipped[:, i] = 1 - flipped[:, i]
        f_flip = -np.log(np.exp(-(-(flipped @ vb)[:, None] - (hs @ hb)[None, :]
                                  - flipped @ w @ hs.T)).sum(axis=1))
        want += np.log(np.exp(-free) / (np.exp(-free) + np.exp(-f_flip)))
    got = be.to_host(layer.pseudo_log_likelihood(be.array(states), chunk=7))  # several blocks
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_rbm_layer_as_feature_layer_gradient(backend_name):
    be = gen_backend(backend_name, "fp64", seed=0)
    layer = RBMLayer(3, init={"type": "gaussian", "scale": 0.5})
    check_layer(layer, be, (5,), batch=4)


@pytest.fixture(scope="module")
def digits01():
    return load_dataset({"name": "digits", "batch_size": 20, "standardized": False})


@pytest.mark.parametrize("numerics,persistent", [("fp32", False), ("fp32", True),
                                                 ("fp16", False)])
def test_rbm_trains_on_digits(digits01, numerics, persistent):
    be = gen_backend("cpu", numerics, seed=0)
    model = RBM(nhidden=32, k=1, persistent=persistent, be=be)
    metrics = ["reconstruction_error", "pseudo_likelihood", "mse"]
    before = model.eval(digits01.valid, metrics)
    seen = []
    cb = LambdaCallback(on_epoch_end=lambda e, m: seen.append((e, dict(m))))
    opt = build_optimizer({"type": "momentum", "learning_rate": 0.05, "momentum": 0.5})
    hist = model.fit(digits01.train, opt, 4, callbacks=[cb], valid=digits01.valid,
                     metrics=metrics)
    final = hist.final
    assert [e for e, _ in seen] == [1, 2, 3, 4] and seen[-1][1] == final
    assert set(final) >= {"epoch", "train_loss", "lr", "seconds", "val_reconstruction_error",
                          "val_pseudo_likelihood", "val_mse"}
    assert final["val_reconstruction_error"] < 0.6 * before["reconstruction_error"]
    assert final["val_pseudo_likelihood"] > before["pseudo_likelihood"] + 10
    assert math.isclose(final["val_mse"] * 64, final["val_reconstruction_error"], rel_tol=1e-6)
    if persistent:
        assert model.rbm.chain.shape == (20, 64)
    # training continues from the epoch reached; a callback may stop it
    more = model.fit(digits01.train, opt, 10, callbacks=[LambdaCallback(
        on_epoch_end=lambda e, m: e >= 5)], valid=digits01.valid, metrics=metrics)
    assert [r["epoch"] for r in more.epochs] == [5] and more.stopped_early
    assert model.predict(digits01.valid.x[:3]).shape == (3, 32)


def test_rbm_rejects_classification_metrics(digits01):
    model = RBM(nhidden=4)
    with pytest.raises(ConfigError, match="does not apply to an rbm"):
        model.fit(digits01.train, build_optimizer("sgd"), 1, valid=digits01.valid,
                  metrics=["misclassification"])


def test_dbn_pretraining_beats_random_init(digits01):
    """At 2 fine-tuning epochs the DBN-initialised 64-128-64-10 MLP misclassifies about 10%
    of the validation digits, the same MLP from Glorot initialisation about 48% (measured
    over seeds 0-2: 0.111/0.095/0.092 against 0.485/0.735/0.482); after 20 epochs both reach
    about 2%."""
    data = load_dataset({"name": "digits", "batch_size": 32, "standardized": False})
    errors = {}
    for label, pre, init in (("dbn", 10, None), ("random", 0, "glorot")):
        be = gen_backend("cpu", "fp32", seed=0)
        model = DBN([128, 64], 10, init=init, be=be, pretrain={
            "epochs": pre, "optimizer": {"type": "momentum", "learning_rate": 0.2,
                                         "momentum": 0.5}})
        opt = build_optimizer({"type": "momentum", "learning_rate": 0.3, "momentum": 0.9})
        hist = model.fit(data.train, opt, 2, valid=data.valid, metrics=["misclassification"])
        errors[label] = hist.final["val_misclassification"]
        if pre:
            assert len(model.pretrain_history) == 2 * pre and model.pretrained
            assert "pretrain_seconds" in hist.epochs[0]
            assert "pretrain_seconds" not in hist.epochs[1]
    assert errors["dbn"] < 0.2 and errors["dbn"] < errors["random"] - 0.2, errors


def test_rbm_and_dbn_from_yaml(tmp_path):
    cfg = load_config("examples/rbm/digits-rbm.yaml")
    cfg["training"]["epochs"] = 2
    exp = build_experiment(cfg)
    assert isinstance(exp.model, RBM) and exp.model.k == 1
    records = []
    hist = exp.run(callbacks=[LambdaCallback(on_epoch_end=lambda e, m: records.append(e))])
    assert records == [1, 2] and "val_pseudo_likelihood" in hist.final
    path = tmp_path / "rbm.npz"
    exp.model.save(str(path))
    loaded = Model.load(str(path))
    assert isinstance(loaded, RBM)
    np.testing.assert_array_equal(loaded.predict(exp.data.valid.x[:4]),
                                  exp.model.predict(exp.data.valid.x[:4]))

    cfg = load_config("examples/rbm/digits-dbn.yaml")
    cfg["training"]["epochs"] = 1
    cfg["model"]["pretrain"]["epochs"] = 1
    exp = build_experiment(cfg)
    assert isinstance(exp.model, DBN)
    hist = exp.run()
    assert hist.final["val_misclassification"] < 0.9
    hist2 = exp.run(epochs=2)  # continuing does not pretrain again
    assert [r["epoch"] for r in hist2.epochs] == [2] and "pretrain_seconds" not in hist2.final

    bad = load_config("examples/rbm/digits-rbm.yaml")
    bad["model"]["nhiden"] = 3
    with pytest.raises(ConfigError, match="did you mean 'nhidden'"):
        build_experiment(bad)
