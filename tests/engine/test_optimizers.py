"""Optimizer updates against steps computed by hand; schedules; loss scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neon.backends import gen_backend
from neon.errors import ConfigError
from neon.layers import Param
from neon.optimizers import build_optimizer, build_schedule
from neon.optimizers.loss_scaling import DynamicScaling, NoScaling, StaticScaling, build_loss_scaler

W0 = np.array([1.0, -2.0, 0.5])
G = [np.array([0.1, 0.2, -0.3]), np.array([-0.4, 0.1, 0.2]), np.array([0.3, 0.3, 0.3])]


def run_steps(spec, be, grad_scale=1.0, decay=True):
    opt = build_optimizer(spec)
    p = Param("W", be.array(W0), be.zeros(3), layer="l", decay=decay)
    for g in G:
        p.grad[...] = be.array(g * grad_scale)
        opt.optimize([p], be, grad_scale=grad_scale)
    return be.to_host(p.value)


def reference(kind, lr, **kw):
    w = W0.copy()
    state = {}
    for t, g in enumerate(G, start=1):
        g = g + kw.get("wd", 0.0) * w
        if kind == "sgd":
            w = w - lr * g
        elif kind == "momentum":
            v = kw["mu"] * state.get("v", 0.0) - lr * g
            state["v"] = v
            w = w + v
        elif kind == "nesterov":
            v = kw["mu"] * state.get("v", 0.0) - lr * g
            state["v"] = v
            w = w + kw["mu"] * v - lr * g
        elif kind == "rmsprop":
            s = kw["rho"] * state.get("s", 0.0) + (1 - kw["rho"]) * g * g
            state["s"] = s
            w = w - lr * g / (np.sqrt(s) + kw["eps"])
        elif kind == "adadelta":
            eg = kw["rho"] * state.get("eg", 0.0) + (1 - kw["rho"]) * g * g
            dx = -np.sqrt(state.get("edx", 0.0) + kw["eps"]) / np.sqrt(eg + kw["eps"]) * g
            state["edx"] = kw["rho"] * state.get("edx", 0.0) + (1 - kw["rho"]) * dx * dx
            state["eg"] = eg
            w = w + lr * dx
        elif kind == "adam":
            b1, b2 = kw["b1"], kw["b2"]
            m = b1 * state.get("m", 0.0) + (1 - b1) * g
            v = b2 * state.get("v", 0.0) + (1 - b2) * g * g
            state.update(m=m, v=v)
            mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
            # the paper's efficient form: epsilon added before bias correction of v
            w = w - lr * mhat / (np.sqrt(vhat) + kw["eps"] / math.sqrt(1 - b2**t))
    return w


CASES = [
    ({"type": "sgd", "learning_rate": 0.1}, ("sgd", 0.1, {})),
    ({"type": "sgd", "learning_rate": 0.1, "weight_decay": 0.01}, ("sgd", 0.1, {"wd": 0.01})),
    ({"type": "momentum", "learning_rate": 0.1, "momentum": 0.9},
     ("momentum", 0.1, {"mu": 0.9})),
    ({"type": "nesterov", "learning_rate": 0.05, "momentum": 0.8},
     ("nesterov", 0.05, {"mu": 0.8})),
    ({"type": "rmsprop", "learning_rate": 0.01, "decay_rate": 0.9, "epsilon": 1e-6},
     ("rmsprop", 0.01, {"rho": 0.9, "eps": 1e-6})),
    ({"type": "adadelta", "learning_rate": 1.0, "decay": 0.95, "epsilon": 1e-6},
     ("adadelta", 1.0, {"rho": 0.95, "eps": 1e-6})),
    ({"type": "adam", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8},
     ("adam", 0.01, {"b1": 0.9, "b2": 0.999, "eps": 1e-8})),
]


@pytest.mark.parametrize("spec,ref", CASES,
                         ids=[c[0]["type"] + str(i) for i, c in enumerate(CASES)])
@pytest.mark.parametrize("numerics", ["fp64", "fp32"])
def test_update_matches_hand_computation(spec, ref, numerics, backend_name):
    be = gen_backend(backend_name, numerics)
    got = run_steps(spec, be)
    kind, lr, kw = ref
    expected = reference(kind, lr, **kw)
    tol = 1e-12 if numerics == "fp64" else 1e-6
    np.testing.assert_allclose(got, expected, rtol=tol * 10, atol=tol)


def test_grad_scale_is_removed(backend_name):
    be = gen_backend(backend_name, "fp64")
    spec = {"type": "momentum", "learning_rate": 0.1}
    np.testing.assert_allclose(run_steps(spec, be, grad_scale=1024.0), run_steps(spec, be))


def test_no_weight_decay_on_biases(backend_name):
    be = gen_backend(backend_name, "fp64")
    spec = {"type": "sgd", "learning_rate": 0.1, "weight_decay": 0.5}
    np.testing.assert_allclose(run_steps(spec, be, decay=False), reference("sgd", 0.1))


def test_fp16_state_is_rounded_in_the_pure_recipe():
    be = gen_backend("cpu", "fp16", recipe="pure")
    opt = build_optimizer({"type": "adam", "learning_rate": 1e-3})
    p = Param("W", be.array(W0), be.zeros(3), layer="l")
    p.grad[...] = be.array(G[0] * 1.0001)
    opt.optimize([p], be)
    assert p.master is None
    for arr in (p.value, p.state["m"], p.state["v"]):
        np.testing.assert_array_equal(arr, arr.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("numerics", ["fp16", "bf16"])
@pytest.mark.parametrize("spec", [c[0] for c in CASES], ids=[c[0]["type"] for c in CASES])
def test_mixed_recipe_steps_an_fp32_master_with_fp32_state(spec, numerics, backend_name):
    """The default 16-bit recipe: the optimizer steps an fp32 master copy of the weights with
    fp32 state, as the fp32 backend steps its weights (to the last bit), and the layers read
    the master rounded to the 16-bit format."""
    import ml_dtypes

    store = np.float16 if numerics == "fp16" else ml_dtypes.bfloat16
    grads = [g.astype(store).astype(np.float64) for g in G]  # exact in both backends
    results = []
    for be in (gen_backend(backend_name, "fp32"), gen_backend(backend_name, numerics)):
        opt = build_optimizer(spec)
        p = Param("W", be.array(W0), be.zeros(3), layer="l")
        for g in grads:
            p.grad[...] = be.array(g)
            opt.optimize([p], be)
        results.append((p, be))
    (ref, ref_be), (mixed, be) = results
    assert be.storage.recipe == "mixed" and ref.master is None
    np.testing.assert_array_equal(be.to_host(mixed.master), ref_be.to_host(ref.value))
    for slot, value in ref.state.items():
        np.testing.assert_array_equal(be.to_host(mixed.state[slot]), ref_be.to_host(value))
    np.testing.assert_array_equal(be.to_host(mixed.value),
                                  be.to_host(mixed.master).astype(store).astype(np.float32))


def test_schedules():
    step = build_schedule({"type": "step", "step_epochs": 2, "ratio": 0.5})
    assert [step(1.0, e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    at = build_schedule({"type": "step", "epochs": [1, 3], "ratio": 0.1})
    assert [round(at(1.0, e), 6) for e in range(4)] == [1.0, 0.1, 0.1, 0.01]
    exp = build_schedule({"type": "exponential", "decay": 0.9})
    assert exp(2.0, 3) == pytest.approx(2.0 * 0.9**3)
    opt = build_optimizer({"type": "sgd", "learning_rate": 1.0, "schedule": "exponential"})
    opt.set_epoch(2)
    assert opt.lr == pytest.approx(0.95**2)


def test_optimizer_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'adam'"):
        build_optimizer({"type": "adma"})
    with pytest.raises(ConfigError, match="momentum must be in"):
        build_optimizer({"type": "sgd", "momentum": 1.5})
    with pytest.raises(ConfigError, match="learning_rate: expected float"):
        build_optimizer({"type": "sgd", "learning_rate": "fast"})
    with pytest.raises(ConfigError, match="exactly one"):
        build_schedule({"type": "step"})


def test_loss_scalers():
    assert isinstance(build_loss_scaler(None, "fp16"), DynamicScaling)
    assert isinstance(build_loss_scaler(None, "fp32"), NoScaling)
    assert build_loss_scaler(128, "fp16").scale == 128.0
    assert isinstance(build_loss_scaler({"type": "static", "scale": 8}, "fp16"), StaticScaling)
    dyn = DynamicScaling(init_scale=1024, growth_interval=2)
    assert dyn.update(False) is False and dyn.scale == 512 and dyn.skipped_steps == 1
    assert dyn.update(True) and dyn.scale == 512
    assert dyn.update(True) and dyn.scale == 1024
    state = dyn.state_dict()
    other = DynamicScaling()
    other.load_state_dict(state)
    assert other.scale == 1024 and other.skipped_steps == 1


# the velocity and the weights it steps: both in the numerics (pure), the velocity in fp32
# (the fused kernel's two store modes), both in fp32 (mixed: the master copy)
STEP_STORAGE = {"pure": ("pure", None), "state32": ("pure", {"optimizer_state": "fp32"}),
                "mixed": ("mixed", None)}


@pytest.mark.parametrize("numerics,sr,storage", [
    ("fp32", False, "pure"), ("fp64", False, "pure"),
    *((n, sr, s) for n in ("fp16", "bf16") for sr in (False, True) for s in STEP_STORAGE)])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_fused_cpu_sgd_step_matches_the_generic_backend_step(numerics, sr, momentum, nesterov,
                                                             storage):
    """CPUBackend.sgd_update (one numba pass) against Backend.sgd_update (array ops), for
    each way of storing the velocity and the stepped weights."""
    from neon.backends.backend import Backend

    recipe, classes = STEP_STORAGE[storage]
    rng = np.random.default_rng(0)
    fused, generic = (gen_backend("cpu", numerics, stochastic_rounding=sr, seed=3,
                                  recipe=recipe, storage=classes) for _ in range(2))
    wide_w = storage == "mixed"
    wide_v = storage != "pure"
    w0 = rng.standard_normal(5000)
    g0 = rng.standard_normal(5000) * 100
    v0 = rng.standard_normal(5000) * 0.1
    out = []
    for be, step in ((fused, fused.sgd_update), (generic, lambda *a: Backend.sgd_update(
            generic, *a))):
        w, g, v = be.array(w0), be.array(g0), be.array(v0)
        g_before = g.copy()
        step(w, g, v if momentum else None, 0.05, momentum, nesterov, 1 / 128, 1e-3)
        out.append((w, v))
        np.testing.assert_array_equal(g, g_before)  # the gradient is left alone
    (wf, vf), (wg, vg) = out
    if sr:
        # stochastic rounding draws other bits in one pass: compare to one rounding step
        ulp = 2.0**-10 if numerics == "fp16" else 2.0**-7
        np.testing.assert_allclose(wf, wg, rtol=2 * ulp, atol=1e-6)
        return
    tols = {"fp64": 1e-15, "fp32": 1e-6, "fp16": 2.0**-10, "bf16": 2.0**-7}
    # At full precision the two orders of operations differ by an ulp of the operands, which
    # is large against a result that cancels to near zero: bound the error by the operands.
    ulps = {"fp64": 4e-16, "fp32": 2.4e-7}
    for got, want, start, wide in ((wf, wg, w0, wide_w), (vf, vg, v0, wide_v))[
            : 2 if momentum else 1]:
        fmt = "fp32" if wide else numerics
        ulp = ulps.get(fmt)
        atol = ulp * np.abs(start).max() if ulp else tols[fmt] * 1e-3
        np.testing.assert_allclose(got, want, rtol=tols[fmt], atol=atol)
    if numerics in ("fp16", "bf16"):
        store = np.float16 if numerics == "fp16" else __import__("ml_dtypes").bfloat16
        for got, wide in ((wf, wide_w), (vf, wide_v))[: 2 if momentum else 1]:
            rounded = got.astype(store).astype(np.float32)
            if wide:  # kept in fp32: not rounded to the 16-bit format
                assert not np.array_equal(got, rounded)
            else:
                np.testing.assert_array_equal(got, rounded)
