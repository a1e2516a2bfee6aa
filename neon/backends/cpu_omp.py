"""Big elementwise passes of a training step on the BLAS's own OpenMP threads.

oneMKL's threads spin for a millisecond after each GEMM, so a second thread pool (numba's)
fights them for the cores: it measured slower than one thread. These passes run on oneMKL's
threads instead, through its runtime's ``GOMP_parallel``. Each thread takes a contiguous,
cache-line aligned chunk of the arrays, so the results are the serial kernels', bit for bit.
On this project's 2 cores, the 16-bit momentum step over the benchmark MLP's 1.86 M weights
took 475 us against 850 us. The passes are the optimizers' fused steps (momentum at full and
16-bit precision and of master weights with their 16-bit copy, the folded step's finish with
weight decay) and rounding (nearest and
stochastic); fp32 arrays only. Without oneMKL's runtime (OpenBLAS, numpy) the serial kernels
run.

The kernels are numba ``cfunc``s that read their arguments from an int64 array: the
addresses of the runtime's thread-number functions, the element count, then their own.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numba as nb
import numpy as np
from numba.core import types

from neon.backends import cpu_blas
from neon.backends import cpu_kernels as kernels
from neon.backends.ccall import address, call_int, pointer

__all__ = ["MIN_SIZE", "Team", "all_finite_bits", "momentum_16", "momentum_finish",
           "momentum_full", "momentum_master_16", "round_16", "sround_16"]

# Below 2 MB of fp32 the serial pass is as fast: rounding a GEMM's 128x1024 output right
# after it took 54 us on the team against 34 us serially (half of it sits in the other
# core's cache), 512 K values 97 against 122 us; on the benchmark MLP's 16-bit epochs this
# threshold measured 1.02x faster than 64 K.
MIN_SIZE = 1 << 19
_THREAD, _THREADS, _SIZE = 0, 1, 2  # the header of an argument array
_FLAGS, _MAX_FLAGS = 16, 1024  # per-thread result slots at the end of an argument array
_ALIGN = 16  # elements (64 bytes of fp32) per chunk boundary


class Team:
    """The OpenMP runtime's ``GOMP_parallel`` and thread-number functions, from the
    runtime that runs oneMKL's GEMMs (``Cblas.openmp``); ``available`` is False without
    one."""

    def __init__(self, runtime: ctypes.CDLL | None) -> None:
        self.available = runtime is not None
        if runtime is None:
            return
        self._parallel = runtime.GOMP_parallel
        self._parallel.restype = None
        self._parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint,
                                   ctypes.c_uint]
        self._thread = address(runtime.omp_get_thread_num)
        self._threads = address(runtime.omp_get_num_threads)

    def arguments(self, size: int) -> np.ndarray:
        """A zeroed argument array for ``size`` elements, its header filled in."""
        args = np.zeros(_FLAGS + _MAX_FLAGS, np.int64)
        args[_THREAD], args[_THREADS], args[_SIZE] = self._thread, self._threads, size
        return args

    def run(self, kernel: Any, args: np.ndarray) -> None:
        """``kernel`` (a cfunc) on every thread of the team, each with ``args``."""
        self._parallel(kernel.address, args.ctypes.data, 0, 0)


@nb.njit(inline="always")
def _chunk(a):  # pragma: no cover - compiled
    """(thread, lo, hi): this thread's share of ``a[_SIZE]`` elements."""
    thread = call_int(a[_THREAD], ())
    threads = call_int(a[_THREADS], ())
    n = a[_SIZE]
    blocks = (n + _ALIGN - 1) // _ALIGN
    lo = min(n, blocks * thread // threads * _ALIGN)
    hi = min(n, blocks * (thread + 1) // threads * _ALIGN)
    return thread, lo, hi


_SIGNATURE = types.void(types.voidptr)


@nb.njit(inline="always")
def _slice(a, slot, lo, hi):  # pragma: no cover - compiled
    """This thread's share of the fp32 array whose address is ``a[slot]``."""
    return nb.carray(pointer(a[slot]), a[_SIZE], dtype=np.float32)[lo:hi]


@nb.cfunc(_SIGNATURE, cache=True)
def _momentum(data):  # pragma: no cover - compiled
    """The full-precision step (a[12] = 0), the one-pass 16-bit one (bf16 when a[11]), or
    the full-precision step of master weights with their rounded copy at a[13]."""
    a = nb.carray(data, _FLAGS, dtype=np.int64)
    f = nb.carray(data, _FLAGS, dtype=np.float64)
    _, lo, hi = _chunk(a)
    w, g, v = _slice(a, 3, lo, hi), _slice(a, 4, lo, hi), _slice(a, 5, lo, hi)
    lr, mu, inv_scale, wd = np.float32(f[6]), np.float32(f[7]), np.float32(f[8]), np.float32(f[9])
    if a[13]:
        kernels.momentum_master_16(w, g, v, _slice(a, 13, lo, hi), lr, mu, a[10] != 0,
                                   inv_scale, wd, a[11] != 0)
    elif a[12]:
        kernels._momentum_16_one_pass(w, g, v, lr, mu, a[10] != 0, inv_scale, wd, a[11] != 0)
    else:
        kernels.momentum_full(w, g, v, lr, mu, a[10] != 0, inv_scale, wd)


@nb.cfunc(_SIGNATURE, cache=True)
def _momentum_finish(data):  # pragma: no cover - compiled
    a = nb.carray(data, _FLAGS, dtype=np.int64)
    f = nb.carray(data, _FLAGS, dtype=np.float64)
    _, lo, hi = _chunk(a)
    kernels.momentum_finish(_slice(a, 3, lo, hi), _slice(a, 4, lo, hi), np.float32(f[5]))


@nb.cfunc(_SIGNATURE, cache=True)
def _sround_16(data):  # pragma: no cover - compiled
    a = nb.carray(data, _FLAGS, dtype=np.int64)
    u = nb.carray(data, _FLAGS, dtype=np.uint64)
    _, lo, hi = _chunk(a)
    bits = nb.carray(pointer(a[3]), a[_SIZE], dtype=np.uint32)[lo:hi]
    offset = u[5] + np.uint64(lo)  # the counter the serial kernel gives element lo
    if a[6]:
        kernels.sround_bf16_fast(bits, u[4], offset)
    else:
        kernels.sround_fp16_fast(bits, u[4], offset)


@nb.cfunc(_SIGNATURE, cache=True)
def _round_16(data):  # pragma: no cover - compiled
    a = nb.carray(data, _FLAGS, dtype=np.int64)
    _, lo, hi = _chunk(a)
    bits = nb.carray(pointer(a[3]), a[_SIZE], dtype=np.uint32)[lo:hi]
    if a[4]:
        kernels.round_bf16_fast(bits)
    else:
        kernels.round_fp16_fast(bits)


@nb.cfunc(_SIGNATURE, cache=True)
def _all_finite_bits(data):  # pragma: no cover - compiled
    a = nb.carray(data, _FLAGS + _MAX_FLAGS, dtype=np.int64)
    thread, lo, hi = _chunk(a)
    bits = nb.carray(pointer(a[3]), a[_SIZE], dtype=np.uint32)[lo:hi]
    if not kernels.all_finite_bits(bits):
        a[_FLAGS + min(thread, _MAX_FLAGS - 1)] = 1


TEAM = Team(cpu_blas.BLAS.openmp)


def _teamed(x: np.ndarray, dtype: Any = np.float32) -> bool:
    """Whether the team takes ``x``: a team, at least ``MIN_SIZE`` values of ``dtype``."""
    return TEAM.available and x.size >= MIN_SIZE and x.dtype == dtype


def _run_momentum(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, mu: float,
                  nesterov: bool, inv_scale: float, wd: float, bf16: bool | None,
                  out: np.ndarray | None = None) -> bool:
    if not _teamed(w):
        return False
    args = TEAM.arguments(w.size)
    args[3:6] = w.ctypes.data, g.ctypes.data, v.ctypes.data
    args.view(np.float64)[6:10] = lr, mu, inv_scale, wd
    args[10:14] = (bool(nesterov), bool(bf16), bf16 is not None and out is None,
                   0 if out is None else out.ctypes.data)
    TEAM.run(_momentum, args)
    return True


def momentum_16(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, mu: float,
                nesterov: bool, inv_scale: float, wd: float, bf16: bool) -> bool:
    """The one-pass 16-bit momentum step (``cpu_kernels._momentum_16_one_pass``) over flat
    contiguous fp32 arrays of one size on the team; False, having done nothing, without a
    team, below ``MIN_SIZE`` or for another dtype (so for the functions below)."""
    return _run_momentum(w, g, v, lr, mu, nesterov, inv_scale, wd, bool(bf16))


def momentum_full(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, mu: float,
                  nesterov: bool, inv_scale: float, wd: float) -> bool:
    """The full-precision momentum step (``cpu_kernels.momentum_full``) on the team."""
    return _run_momentum(w, g, v, lr, mu, nesterov, inv_scale, wd, None)


def momentum_master_16(w: np.ndarray, g: np.ndarray, v: np.ndarray, out: np.ndarray,
                       lr: float, mu: float, nesterov: bool, inv_scale: float, wd: float,
                       bf16: bool) -> bool:
    """The master weights' step with their rounded copy (``cpu_kernels.momentum_master_16``)
    on the team; ``out`` is flat fp32 of ``w``'s size."""
    return _run_momentum(w, g, v, lr, mu, nesterov, inv_scale, wd, bool(bf16), out)


def momentum_finish(w: np.ndarray, v: np.ndarray, decay: float) -> bool:
    """``Backend.momentum_finish`` with weight decay (``cpu_kernels.momentum_finish``) over
    flat arrays on the team."""
    if not _teamed(w):
        return False
    args = TEAM.arguments(w.size)
    args[3:5] = w.ctypes.data, v.ctypes.data
    args.view(np.float64)[5] = decay
    TEAM.run(_momentum_finish, args)
    return True


def sround_16(bits: np.ndarray, seed: int, offset: int, bf16: bool) -> bool:
    """Stochastic rounding of flat fp32 bit patterns (``cpu_kernels.sround_*_fast``, the
    random bits of element i drawn from ``(seed, offset + i)``) on the team."""
    if not _teamed(bits, np.uint32):
        return False
    args = TEAM.arguments(bits.size)
    args[3] = bits.ctypes.data
    args.view(np.uint64)[4:6] = seed, offset
    args[6] = bool(bf16)
    TEAM.run(_sround_16, args)
    return True


def round_16(bits: np.ndarray, bf16: bool) -> bool:
    """Nearest-even rounding of flat fp32 bit patterns to bf16 or fp16 in place
    (``cpu_kernels.round_*_fast``) on the team; False, having done nothing, without a team
    or below ``MIN_SIZE``."""
    if not _teamed(bits, np.uint32):
        return False
    args = TEAM.arguments(bits.size)
    args[3:5] = bits.ctypes.data, bool(bf16)
    TEAM.run(_round_16, args)
    return True


def all_finite_bits(bits: np.ndarray) -> bool | None:
    """Whether no value of flat fp32 bit patterns is inf or NaN, found on the team; None
    without a team or below ``MIN_SIZE``."""
    if not _teamed(bits, np.uint32):
        return None
    args = TEAM.arguments(bits.size)
    args[3] = bits.ctypes.data
    TEAM.run(_all_finite_bits, args)
    return not args[_FLAGS:].any()
