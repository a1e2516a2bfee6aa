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
first available one is used. The binding holds the functions' addresses, which
``cpu_blas_calls`` calls from compiled code, and oneMKL's OpenMP runtime, on whose threads
``cpu_omp`` runs the big elementwise passes.

The binding is process-wide. A library loaded after it that calls GNU OpenMP (PyTorch) runs
on oneMKL's libiomp5 runtime, which implements that interface; PyTorch's CIFAR step was as
fast as alone (with a 0 ms block time it was 1.45x slower). A GNU OpenMP runtime that is
already global when this module loads (PyTorch imported first) keeps oneMKL out, and OpenBLAS
is used: oneMKL's threads would take their thread numbers from it and compute wrong products
(measured). The self-check's 1024^3 product is a second, weaker guard: it catches the fault
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

from neon.backends import cpu_blas_calls as calls
from neon.backends.backend import scale_into
from neon.backends.ccall import address

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


def _declare(lib: Any, prefix: str, suffix: str) -> tuple[dict[np.dtype, int],
                                                          dict[np.dtype, int]]:
    """Addresses of ``lib``'s ``{prefix}?gemm{suffix}`` and ``?axpy`` for fp32 and fp64;
    AttributeError when the GEMMs are missing."""
    gemms, axpys = {}, {}
    for t, dtype in (("s", np.dtype(np.float32)), ("d", np.dtype(np.float64))):
        gemms[dtype] = address(getattr(lib, f"{prefix}{t}gemm{suffix}"))
        axpy = getattr(lib, f"{prefix}{t}axpy{suffix}", None)
        if axpy is not None:
            axpys[dtype] = address(axpy)
    return gemms, axpys


class Cblas:
    """``cblas_?gemm`` and ``cblas_?axpy`` (fp32, fp64) of one library, checked at binding:
    their addresses by dtype, called through ``cpu_blas_calls`` (``wide``: 64-bit
    integers)."""

    def __init__(self, choice: str | None = None) -> None:
        if choice is None:
            choice = os.environ.get("NEON_BLAS") or None
            if choice is not None and choice not in CHOICES:
                warnings.warn(f"NEON_BLAS={choice!r} ignored: expected one of "
                              f"{', '.join(CHOICES)}", stacklevel=2)
                choice = None
        elif choice not in CHOICES:
            raise ValueError(f"BLAS {choice!r}: expected one of {', '.join(CHOICES)}")
        self.gemms: dict[np.dtype, int] = {}
        self.axpys: dict[np.dtype, int] = {}
        self.wide = False
        self.openmp: ctypes.CDLL | None = None  # the OpenMP runtime of the GEMMs' threads
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
            self.gemms, self.axpys, self.wide, self.openmp = {}, {}, False, None
            self.source = "numpy.matmul"
        if choice not in (None, "numpy"):
            warnings.warn(f"BLAS {choice!r} is not usable here: GEMMs run in numpy.matmul",
                          stacklevel=2)

    @property
    def available(self) -> bool:
        return bool(self.gemms)

    def _bind_mkl(self) -> bool:
        rt = _wheel_file("mkl", "libmkl_rt.so")
        omp = _wheel_file("intel-openmp", "libiomp5.so")
        if rt is None or omp is None or _gnu_openmp_is_global():
            return False
        os.environ.setdefault("KMP_BLOCKTIME", "1")
        # loaded first, so that MKL's OpenMP layer takes this runtime (matched by soname)
        runtime = ctypes.CDLL(str(omp), mode=ctypes.RTLD_LOCAL)
        lib = ctypes.CDLL(str(rt))
        lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
        if "MKL_THREADING_LAYER" not in os.environ:
            lib.MKL_Set_Threading_Layer(_MKL_THREADING_INTEL)
        if os.environ.get("MKL_THREADING_LAYER", "INTEL").upper() == "INTEL":
            self.openmp = runtime
        self.gemms, self.axpys = _declare(lib, "cblas_", "")
        self.source = f"{rt.name}:cblas_?gemm"
        return True

    def _bind_openblas(self) -> bool:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
        libs.sort(key=lambda i: "numpy" not in i.get("filepath", ""))  # numpy's first
        for info in libs:
            lib = ctypes.CDLL(info["filepath"])
            for prefix, suffix in (("scipy_cblas_", "64_"), ("cblas_", "64_"), ("cblas_", "")):
                try:
                    self.gemms, self.axpys = _declare(lib, prefix, suffix)
                except AttributeError:
                    continue
                self.wide = suffix == "64_"
                self.source = f"{os.path.basename(info['filepath'])}:{prefix}?gemm{suffix}"
                return True
        return False

    def _check(self) -> None:
        """Sub-blocks with beta = 1 on a small product, and a 1024^3 product that every
        library splits among its threads (a broken threading layer gets parts of it wrong:
        oneMKL under libgomp did at 1024^3 every time, at 512^3-768^3 only now and then).
        The big product holds small integers, so it is exact and checked in O(n^2) against
        a matrix-vector product (Freivalds)."""
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
            if np.dtype(dtype) in self.axpys:
                x, y = a.reshape(-1), b.reshape(-1)[:35].copy()
                if not np.allclose(self.axpy(-0.5, x, y.copy()), y - 0.5 * x, rtol=1e-6):
                    raise RuntimeError(f"{self.source}: axpy self-check failed")
        n = 1024
        big = (np.arange(n * n, dtype=np.int32) % 7 - 3).astype(np.float32).reshape(n, n)
        x = (np.arange(n) % 3 - 1).astype(np.float32)  # every partial sum below is < 2**24
        got = self.gemm(big, big, np.empty_like(big))
        if not np.array_equal(got @ x, big @ (big @ x)):
            raise RuntimeError(f"{self.source}: threaded gemm self-check failed")

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, trans_a: bool = False,
             trans_b: bool = False, beta: float = 0.0, alpha: float = 1.0) -> np.ndarray:
        """``c = alpha * op(a) @ op(b) + beta * c`` for 2-D arrays; ``op`` transposes when
        asked. Operands may be sub-blocks of bigger matrices (any leading dimension) and ``a``
        and ``b`` may be transposed views; anything else goes to ``numpy.matmul``."""
        fn = self.gemms.get(c.dtype)
        if (fn is not None and a.dtype == c.dtype and b.dtype == c.dtype
                and a.ndim == b.ndim == c.ndim == 2
                and calls.gemm(fn, self.wide, a, b, c, bool(trans_a), bool(trans_b),
                               float(alpha), float(beta))):
            return c
        product = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
        return scale_into(c, product, alpha, beta)

    def axpy(self, alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``y += alpha * x`` in place. oneMKL and OpenBLAS split it among their threads
        (the same ones as the GEMMs', so none spins against another's); arrays the library
        cannot take go to numpy."""
        fn = self.axpys.get(y.dtype)
        if (fn is None or x.dtype != y.dtype or x.shape != y.shape
                or not (x.flags.c_contiguous and y.flags.c_contiguous)):
            y += alpha * x if alpha != 1.0 else x
        else:
            calls.axpy(fn, self.wide, float(alpha), x, y)
        return y


def _gnu_openmp_is_global() -> bool:
    """Whether a GNU OpenMP runtime is in the process's global symbol scope (PyTorch puts
    its libgomp there). oneMKL's OpenMP layer would then take its thread numbers from it and
    compute wrong products (measured: errors of 74 on a 512^3 sgemm)."""
    scope = ctypes.CDLL(None)
    return hasattr(scope, "GOMP_parallel") and not hasattr(scope, "kmp_set_blocktime")


BLAS = Cblas()
gemm = BLAS.gemm
