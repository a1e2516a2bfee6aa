"""Model training end to end: determinism, callbacks, divergence, checkpoints, accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from neon.backends import gen_backend
from neon.callbacks import LambdaCallback, StopTraining
from neon.config import apply_overrides, build_experiment, load_config
from neon.datasets import load_dataset
from neon.errors import TrainingDiverged
from neon.models import Model
from neon.optimizers import build_optimizer

DIGITS = "examples/mlp/digits-small.yaml"


def small_model(be, act="relu"):
    return Model([{"type": "affine", "nout": 32, "activation": act, "init": "kaiming"},
                  {"type": "dropout", "keep": 0.9},
                  {"type": "affine", "nout": 10, "activation": "softmax"}],
                 cost="cross_entropy", be=be)


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits", "batch_size": 32})


def train(digits, numerics="fp32", epochs=3, seed=0, **kw):
    be = gen_backend("cpu", numerics, seed=seed, **kw)
    model = small_model(be)
    hist = model.fit(digits.train, build_optimizer({"type": "momentum", "learning_rate": 0.05}),
                     epochs, valid=digits.valid, metrics=["misclassification", "log_loss"])
    return model, hist


@pytest.mark.parametrize("numerics", ["fp32", "fp16", "bf16"])
def test_same_seed_is_bit_identical(digits, numerics):
    m1, h1 = train(digits, numerics)
    m2, h2 = train(digits, numerics)
    for p, q in zip(m1.params, m2.params):
        np.testing.assert_array_equal(p.value, q.value)
    assert [e["train_loss"] for e in h1.epochs] == [e["train_loss"] for e in h2.epochs]
    m3, _ = train(digits, numerics, seed=1)
    assert not np.array_equal(m1.params[0].value, m3.params[0].value)


@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
def test_a_batch_is_the_datasets_own_rows_read_only_unless_it_must_be_rounded(numerics):
    """At full precision no copy is made, and no layer can write into the dataset; in fp16
    the batch is a rounded copy; other dtypes and strided batches are copied."""
    model = small_model(gen_backend("cpu", numerics))
    model.initialize((64,))
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32) / 3
    before = x.copy()
    got = model._inputs(x[8:24], {})
    if numerics == "fp32":
        assert np.shares_memory(got, x) and not got.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            got[0, 0] = 1.0
        np.testing.assert_array_equal(got, x[8:24])
    else:
        assert not np.shares_memory(got, x)
        np.testing.assert_array_equal(got, x[8:24].astype(np.float16).astype(np.float32))
    for other in (x[8:24].astype(np.float64), x[8:24, ::2]):
        got = model._inputs(other, {})
        assert got.dtype == np.float32 and not np.shares_memory(got, x)
    np.testing.assert_array_equal(x, before)


def test_history_records(digits):
    _, hist = train(digits, epochs=2)
    assert [e["epoch"] for e in hist.epochs] == [1, 2]
    for key in ("train_loss", "val_misclassification", "val_log_loss", "seconds", "lr"):
        assert key in hist.final
    assert hist.metric("train_loss")[1] < hist.metric("train_loss")[0]


def test_callbacks_see_every_epoch_and_can_stop(digits):
    seen = []

    def on_end(epoch, metrics):
        seen.append((epoch, metrics["val_misclassification"]))
        return epoch == 2

    be = gen_backend("cpu")
    model = small_model(be)
    hist = model.fit(digits.train, build_optimizer("sgd"), 10, valid=digits.valid,
                     callbacks=[LambdaCallback(on_epoch_end=on_end)])
    assert [e for e, _ in seen] == [1, 2] and hist.stopped_early and model.epoch == 2

    def raiser(epoch, metrics):
        raise StopTraining

    hist = small_model(be).fit(digits.train, build_optimizer("sgd"), 5,
                               callbacks=[LambdaCallback(on_epoch_end=raiser)])
    assert len(hist) == 1


def test_a_callback_needs_only_the_hooks_it_uses(digits):
    """Any object with some of the hooks is a callback (no base class needed); one with
    none is refused, naming it."""

    class StopAtTwo:
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, epoch, metrics):
            self.epochs.append(epoch)
            return epoch == 2

    cb = StopAtTwo()
    hist = small_model(gen_backend("cpu")).fit(digits.train, build_optimizer("sgd"), 5,
                                               callbacks=[cb])
    assert cb.epochs == [1, 2] and len(hist) == 2 and hist.stopped_early
    with pytest.raises(TypeError, match="callback Ellipsis has none of the hooks"):
        small_model(gen_backend("cpu")).fit(digits.train, build_optimizer("sgd"), 1,
                                            callbacks=[...])


@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
def test_a_model_built_in_python_saves_and_loads(tmp_path, digits, numerics):
    """``Model([...layer dicts...], cost, be=be)``, ``fit``, ``save``, ``Model.load``: the
    checkpoint holds the specs, the backend's numerics and the optimizer's spec."""
    be = gen_backend("cpu", numerics, seed=0)
    model = small_model(be)
    opt = build_optimizer({"type": "adam", "learning_rate": 0.01,
                           "schedule": {"type": "step", "step_epochs": 1, "ratio": 0.5}})
    model.fit(digits.train, opt, 2)
    path = tmp_path / "model.npz"
    model.save(str(path))
    loaded = Model.load(str(path))
    assert loaded.be.storage.names() == be.storage.names() and loaded.epoch == 2
    assert loaded.optimizer.config() == opt.config() and loaded.optimizer.steps == opt.steps
    for p, q in zip(model.params, loaded.params):
        np.testing.assert_array_equal(p.value, q.value)
        for slot, value in p.state.items():
            np.testing.assert_array_equal(value, q.state[slot])
    np.testing.assert_array_equal(model.predict(digits.valid.x), loaded.predict(digits.valid.x))


def test_a_model_of_layer_objects_is_loaded_into_one_built_in_python(tmp_path, digits):
    from neon.errors import UserError
    from neon.layers import Affine
    from neon.serialize import load_weights

    def build():
        return Model([Affine(10, activation="softmax")], "cross_entropy",
                     be=gen_backend("cpu"))

    model = build()
    model.fit(digits.train, build_optimizer("sgd"), 1)
    path = tmp_path / "m.npz"
    model.save(str(path))
    with pytest.raises(UserError, match=r"build the Model in Python and call .*load_weights"):
        Model.load(str(path))
    other = build()
    load_weights(other, str(path))
    np.testing.assert_array_equal(other.params[0].value, model.params[0].value)


def test_divergence_raises_with_epoch(digits):
    be = gen_backend("cpu")
    model = small_model(be, act="identity")
    with pytest.raises(TrainingDiverged, match="diverged at epoch 1"):
        model.fit(digits.train, build_optimizer({"type": "sgd", "learning_rate": 1e6}), 3)


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path, digits):
    cfg = apply_overrides(load_config(DIGITS), epochs=4)
    full = build_experiment(cfg)
    full_hist = full.run()

    part = build_experiment(apply_overrides(cfg, epochs=2))
    part.run()
    path = tmp_path / "ckpt.npz"
    part.model.save(str(path))
    restored = Model.load(str(path))
    assert restored.epoch == 2 and restored.optimizer.steps == part.optimizer.steps
    hist = restored.fit(part.data.train, restored.optimizer, 4, valid=part.data.valid,
                        metrics=part.metrics)
    assert [e["epoch"] for e in hist.epochs] == [3, 4]
    for p, q in zip(full.model.params, restored.params):
        np.testing.assert_array_equal(p.value, q.value)
    assert hist.final["train_loss"] == full_hist.final["train_loss"]


def test_checkpoint_has_no_pickle_and_fp16_storage(tmp_path):
    exp = build_experiment(apply_overrides(load_config(DIGITS), numerics="fp16", epochs=1))
    exp.run()
    path = tmp_path / "m.npz"
    exp.model.save(str(path))
    with np.load(path, allow_pickle=False) as f:
        assert f["param/affine_0/W"].dtype == np.float16
        assert "opt/affine_0/W/velocity" in f.files
    loaded = Model.load(str(path))
    np.testing.assert_array_equal(loaded.params[0].value, exp.model.params[0].value)
    assert loaded.be.numerics == "fp16"


@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
def test_digits_example_reaches_95_percent(numerics):
    exp = build_experiment(apply_overrides(load_config(DIGITS), numerics=numerics))
    hist = exp.run()
    assert hist.final["val_misclassification"] <= 0.05, hist.final


def test_fp16_dynamic_loss_scaling_is_recorded(digits):
    _, hist = train(digits, "fp16", epochs=1)
    assert hist.final["loss_scale"] > 1 and "skipped_steps" in hist.final


def test_diagnostics_in_history(digits):
    be = gen_backend("cpu", "fp16")
    model = small_model(be)
    hist = model.fit(digits.train, build_optimizer("sgd"), 1,
                     diagnostics={"timing": True, "ranges": True})
    diag = hist.final["diagnostics"]
    assert set(diag["timing"]) >= {"affine_0", "affine_1", "optimizer"}
    assert diag["timing"]["affine_0"]["fprop_ms"] > 0
    r = diag["ranges"]["affine_0"]
    assert r["W"]["min"] < 0 < r["W"]["max"] and r["output"]["min"] >= 0  # relu
    assert 0 <= diag["flow"]["affine_0"]["underflow"] < 1


def test_predict_and_eval_agree(digits):
    model, _ = train(digits, epochs=2)
    probs = model.predict(digits.valid)
    assert probs.shape == (digits.valid.ndata, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    err = float((probs.argmax(1) != digits.valid.y).mean())
    assert err == pytest.approx(model.eval(digits.valid)["misclassification"])


def test_batch_norm_model_trains(digits):
    be = gen_backend("cpu", "fp32")
    model = Model([{"type": "affine", "nout": 32, "activation": "relu", "batch_norm": True},
                   {"type": "affine", "nout": 10, "activation": "softmax"}], be=be)
    hist = model.fit(digits.train, build_optimizer({"type": "adam"}), 3, valid=digits.valid)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Affine", "BatchNorm", "ActivationLayer", "Affine"]
    assert hist.final["val_misclassification"] < 0.15
