"""Big passes on the BLAS's OpenMP threads (``neon.backends.cpu_omp``): bit for bit the
serial kernels, chunk boundaries and special values included; what runs them; and the
fallbacks without a team."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from neon.backends import cpu_blas, cpu_kernels, cpu_omp, gen_backend
from neon.datasets import load_dataset
from neon.models import Model
from neon.optimizers import build_optimizer

ON_MKL = cpu_blas.BLAS.library == "mkl"
needs_team = pytest.mark.skipif(not cpu_omp.TEAM.available,
                                reason="no oneMKL OpenMP runtime bound")
# sizes at the threshold, odd ones (chunks end mid-block) and a big one
SIZES = [cpu_omp.MIN_SIZE, cpu_omp.MIN_SIZE + 17, 1_000_003]


def _values(n, seed=0, scale=100.0):
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32) * scale
    x[:6] = [np.nan, -0.0, 65520.0, -1e-9, 3e38, -np.inf]  # NaN, overflow, underflow
    return x


def test_the_team_is_bound_with_onemkl():
    assert cpu_omp.TEAM.available == ON_MKL


@needs_team
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("stochastic", [False, True])
def test_rounding_on_the_team_is_the_serial_kernels(n, bf16, stochastic):
    """Stochastically, each chunk starts its counter where the serial kernel is at that
    element, so the random bits are the same."""
    x = _values(n)
    want = x.view(np.uint32).copy()
    if stochastic:
        serial = cpu_kernels.sround_bf16_fast if bf16 else cpu_kernels.sround_fp16_fast
        serial(want, np.uint64(11), np.uint64(2**40 + 3))
        assert cpu_omp.sround_16(x.view(np.uint32), 11, 2**40 + 3, bf16)
    else:
        (cpu_kernels.round_bf16_fast if bf16 else cpu_kernels.round_fp16_fast)(want)
        assert cpu_omp.round_16(x.view(np.uint32), bf16)
    np.testing.assert_array_equal(x.view(np.uint32), want)


@needs_team
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_the_momentum_step_on_the_team_is_the_serial_one(n, bf16, nesterov):
    rng = np.random.default_rng(1)
    w, g, v = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(3))
    w[:2], g[2] = [np.inf, np.nan], 1e30
    refs = [a.copy() for a in (w, g, v)]
    f = np.float32
    scalars = (f(0.01), f(0.9), nesterov, f(0.5), f(1e-3))
    cpu_kernels._momentum_16_one_pass(*refs, *scalars, bf16)
    assert cpu_omp.momentum_16(w, g, v, *scalars, bf16=bf16)
    for got, want in zip((w, g, v), refs, strict=True):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@needs_team
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_the_master_step_on_the_team_is_the_serial_one_and_the_unfused_one(n, bf16, nesterov):
    """The mixed recipe's step: fp32 master weights and velocity, and the 16-bit copy the
    layers read, in one pass; the same bits as the full-precision step followed by a
    rounded copy."""
    rng = np.random.default_rng(4)
    w, g, v = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(3))
    w[:2], g[2] = [np.inf, np.nan], 1e30
    out = np.zeros(n, np.float32)
    f = np.float32
    scalars = (f(0.01), f(0.9), nesterov, f(0.5), f(1e-3))
    serial = [a.copy() for a in (w, g, v, out)]
    cpu_kernels.momentum_master_16(*serial, *scalars, bf16)
    unfused = [a.copy() for a in (w, g, v)]
    cpu_kernels.momentum_full(*unfused, *scalars)
    copy = unfused[0].copy()
    (cpu_kernels.round_bf16_fast if bf16 else cpu_kernels.round_fp16_fast)(copy.view(np.uint32))
    assert cpu_omp.momentum_master_16(w, g, v, out, *scalars, bf16=bf16)
    for got, want, again in zip((w, g, v, out), serial, (*unfused, copy), strict=True):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(got.view(np.uint32), again.view(np.uint32))


@needs_team
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_the_full_precision_steps_on_the_team_are_the_serial_ones(n, nesterov):
    rng = np.random.default_rng(3)
    w, g, v = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    w[0], g[1] = np.nan, np.inf
    refs = [a.copy() for a in (w, g, v)]
    f = np.float32
    cpu_kernels.momentum_full(*refs, f(0.01), f(0.9), nesterov, f(0.5), f(1e-3))
    assert cpu_omp.momentum_full(w, g, v, f(0.01), f(0.9), nesterov, f(0.5), f(1e-3))
    for got, want in zip((w, g, v), refs, strict=True):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    w2, v2 = w.copy(), v.copy()
    cpu_kernels.momentum_finish(w2, v2, f(0.003))
    assert cpu_omp.momentum_finish(w, v, 0.003)
    for got, want in zip((w, v), (w2, v2), strict=True):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    wide = np.ones(n)  # fp64 (gradient checks) stays serial
    assert not cpu_omp.momentum_finish(wide, wide, 0.1)


@needs_team
@pytest.mark.parametrize("n", SIZES)
def test_the_finiteness_check_on_the_team_finds_every_bad_value(n):
    x = np.random.default_rng(2).standard_normal(n).astype(np.float32)
    assert cpu_omp.all_finite_bits(x.view(np.uint32)) is True
    bounds = {0, n // 2 - 1, n // 2, n // 2 + 1, n - 1}  # where two chunks meet, the ends
    for i in sorted(bounds):
        for bad in (np.inf, -np.inf, np.nan):
            y = x.copy()
            y[i] = bad
            assert cpu_omp.all_finite_bits(y.view(np.uint32)) is False, (i, bad)


@needs_team
def test_one_thread_still_gives_the_same_bits():
    x = _values(SIZES[-1])
    want = x.copy()
    cpu_kernels.round_fp16_fast(want.view(np.uint32))
    with threadpool_limits(limits=1):
        assert cpu_omp.round_16(x.view(np.uint32), False)
    np.testing.assert_array_equal(x.view(np.uint32), want.view(np.uint32))


def test_small_arrays_and_no_team_run_serially(monkeypatch):
    small = np.ones(cpu_omp.MIN_SIZE - 1, np.float32)
    assert not cpu_omp.round_16(small.view(np.uint32), False)
    assert cpu_omp.all_finite_bits(small.view(np.uint32)) is None
    assert not cpu_omp.momentum_16(small, small, small, 0.1, 0.9, False, 1.0, 0.0, False)
    monkeypatch.setattr(cpu_omp, "TEAM", cpu_omp.Team(None))
    big = np.ones(SIZES[-1], np.float32)
    assert not cpu_omp.round_16(big.view(np.uint32), False)
    assert cpu_omp.all_finite_bits(big.view(np.uint32)) is None
    assert not cpu_omp.momentum_16(big, big, big, 0.1, 0.9, False, 1.0, 0.0, False)


def _train(numerics, stochastic, optimizer, recipe):
    data = load_dataset({"name": "synthetic", "shape": [1024], "nclass": 4, "ntrain": 64,
                         "nvalid": 16, "batch_size": 32})
    model = Model([{"type": "affine", "nout": cpu_omp.MIN_SIZE // 1024, "activation": "relu"},
                   {"type": "affine", "nout": 4, "activation": "softmax"}],
                  be=gen_backend("cpu", numerics, stochastic, seed=0, recipe=recipe))
    model.fit(data.train, build_optimizer({"learning_rate": 0.05, **optimizer}), 2,
              metrics=None)
    return model


MOMENTUM = {"type": "momentum"}
CASES = {  # what the first layer's MIN_SIZE weights run on the team, by recipe
    "fp16": ("fp16", False, MOMENTUM, "mixed", {"_momentum", "_all_finite_bits"}),
    "bf16": ("bf16", False, MOMENTUM, "mixed", {"_momentum"}),
    "fp16-pure": ("fp16", False, MOMENTUM, "pure",
                  {"_momentum", "_round_16", "_all_finite_bits"}),
    "bf16-pure": ("bf16", False, MOMENTUM, "pure", {"_momentum", "_round_16"}),
    "bf16-stochastic": ("bf16", True, MOMENTUM, "mixed", {"_momentum", "_sround_16"}),
    "bf16-stochastic-pure": ("bf16", True, MOMENTUM, "pure", {"_sround_16"}),
    "fp32-nesterov": ("fp32", False, {"type": "nesterov"}, None, {"_momentum"}),
    "fp32-decay": ("fp32", False, {**MOMENTUM, "weight_decay": 1e-3}, None,
                   {"_momentum_finish"}),
}


@needs_team
@pytest.mark.parametrize("case", sorted(CASES))
def test_training_runs_its_big_passes_on_the_team_with_the_serial_results(monkeypatch, case):
    numerics, stochastic, optimizer, recipe, expected = CASES[case]
    ran = []
    real = cpu_omp.TEAM.run
    monkeypatch.setattr(cpu_omp.TEAM, "run",
                        lambda kernel, args: ran.append(kernel) or real(kernel, args))
    teamed = _train(numerics, stochastic, optimizer, recipe)
    assert {getattr(cpu_omp, name) for name in expected} <= set(ran)
    if numerics == "bf16":
        assert cpu_omp._all_finite_bits not in ran  # no loss scaling
    monkeypatch.setattr(cpu_omp, "TEAM", cpu_omp.Team(None))
    serial = _train(numerics, stochastic, optimizer, recipe)
    for p, q in zip(teamed.params, serial.params, strict=True):
        np.testing.assert_array_equal(p.value, q.value, err_msg=p.key)
        np.testing.assert_array_equal(p.state["velocity"], q.state["velocity"], err_msg=p.key)
        assert (p.master is None) == (recipe != "mixed")
        if p.master is not None:
            np.testing.assert_array_equal(p.master, q.master, err_msg=p.key)


@pytest.mark.skipif(not ON_MKL, reason="oneMKL is not the bound library")
def test_no_team_when_onemkl_runs_on_another_threading_layer():
    env = {**os.environ, "MKL_THREADING_LAYER": "sequential"}
    out = subprocess.run([sys.executable, "-c", "from neon.backends import cpu_omp; "
                          "print(cpu_omp.TEAM.available)"], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def _round_in_child(queue):
    x = _values(SIZES[-1])
    want = x.copy()
    cpu_kernels.round_fp16_fast(want.view(np.uint32))
    teamed = cpu_omp.round_16(x.view(np.uint32), False)
    queue.put((teamed, bool(np.array_equal(x.view(np.uint32), want.view(np.uint32)))))


@needs_team
@pytest.mark.parametrize("method", ["fork", "forkserver"])  # forkserver: the trial executor's
def test_processes_started_after_the_team_ran_get_the_same_bits(method):
    """The OpenMP runtime has threads by then; a forked child must still get a working
    team."""
    import multiprocessing as mp

    x = _values(SIZES[-1])
    assert cpu_omp.round_16(x.view(np.uint32), False)
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["neon.backends.cpu"])
    queue = ctx.Queue()
    child = ctx.Process(target=_round_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=120) == (True, True)
    child.join(timeout=60)
    assert child.exitcode == 0
