"""Momentum SGD folded into the weight-gradient GEMM (``Optimizer.fold_updates``): the
backend primitives against their generic references, whole trainings against the unfolded
path, and the cases that must keep the stored gradient."""

from __future__ import annotations

import numpy as np
import pytest

from neon.backends import cpu_blas, gen_backend
from neon.backends.backend import Backend
from neon.datasets import load_dataset
from neon.models import Model
from neon.models.autoencoder import Autoencoder
from neon.optimizers import build_optimizer


@pytest.mark.parametrize("shape", [(4, 5), (512, 600)])  # the BLAS threads the big axpy
@pytest.mark.parametrize("decay", [0.0, 0.05])
def test_momentum_finish_matches_the_generic_version(decay, shape):
    be = gen_backend("cpu", "fp32")
    rng = np.random.default_rng(1)
    w, v = rng.standard_normal((2, *shape)).astype(np.float32)
    w_ref, v_ref = w.copy(), v.copy()
    Backend.momentum_finish(be, w_ref, v_ref, decay)
    be.momentum_finish(w, v, decay)
    if decay:
        np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(v, v_ref, rtol=1e-6, atol=1e-7)
    else:  # w += v: one rounding, whoever adds
        np.testing.assert_array_equal(w, w_ref)
        np.testing.assert_array_equal(v, v_ref)


def test_momentum_finish_without_decay_is_the_blas_axpy(monkeypatch):
    """On the BLAS's threads (the numba pass runs on one core); numpy's OpenBLAS is always
    there to bind."""
    blas = cpu_blas.Cblas("openblas")
    calls = []
    monkeypatch.setattr(blas, "axpy", lambda *a, real=blas.axpy: calls.append(a[0]) or real(*a))
    monkeypatch.setattr(cpu_blas, "BLAS", blas)
    be = gen_backend("cpu", "fp32")
    w, v = np.ones((2, 3, 4), np.float32)
    be.momentum_finish(w, v, 0.0)  # w = 2
    be.momentum_finish(w, v, 0.1)  # v = 1 - 0.1 * 2, w = 2 + v
    assert calls == [1.0]
    np.testing.assert_allclose(w, 2.8, rtol=1e-6)
    np.testing.assert_allclose(v, 0.8, rtol=1e-6)


def _fit(numerics: str, opt_spec: dict, fold: bool, diagnostics: dict | None = None,
         epochs: int = 3, storage: dict | None = None) -> Model:
    data = load_dataset({"name": "synthetic", "shape": [12], "nclass": 4, "ntrain": 96,
                         "nvalid": 32, "batch_size": 16})
    be = gen_backend("cpu", numerics, seed=0, storage=storage)
    model = Model([{"type": "affine", "nout": 16, "activation": "relu"},
                   {"type": "affine", "nout": 4, "activation": "softmax"}], be=be)
    opt = build_optimizer(opt_spec)
    if not fold:
        opt.fold_updates = lambda params, be: None
    model.fit(data.train, opt, epochs=epochs, metrics=None, diagnostics=diagnostics)
    return model


MOMENTUM = {"type": "momentum", "learning_rate": 0.05, "momentum": 0.9}


@pytest.mark.parametrize("numerics", ["fp32", "fp64"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_folded_training_equals_the_stored_gradient_path(numerics, weight_decay):
    spec = {**MOMENTUM, "weight_decay": weight_decay}
    folded, plain = _fit(numerics, spec, True), _fit(numerics, spec, False)
    tol = 1e-12 if numerics == "fp64" else 2e-5
    for pf, pp in zip(folded.params, plain.params, strict=True):
        np.testing.assert_allclose(pf.value, pp.value, rtol=tol, atol=tol, err_msg=pf.key)
        np.testing.assert_allclose(pf.state["velocity"], pp.state["velocity"], rtol=tol,
                                   atol=tol, err_msg=pf.key)
    # never stored: the GEMMs fold the weights' step in, the epilogues the biases'
    assert {p.name for p in folded.params} == {"W", "b"}
    assert all(not p.grad.any() for p in folded.params)


def test_folded_training_steps_the_master_copy_of_16_bit_weights():
    """fp32 gradients, velocity and master weights with the weights the layers read in fp16
    (a storage override): the fold steps the master, and the weights are its rounding."""
    storage = {"weights": "fp16"}
    folded, plain = (_fit("fp32", MOMENTUM, fold, storage=storage) for fold in (True, False))
    assert all(not p.grad.any() for p in folded.params)
    for pf, pp in zip(folded.params, plain.params, strict=True):
        np.testing.assert_allclose(pf.master, pp.master, rtol=2e-5, atol=2e-5, err_msg=pf.key)
        np.testing.assert_allclose(pf.state["velocity"], pp.state["velocity"], rtol=2e-5,
                                   atol=2e-5, err_msg=pf.key)
        np.testing.assert_array_equal(pf.value, pf.master.astype(np.float16).astype(np.float32))
    assert all(p.fold is None and not p.folded for p in folded.params)


@pytest.mark.parametrize("numerics,spec,diagnostics", [
    ("fp32", {**MOMENTUM, "nesterov": True}, None),
    ("fp32", {**MOMENTUM, "gradient_clip_norm": 1.0}, None),
    ("fp32", {"type": "sgd", "learning_rate": 0.05}, None),
    ("fp32", {"type": "adam", "learning_rate": 0.01}, None),
    ("fp16", MOMENTUM, None),  # loss scaling checks the gradients
    ("bf16", MOMENTUM, None),  # 16-bit velocity: rounded, not a GEMM's output
    ("fp32", MOMENTUM, {"ranges": True}),  # the gradients' ranges are read
], ids=["nesterov", "clipping", "no-momentum", "adam", "fp16", "bf16", "ranges"])
def test_cases_that_keep_the_stored_gradient(numerics, spec, diagnostics):
    model = _fit(numerics, spec, True, diagnostics, epochs=1)
    assert all(p.grad.any() for p in model.params)


def test_tied_weights_keep_the_stored_gradient():
    """An encoder's W also gets the tied decoder's share: it is not folded (the biases
    are), and training equals training with folding off."""
    data = load_dataset({"name": "synthetic", "shape": [12], "nclass": 4, "ntrain": 64,
                         "nvalid": 16, "batch_size": 16})
    params = []
    for fold in (True, False):
        be = gen_backend("cpu", "fp32", seed=0)
        model = Autoencoder([{"type": "affine", "nout": 6, "activation": "tanh",
                              "name": "enc"},
                             {"type": "tied_affine", "tied_to": "enc"}], "sum_squared", be=be)
        opt = build_optimizer(MOMENTUM)
        if not fold:
            opt.fold_updates = lambda params, be: None
        model.fit(data.train, opt, epochs=2, metrics=None)
        params.append([(p.key, p.value.copy(), p.grad.any()) for p in model.params])
    assert [(key, stored) for key, _, stored in params[0]] == [
        ("enc/W", True), ("enc/b", False), ("tied_affine_0/b", False)]
    for (key, folded, _), (_, plain, _) in zip(*params, strict=True):
        np.testing.assert_allclose(folded, plain, rtol=1e-6, atol=1e-7, err_msg=key)
