"""The CPU backend's GEMM: ``cblas_?gemm`` of oneMKL where its wheel is installed, else of the
OpenBLAS numpy loaded, else ``numpy.matmul``.

Every GEMM of a training step goes through this one library. Two threaded BLASes taking
turns starve each other, because each one's worker threads spin after a call.

oneMKL comes first. On the reference machine (2-core Sapphire Rapids, OpenBLAS 0.3.31 with
SkylakeX kernels) it made these faster than OpenBLAS, in A/B runs in one session:
- the MLP benchmark's eight GEMMs: 1.16x;
- the CIFAR convnet step: 1.16-1.22x;
- the AlexNet step: 1.23x.

Its OpenMP threads spin for 1 ms after a GEMM, then sleep (``KMP_BLOCKTIME=1``, unless the
user set it). With the default 200 ms, idle threads hold cores that other processes need: a
PyTorch process stepping right after neon ran 1.4x slower (``engine_rnn``). With 0 ms, every
GEMM wakes a sleeping thread, which cost the MLP benchmark 5-10%.

``NEON_BLAS`` = ``mkl`` | ``openblas`` | ``numpy`` forces a choice; when it is not set, the
first available one is used.

The binding is process-wide. A library loaded after it that calls GNU OpenMP (PyTorch) runs
on oneMKL's libiomp5 runtime, which implements that interface; PyTorch's CIFAR step was as
fast as alone (with a 0 ms block time it was 1.45x slower). A GNU OpenMP runtime that is
already global when this module loads (PyTorch imported first) keeps oneMKL out, and OpenBLAS
is used: oneMKL's threads would take their thread numbers from it and compute wrong products
(measured). The self-check's 640^3 product is a second, weaker guard: it catches the fault
only when oneMKL splits that product among threads, which it may decide not to do.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BLAS", "CHOICES", "Cblas", "gemm"]

CHOICES = ("mkl", "openblas", "numpy")
_MKL_THREADING_INTEL, _MKL_INTERFACE_LP64 = 0, 0


def _wheel_file(dist: str, prefix: str) -> Path | None:
    """The installed file of distribution ``dist`` whose name starts with ``prefix``."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith(prefix):
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                return path
    return None


def _declare(fns: tuple[Any, Any], int_t: Any) -> dict[np.dtype, Any]:
    """ctypes signatures of a ``cblas_sgemm``/``cblas_dgemm`` pair with integer type int_t."""
    for fn, real in zip(fns, (ctypes.c_float, ctypes.c_double)):
        fn.restype = None
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real,
                       ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real, ctypes.c_void_p,
                       int_t]
    return {np.dtype(np.float32): fns[0], np.dtype(np.float64): fns[1]}


class Cblas:
    """``cblas_sgemm``/``cblas_dgemm`` of one library, checked on a small product."""

    ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

    def __init__(self, choice: str | None = None) -> None:
        if choice is None:
            choice = os.environ.get("NEON_BLAS") or None
            if choice is not None and choice not in CHOICES:
                warnings.warn(f"NEON_BLAS={choice!r} ignored: expected one of "
                              f"{', '.join(CHOICES)}", stacklevel=2)
                choice = None
        elif choice not in CHOICES:
            raise ValueError(f"BLAS {choice!r}: expected one of {', '.join(CHOICES)}")
        self.fns: dict[np.dtype, Any] = {}
        self.library = "numpy"
        self.source = "numpy.matmul"
        for name, bind in (("mkl", self._bind_mkl), ("openblas", self._bind_openblas)):
            if choice not in (None, name):
                continue
            try:
                if bind():
                    self._check()
                    self.library = name
                    return
            except Exception:  # unusable library: try the next, else numpy.matmul
                pass
            self.fns = {}
            self.source = "numpy.matmul"
        if choice not in (None, "numpy"):
            warnings.warn(f"BLAS {choice!r} is not usable here: GEMMs run in numpy.matmul",
                          stacklevel=2)

    @property
    def available(self) -> bool:
        return bool(self.fns)

    def _bind_mkl(self) -> bool:
        rt = _wheel_file("mkl", "libmkl_rt.so")
        omp = _wheel_file("intel-openmp", "libiomp5.so")
        if rt is None or omp is None or _gnu_openmp_is_global():
            return False
        os.environ.setdefault("KMP_BLOCKTIME", "1")
        # loaded first, so that MKL's OpenMP layer takes this runtime (matched by soname)
        ctypes.CDLL(str(omp), mode=ctypes.RTLD_LOCAL)
        lib = ctypes.CDLL(str(rt))
        lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
        if "MKL_THREADING_LAYER" not in os.environ:
            lib.MKL_Set_Threading_Layer(_MKL_THREADING_INTEL)
        self.fns = _declare((lib.cblas_sgemm, lib.cblas_dgemm), ctypes.c_int)
        self.source = f"{rt.name}:cblas_?gemm"
        return True

    def _bind_openblas(self) -> bool:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
        libs.sort(key=lambda i: "numpy" not in i.get("filepath", ""))  # numpy's first
        for info in libs:
            lib = ctypes.CDLL(info["filepath"])
            for prefix, suffix, int_t in (("scipy_cblas_", "64_", ctypes.c_int64),
                                          ("cblas_", "64_", ctypes.c_int64),
                                          ("cblas_", "", ctypes.c_int)):
                try:
                    fns = (getattr(lib, f"{prefix}sgemm{suffix}"),
                           getattr(lib, f"{prefix}dgemm{suffix}"))
                except AttributeError:
                    continue
                self.fns = _declare(fns, int_t)
                self.source = f"{os.path.basename(info['filepath'])}:{prefix}?gemm{suffix}"
                return True
        return False

    def _check(self) -> None:
        """Sub-blocks with beta = 1 on a small product, and a product big enough to be
        split among threads (a broken threading layer gets parts of it wrong)."""
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            a = rng.standard_normal((5, 7)).astype(dtype)
            b = rng.standard_normal((9, 6)).astype(dtype)
            c = rng.standard_normal((4, 8)).astype(dtype)
            want = c.copy()
            want[1:4, 2:7] += a[1:4, 2:6] @ b[2:6, 1:6]
            self.gemm(a[1:4, 2:6], b[2:6, 1:6], c[1:4, 2:7], beta=1.0)
            if not np.allclose(c, want, rtol=1e-5, atol=1e-5):
                raise RuntimeError(f"{self.source}: gemm self-check failed")
        big = rng.standard_normal((2, 640, 640)).astype(np.float32)  # oneMKL threads 640^3
        got = self.gemm(big[0], big[1], np.empty((640, 640), np.float32))
        if not np.allclose(got, big[0].astype(np.float64) @ big[1], rtol=1e-4, atol=1e-3):
            raise RuntimeError(f"{self.source}: threaded gemm self-check failed")

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, trans_a: bool = False,
             trans_b: bool = False, beta: float = 0.0, alpha: float = 1.0) -> np.ndarray:
        """``c = alpha * op(a) @ op(b) + beta * c`` for 2-D arrays; ``op`` transposes when
        asked. Operands may be sub-blocks of bigger matrices (any leading dimension) and ``a``
        and ``b`` may be transposed views; anything else goes to ``numpy.matmul``."""
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if _columns_contiguous(a):
            a, trans_a = a.T, not trans_a
        if _columns_contiguous(b):
            b, trans_b = b.T, not trans_b
        fn = self.fns.get(c.dtype)
        if (fn is None or a.dtype != c.dtype or b.dtype != c.dtype
                or not all(map(_rows_contiguous, (a, b, c)))):
            res = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
            if alpha != 1.0:
                res *= alpha
            if beta:
                if beta != 1.0:
                    c *= beta
                c += res
            else:
                c[...] = res
            return c
        if m and n:
            fn(self.ROW_MAJOR, self.TRANS if trans_a else self.NO_TRANS,
               self.TRANS if trans_b else self.NO_TRANS, m, n, k, float(alpha), a.ctypes.data,
               _ld(a), b.ctypes.data, _ld(b), float(beta), c.ctypes.data, _ld(c))
        return c


def _gnu_openmp_is_global() -> bool:
    """Whether a GNU OpenMP runtime is in the process's global symbol scope (PyTorch puts
    its libgomp there). oneMKL's OpenMP layer would then take its thread numbers from it and
    compute wrong products (measured: errors of 74 on a 512^3 sgemm)."""
    scope = ctypes.CDLL(None)
    return hasattr(scope, "GOMP_parallel") and not hasattr(scope, "kmp_set_blocktime")


def _rows_contiguous(x: np.ndarray) -> bool:
    """A 2-D block whose rows are contiguous and do not overlap (cblas's row-major operand)."""
    if x.ndim != 2:
        return False
    rows, cols = x.shape
    return ((cols <= 1 or x.strides[1] == x.itemsize)
            and (rows <= 1 or x.strides[0] >= max(cols, 1) * x.itemsize))


def _columns_contiguous(x: np.ndarray) -> bool:
    """A transposed view of such a block (and not itself one)."""
    return x.ndim == 2 and _rows_contiguous(x.T) and not _rows_contiguous(x)


def _ld(a: np.ndarray) -> int:
    return max(a.strides[0] // a.itemsize, a.shape[1], 1)


BLAS = Cblas()
gemm = BLAS.gemm
