"""The CPU backend's GEMM binding (``neon.backends.cpu_blas``): each library against numpy on
transposes, sub-blocks, transposed views, alpha/beta and the layouts that must fall back;
which library is chosen; and that a training step does all its GEMMs in that library."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from neon.backends import cpu_blas, gen_backend
from neon.backends.backend import Backend
from neon.datasets import ArrayIterator
from neon.models import Model
from neon.optimizers import build_optimizer

# the mkl wheel is a dependency on Linux x86-64 (setup.py); elsewhere OpenBLAS is the first
HAS_MKL_WHEEL = sys.platform == "linux" and platform.machine() == "x86_64"
LIBRARIES = ["mkl", "openblas"] if HAS_MKL_WHEEL else ["openblas"]
BOUND = {name: cpu_blas.Cblas(name) for name in [*LIBRARIES, "numpy"]}


def _expected(a, b, c, trans_a, trans_b, alpha, beta):
    return alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + beta * c


@pytest.mark.parametrize("name", [*LIBRARIES, "numpy"])
def test_each_library_binds_as_asked(name):
    blas = BOUND[name]
    assert blas.library == name
    assert blas.available == (name != "numpy")


@pytest.mark.parametrize("name", [*LIBRARIES, "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.01, 0.9), (0.5, 1.0)])
def test_gemm_matches_numpy(name, dtype, trans_a, trans_b, alpha, beta):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 23) if trans_a else (23, 37)).astype(dtype)
    b = rng.standard_normal((19, 37) if trans_b else (37, 19)).astype(dtype)
    c = rng.standard_normal((23, 19)).astype(dtype)
    want = _expected(a, b, c, trans_a, trans_b, alpha, beta)
    got = BOUND[name].gemm(a, b, c.copy(), trans_a, trans_b, beta=beta, alpha=alpha)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", [*LIBRARIES, "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [1.0, -0.25])
@pytest.mark.parametrize("size", [0, 7, 300_000])  # the big one is split among threads
def test_axpy_matches_numpy(name, dtype, alpha, size):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, size)).astype(dtype)
    want = y + dtype(alpha) * x
    got = BOUND[name].axpy(alpha, x, y)
    assert got is y
    if alpha == 1.0:
        np.testing.assert_array_equal(y, want)  # one rounding either way
    else:
        np.testing.assert_allclose(y, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("name", LIBRARIES)
@pytest.mark.parametrize("case", ["strided", "mixed_dtype", "broadcast"])
def test_axpy_on_what_the_library_cannot_take_falls_back_to_numpy(name, case):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 6, 8)).astype(np.float32)
    if case == "strided":
        x, y = x[:, ::2], y[:, ::2]
    elif case == "mixed_dtype":
        x = x.astype(np.float64)
    else:
        x = x[0]
    want = y - 0.5 * x
    BOUND[name].axpy(-0.5, x, y)
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("name", [*LIBRARIES, "numpy"])
def test_gemm_on_sub_blocks_and_transposed_views(name):
    """Leading dimensions of sub-blocks; an F-ordered operand is its transpose's block."""
    gemm = BOUND[name].gemm
    rng = np.random.default_rng(1)
    big_a, big_b = rng.standard_normal((2, 40, 50))
    c_big = rng.standard_normal((30, 40))
    want = c_big.copy()
    a = big_a[2:19, 1:12]  # (17, 11) with leading dimension 50
    b = big_b[4:15].T[7:32].T  # (11, 25): a slice of rows, each of 50 values
    want[3:20, 5:30] += a @ b
    gemm(a, b, c_big[3:20, 5:30], beta=1.0)
    np.testing.assert_allclose(c_big, want, rtol=1e-12, atol=1e-12)  # nothing else written
    at = np.asfortranarray(rng.standard_normal((17, 11)))  # column-contiguous
    out = np.empty((17, 25))
    np.testing.assert_allclose(gemm(at, b, out), at @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gemm(b.T, at.T, np.empty((25, 17))), b.T @ at.T,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [*LIBRARIES, "numpy"])
def test_layouts_cblas_cannot_take_fall_back_to_numpy(name):
    """Strided columns, broadcast (zero-stride) rows, mixed dtypes and empty products."""
    gemm = BOUND[name].gemm
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 14))[:, ::2]  # (6, 7), every other column
    b = np.broadcast_to(rng.standard_normal(5), (7, 5))  # row stride 0
    c = np.zeros((6, 10))[:, ::2]
    np.testing.assert_allclose(gemm(a, b, c, alpha=2.0), 2.0 * a @ b, rtol=1e-12)
    mixed = gemm(a.astype(np.float32), np.ascontiguousarray(b), np.empty((6, 5)))
    np.testing.assert_allclose(mixed, a.astype(np.float32) @ b, rtol=1e-6)
    empty_k = np.ones((6, 5))
    gemm(np.empty((6, 0)), np.empty((0, 5)), empty_k, beta=0.5)
    np.testing.assert_array_equal(empty_k, np.full((6, 5), 0.5))


@pytest.mark.parametrize("name", LIBRARIES)
def test_results_do_not_depend_on_the_operands_alignment(name):
    """Same-seed training is bit-identical only if a product's bits do not depend on where
    numpy placed its operands."""
    rng = np.random.default_rng(4)
    a0 = rng.standard_normal((96, 200), dtype=np.float32)
    b0 = rng.standard_normal((200, 160), dtype=np.float32)
    results = []
    for offset in range(8):
        a, b, c = (np.empty(x.size + 16, np.float32)[offset:offset + x.size].reshape(x.shape)
                   for x in (a0, b0, np.empty((96, 160), np.float32)))
        a[...], b[...] = a0, b0
        results.append(BOUND[name].gemm(a, b, c).copy())
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_unknown_choice_is_refused_and_an_unknown_environment_value_ignored(monkeypatch):
    with pytest.raises(ValueError, match="BLAS 'acml'"):
        cpu_blas.Cblas("acml")
    monkeypatch.setenv("NEON_BLAS", "acml")
    with pytest.warns(UserWarning, match="NEON_BLAS='acml' ignored"):
        assert cpu_blas.Cblas().library == LIBRARIES[0]


def _in_subprocess(env: dict[str, str], code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NEON_BLAS", "KMP_BLOCKTIME")} | env
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = ("import json, os; from neon.backends import cpu_blas, gen_backend; "
         "print(json.dumps({'library': cpu_blas.BLAS.library, "
         "'blocktime': os.environ.get('KMP_BLOCKTIME'), "
         "'folds': gen_backend('cpu').folds_updates}))")


def test_default_is_the_first_available_library_and_neon_blas_overrides_it():
    default = _in_subprocess({}, PROBE)
    assert default["library"] == LIBRARIES[0]
    if default["library"] == "mkl":  # its OpenMP threads must not hold the cores
        assert default["blocktime"] == "1"
    forced = _in_subprocess({"NEON_BLAS": "openblas"}, PROBE)
    assert forced == {"library": "openblas", "blocktime": None, "folds": True}
    none = _in_subprocess({"NEON_BLAS": "numpy"}, PROBE)
    assert none["library"] == "numpy" and none["folds"] is False


def test_a_blocktime_the_user_set_is_kept():
    if not HAS_MKL_WHEEL:
        assert _in_subprocess({"KMP_BLOCKTIME": "5"}, PROBE)["library"] == "openblas"
        return
    assert _in_subprocess({"KMP_BLOCKTIME": "5"}, PROBE)["blocktime"] == "5"


# PyTorch puts its GNU OpenMP runtime (libgomp) in the process's global symbol scope; the
# copy scikit-learn's wheel ships (Linux) stands in for it here
GNU_OPENMP_FIRST = (
    "import ctypes, glob, os, sklearn; "
    "libs = glob.glob(os.path.join(os.path.dirname(sklearn.__path__[0]), "
    "'scikit_learn.libs', 'libgomp*')); "
    "[ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL) for p in libs]; ")
THREADED_PRODUCT = (
    "import numpy as np; a = np.random.default_rng(0).standard_normal((2, 768, 768), "
    "dtype=np.float32); c = cpu_blas.gemm(a[0], a[1], np.empty((768, 768), np.float32)); "
    "err = float(np.abs(c - a[0].astype(np.float64) @ a[1]).max()); ")


def test_onemkl_stays_out_of_a_process_where_gnu_openmp_came_first():
    """oneMKL's OpenMP layer would take its thread numbers from libgomp: wrong products."""
    got = _in_subprocess({}, GNU_OPENMP_FIRST + "from neon.backends import cpu_blas; "
                         + THREADED_PRODUCT + "import json; print(json.dumps("
                         "{'library': cpu_blas.BLAS.library, 'err': err, "
                         "'seen': cpu_blas._gnu_openmp_is_global()}))")
    assert got == {"library": "openblas", "err": got["err"], "seen": True}
    assert got["err"] < 1e-2
    assert not cpu_blas._gnu_openmp_is_global()  # this process: none, or oneMKL's own
    if HAS_MKL_WHEEL and (os.cpu_count() or 1) > 1:  # the self-check is the second guard
        # (only when oneMKL splits the product: without MKL_DYNAMIC=FALSE it may not)
        threaded = {"MKL_DYNAMIC": "FALSE", "MKL_NUM_THREADS": "2"}
        forced = _in_subprocess(threaded, GNU_OPENMP_FIRST + "import json, warnings; "
                                "from neon.backends import cpu_blas; "
                                "cpu_blas._gnu_openmp_is_global = lambda: False; "
                                "warnings.simplefilter('ignore'); "
                                "print(json.dumps(cpu_blas.Cblas('mkl').library))")
        assert forced == "numpy"


MODELS = {
    "mlp": ([{"type": "affine", "nout": 32, "activation": "relu"},
             {"type": "dropout", "keep": 0.8},
             {"type": "affine", "nout": 5, "activation": "softmax"}], (12,)),
    "convnet": ([{"type": "conv", "nfilters": 4, "fshape": 3, "padding": 1,
                  "activation": "relu"},
                 {"type": "pool", "op": "max", "fshape": 2},
                 {"type": "conv", "nfilters": 6, "fshape": 3, "strides": 2, "groups": 2},
                 {"type": "affine", "nout": 5, "activation": "softmax"}], (3, 8, 8)),
    "gru": ([{"type": "gru", "nout": 8, "reverse": True},
             {"type": "lstm", "nout": 8, "return_sequences": False},
             {"type": "affine", "nout": 5, "activation": "softmax"}], (6, 4)),
}


@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_training_step_does_every_gemm_in_the_bound_library(monkeypatch, model, numerics):
    """numpy.matmul would run in numpy's OpenBLAS, whose spinning threads slow the other
    library's: no layer may call it while a cblas is bound."""
    layers, shape = MODELS[model]
    be = gen_backend("cpu", numerics, seed=0)
    net = Model(layers, "cross_entropy", be=be)
    rng = np.random.default_rng(0)
    data = ArrayIterator(rng.standard_normal((8, *shape)).astype(np.float32),
                         rng.integers(0, 5, 8), batch_size=4, nclass=5)
    opt = build_optimizer({"type": "momentum", "learning_rate": 0.01, "momentum": 0.9})

    def forbidden(*args, **kwargs):
        raise AssertionError("numpy.matmul called in a training step")

    calls = []
    real = cpu_blas.gemm
    monkeypatch.setattr(np, "matmul", forbidden)
    monkeypatch.setattr(cpu_blas, "gemm", lambda *a, **k: calls.append(1) or real(*a, **k))
    net.fit(data, opt, 1, metrics=None)
    assert len(calls) >= 4  # two batches: a forward and a weight-gradient GEMM each, at least


def test_the_generic_gemm_is_the_reference():
    """``Backend.gemm`` (xp.matmul) and the CPU override agree, alpha and beta included."""
    be = gen_backend("cpu", "fp64")
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((3, 9, 9))
    for kw in ({}, {"alpha": -0.5, "beta": 0.9, "trans_a": True}, {"beta": 1.0,
                                                                   "trans_b": True}):
        ref = Backend.gemm(be, a, b, c.copy(), **kw)
        np.testing.assert_allclose(be.gemm(a, b, c.copy(), **kw), ref, rtol=1e-12)


def test_a_binding_whose_axpy_does_nothing_fails_its_self_check():
    blas = cpu_blas.Cblas("openblas")
    assert blas.axpys  # numpy's OpenBLAS has them
    int_t = ctypes.c_int64 if blas.wide else ctypes.c_int
    nothing = {dtype: ctypes.CFUNCTYPE(None, int_t, real, ctypes.c_void_p, int_t,
                                       ctypes.c_void_p, int_t)(lambda *args: None)
               for dtype, real in ((np.dtype(np.float32), ctypes.c_float),
                                   (np.dtype(np.float64), ctypes.c_double))}
    blas.axpys = {dtype: ctypes.cast(fn, ctypes.c_void_p).value for dtype, fn in nothing.items()}
    with pytest.raises(RuntimeError, match="axpy self-check failed"):
        blas._check()
