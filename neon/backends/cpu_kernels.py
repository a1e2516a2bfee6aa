"""Fused CPU kernels (numba) for what numpy does slowly: rounding to fp16/bf16.

numpy's float32->float16 cast runs at about 1.9 ns per element on the reference machine
(no SIMD loop), which would make fp16 emulation 3x slower than fp32; these kernels round in
place in one vectorized pass on the fp32 bit patterns (about 0.3 ns per element) and can
count overflow and underflow on the way, so the diagnostics cost no extra pass. They take one
array, not a source and a destination: LLVM cannot vectorize a loop whose input and output
may alias, and every caller rounds in place (measured 2.7x slower through two views).
Results are bit-identical to ``numerics.round_nearest``; stochastic rounding is unbiased and
reproducible for a seed, whatever the number of threads (counter-based random bits).
"""

from __future__ import annotations

import os
import platform
import types

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core.extending import intrinsic

# OpenMP worker threads spin after a parallel region and starve the BLAS's threads on small
# machines (measured: 500x slower training on 2 cores); the workqueue layer's threads sleep.
if "NUMBA_THREADING_LAYER" not in os.environ:
    nb.config.THREADING_LAYER = "workqueue"

_U = np.uint32
_SIGN = _U(0x80000000)
_ABS = _U(0x7FFFFFFF)
_INF = _U(0x7F800000)
_FP16_MIN_NORMAL = _U(0x38800000)  # 2**-14 as fp32 bits
_FP16_MAX = _U(0x477FE000)  # 65504 as fp32 bits
_FP16_QUANTUM = np.float32(2.0**-24)  # spacing of fp16 subnormals
_FP16_SCALE = np.float32(2.0**24)

_OPTS = {"cache": True, "nogil": True, "boundscheck": False}
PARALLEL_MIN_SIZE = 1 << 16  # below this, thread start-up costs more than it saves


class _Kernel:
    """A kernel compiled twice: serial for small arrays, multi-threaded for large ones;
    ``opts`` are numba options on top of ``_OPTS``."""

    def __init__(self, fn, **opts):
        self.__doc__ = fn.__doc__
        opts = {**_OPTS, **opts}
        self.serial = nb.njit(**opts)(_renamed(fn, "serial"))
        self.parallel = nb.njit(parallel=True, **opts)(_renamed(fn, "parallel"))

    def __call__(self, x, *args):
        kernel = self.parallel if x.size >= PARALLEL_MIN_SIZE else self.serial
        return kernel(x, *args)


def _renamed(fn, suffix):
    """A copy of ``fn`` with its own name, so the two compilations get separate cache files."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_{suffix}",
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = f"{fn.__qualname__}_{suffix}"
    return copy


def _kernel(fn):
    return _Kernel(fn)


@nb.njit(inline="always")
def _random_bits(seed: np.uint64, index: np.uint64) -> np.uint32:
    """splitmix64 of (seed, index): 32 independent-looking bits per element."""
    z = seed + index * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.uint32(z >> np.uint64(32))


# Scalar rounding of one fp32 bit pattern: (rounded bits, overflowed 0/1, underflowed 0/1).
# Every kernel below (and the LSTM and optimizer kernels) rounds through these four. They are
# written without branches (both candidates computed, one selected) so that LLVM vectorizes
# the loops that call them: about 8x faster than the branchy form on AVX2.
@nb.njit(inline="always")
def nearest_fp16(v):  # pragma: no cover - compiled
    # Adding and removing M = 2**(e + 13), e the exponent of |v| (at least fp16's -14),
    # rounds |v| to fp16's spacing 2**(e - 10) (2**-24 among subnormals), nearest-even.
    a = v & _ABS
    magic = _U(max(a & _INF, _FP16_MIN_NORMAL) + _U(13 << 23)).view(np.float32)
    r = np.float32(np.float32(_U(a).view(np.float32) + magic) - magic).view(np.uint32)
    finite = a < _INF
    overflow = r > _FP16_MAX
    r = (_INF if overflow else r) if finite else a
    over = 1 if (finite and overflow) else 0
    under = 1 if (a != _U(0) and r < _FP16_MIN_NORMAL) else 0
    return (v & _SIGN) | r, over, under


@nb.njit(inline="always")
def nearest_bf16(v):  # pragma: no cover - compiled
    a = v & _ABS
    r = (a + _U(0x7FFF) + ((a >> _U(16)) & _U(1))) & _U(0xFFFF0000)
    finite = a < _INF
    over = 1 if (finite and r == _INF) else 0
    under = 1 if (finite and a != _U(0) and r < _U(0x00800000)) else 0
    r = r if finite else (_U(0x7FC00000) if a > _INF else a)  # keep NaN a NaN
    return (v & _SIGN) | r, over, under


@nb.njit(inline="always")
def stochastic_fp16(v, bits):  # pragma: no cover - compiled
    a = v & _ABS
    normal = (a + (bits & _U(0x1FFF))) & _U(0xFFFFE000)
    overflow = normal > _FP16_MAX
    normal = _INF if overflow else normal
    f = _U(a).view(np.float32) * _FP16_SCALE
    low = np.floor(f)
    u = np.float32(bits >> _U(8)) * np.float32(2.0**-24)
    low = low + np.float32(1.0) if u < f - low else low
    sub = np.float32(low * _FP16_QUANTUM).view(np.uint32)
    is_normal = a >= _FP16_MIN_NORMAL
    finite = a < _INF
    r = (normal if is_normal else sub) if finite else a
    over = 1 if (finite and is_normal and overflow) else 0
    under = 1 if (a != _U(0) and not is_normal and sub < _FP16_MIN_NORMAL) else 0
    return (v & _SIGN) | r, over, under


@nb.njit(inline="always")
def stochastic_bf16(v, bits):  # pragma: no cover - compiled
    a = v & _ABS
    r = (a + (bits & _U(0xFFFF))) & _U(0xFFFF0000)
    finite = a < _INF
    over = 1 if (finite and r == _INF) else 0
    under = 1 if (finite and a != _U(0) and r < _U(0x00800000)) else 0
    r = r if finite else (_U(0x7FC00000) if a > _INF else a)
    return (v & _SIGN) | r, over, under


@_kernel
def round_fp16(x):  # pragma: no cover - compiled
    """Round fp32 bits ``x`` in place to nearest-even fp16 values; (overflow, underflow)."""
    over = 0
    under = 0
    for i in nb.prange(x.size):
        r, o, u = nearest_fp16(x[i])
        x[i] = r
        over += o
        under += u
    return over, under


@_kernel
def round_bf16(x):  # pragma: no cover - compiled
    """Round fp32 bits ``x`` in place to nearest-even bf16 values; (overflow, underflow)."""
    over = 0
    under = 0
    for i in nb.prange(x.size):
        r, o, u = nearest_bf16(x[i])
        x[i] = r
        over += o
        under += u
    return over, under


@_kernel
def sround(x, seed, offset, bf16):  # pragma: no cover - compiled
    """Stochastically round fp32 bits in place to bf16 (``bf16``) or fp16 values (unbiased);
    (overflow, underflow). ``bf16`` is loop invariant (LLVM unswitches it)."""
    over = 0
    under = 0
    for i in nb.prange(x.size):
        bits = _random_bits(seed, np.uint64(offset + i))
        r, o, u = stochastic_bf16(x[i], bits) if bf16 else stochastic_fp16(x[i], bits)
        x[i] = r
        over += o
        under += u
    return over, under


@nb.njit(inline="always")
def store(x, mode, seed, index):  # pragma: no cover - compiled
    """``x`` as stored under ``mode`` (``numerics.STORE_MODES``): (value, overflowed,
    underflowed)."""
    if mode == 0:
        return x, 0, 0
    v = np.float32(x).view(np.uint32)
    if mode == 1:
        r, o, u = nearest_fp16(v)
    elif mode == 2:
        r, o, u = nearest_bf16(v)
    elif mode == 3:
        r, o, u = stochastic_fp16(v, _random_bits(seed, np.uint64(index)))
    else:
        r, o, u = stochastic_bf16(v, _random_bits(seed, np.uint64(index)))
    return np.uint32(r).view(np.float32), o, u


@_kernel
def sgd_update(w, g, v, lr, mu, nesterov, inv_scale, wd, vmode, wmode, seed, offset):
    """One fused SGD step (the generic ``Backend.sgd_update`` in one pass): gradient
    unscaled plus weight decay, velocity (if ``v`` is not empty) updated and stored under
    ``vmode``, then the weights under ``wmode``; (overflow, underflow) of the stored
    velocities, then of the stored weights."""  # pragma: no cover
    n = w.size
    has_v = v.size == n
    over_v = 0
    under_v = 0
    over_w = 0
    under_w = 0
    for i in nb.prange(n):
        grad = g[i] * inv_scale + wd * w[i]
        if has_v:
            vel, o1, u1 = store(mu * v[i] - lr * grad, vmode, seed, offset + i)
            v[i] = vel
            step = mu * vel - lr * grad if nesterov else vel
            over_v += o1
            under_v += u1
        else:
            step = -lr * grad
        new, o2, u2 = store(w[i] + step, wmode, seed, offset + n + i)
        w[i] = new
        over_w += o2
        under_w += u2
    return over_v, under_v, over_w, under_w


@_kernel
def flow_counts(x, tiny):  # pragma: no cover - compiled
    """(infinities, nonzero values below ``tiny``) in an array stored at full precision."""
    over = 0
    under = 0
    for i in nb.prange(x.size):
        a = abs(x[i])
        if a == np.inf:
            over += 1
        elif a < tiny and a != 0:
            under += 1
    return over, under


@_kernel
def range_stats(x):  # pragma: no cover - compiled
    """(min, max, sum |x|, count of non-finite) over finite values, in one pass."""
    lo = np.inf
    hi = -np.inf
    total = 0.0
    bad = 0
    for i in nb.prange(x.size):
        v = np.float64(x[i])
        if np.isfinite(v):
            lo = min(lo, v)
            hi = max(hi, v)
            total += abs(v)
        else:
            bad += 1
    return lo, hi, total, bad


@intrinsic
def _through_fp16(typingctx, x):
    """fp32 -> fp16 -> fp32 as two LLVM conversions (IEEE nearest-even, as ``nearest_fp16``):
    on x86-64 with F16C one vcvtps2ph/vcvtph2ps pair per 8-16 lanes."""
    if x != nb.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())

    return nb.float32(nb.float32), codegen


@nb.njit(**_OPTS)
def _probe_fp16_conversions(x):  # pragma: no cover - compiled
    for i in range(x.size):
        x[i] = _through_fp16(x[i])


def _has_fp16_conversions() -> bool:
    """Whether fp32 -> fp16 rounds in hardware here (x86-64 with F16C, AArch64) and agrees
    with ``nearest_fp16`` on the edge cases: the conversion is otherwise a library call that
    numba's JIT may not link. numba must compile for this host (``NUMBA_CPU_NAME`` unset)."""
    machine = platform.machine().lower()
    if nb.config.CPU_NAME or nb.config.CPU_FEATURES:
        return False
    if machine in ("x86_64", "amd64"):
        import llvmlite.binding as llvm

        if "+f16c" not in llvm.get_host_cpu_features().flatten().split(","):
            return False
    elif machine not in ("aarch64", "arm64"):
        return False
    edges = np.array([0.0, -0.0, 1.0, 1 + 2.0**-11, 1 + 3 * 2.0**-11, 65504.0, 65519.99,
                      65520.0, -1e6, 2.0**-14, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 1e-40,
                      np.inf, -np.inf, 0.1, -3.3e-5], np.float32)
    rng = np.random.default_rng(0)
    probe = np.concatenate([edges, (rng.standard_normal(4096) * np.exp2(
        rng.uniform(-30, 18, 4096))).astype(np.float32)])
    try:
        got = probe.copy()
        _probe_fp16_conversions(got)
    except Exception:  # no instruction and no library call to link
        return False
    want = probe.view(np.uint32).copy()
    round_fp16.serial(want)
    return bool(np.array_equal(got.view(np.uint32), want))


# fp16 rounding in hardware costs half the software version's time on the reference machine
# and lets the momentum step take one pass. (numba freezes the globals a kernel reads when it
# compiles, and its cache is per CPU, so a cached kernel keeps this machine's choice.)
FP16_IN_HARDWARE = _has_fp16_conversions()


@nb.njit
def _fp16_by_conversion(f):  # pragma: no cover - compiled
    return _through_fp16(f) if abs(f) < np.float32(np.inf) else f


@nb.njit
def _fp16_by_bits(f):  # pragma: no cover - compiled
    return _U(nearest_fp16(np.float32(f).view(np.uint32))[0]).view(np.float32)


# fp32 rounded to nearest-even fp16, as fp32, without counters; NaN kept as is
_nearest_fp16_value = _fp16_by_conversion if FP16_IN_HARDWARE else _fp16_by_bits


@nb.njit
def _nearest_bf16_value(f):  # pragma: no cover - compiled
    """fp32 rounded to nearest-even bf16, as fp32: ``nearest_bf16`` without counters, on the
    signed bits (no carry reaches the sign below NaN); 1.5x faster, as its loops vectorize
    without the counters' selects."""
    b = np.float32(f).view(np.uint32)
    r = (b + _U(0x7FFF) + ((b >> _U(16)) & _U(1))) & _U(0xFFFF0000)
    r = r if (b & _ABS) <= _INF else (b & _SIGN) | _U(0x7FC00000)
    return _U(r).view(np.float32)


# Count-free variants for the common case (no diagnostics): the counters above halve the
# speed of the loops. Serial on purpose: numba's threads would fight the BLAS's spinning ones
# between GEMMs; big arrays are rounded in chunks on the BLAS's own threads (``cpu_omp``).
@nb.njit(**_OPTS)
def round_fp16_fast(x):  # pragma: no cover - compiled
    for i in range(x.size):
        x[i] = np.float32(_nearest_fp16_value(_U(x[i]).view(np.float32))).view(np.uint32)


@nb.njit(**_OPTS)
def round_bf16_fast(x):  # pragma: no cover - compiled
    for i in range(x.size):
        x[i] = np.float32(_nearest_bf16_value(_U(x[i]).view(np.float32))).view(np.uint32)


@nb.njit(**_OPTS)
def sround_fp16_fast(x, seed, offset):  # pragma: no cover - compiled
    for i in range(x.size):
        x[i] = stochastic_fp16(x[i], _random_bits(seed, np.uint64(offset + i)))[0]


@nb.njit(**_OPTS)
def sround_bf16_fast(x, seed, offset):  # pragma: no cover - compiled
    for i in range(x.size):
        x[i] = stochastic_bf16(x[i], _random_bits(seed, np.uint64(offset + i)))[0]


@nb.njit(inline="always")
def _momentum_step(w, g, v, i, lr, mu, nesterov, inv_scale, wd):  # pragma: no cover
    """(unrounded velocity, gradient) of one weight."""
    grad = g[i] * inv_scale + wd * w[i]
    return mu * v[i] - lr * grad, grad


@nb.njit(inline="always")
def _stored(x, bf16):  # pragma: no cover - compiled
    """``x`` rounded to nearest-even bf16 (``bf16``) or fp16, as fp32: ``store`` for the two
    nearest modes only (its four-way dispatch keeps the loops scalar: measured 1.7x slower)."""
    return _nearest_bf16_value(np.float32(x)) if bf16 else _nearest_fp16_value(np.float32(x))


# Without F16C the fp16 momentum step takes two passes, velocity then weights: one loop doing
# the bit-twiddling rounding twice vectorizes worse and measured 1.4x slower inside the
# training loop. The two passes are also the tests' reference for the one-pass loop, for both
# formats. ``bf16`` is loop invariant (LLVM unswitches it).
@nb.njit(**_OPTS)
def _velocity_16(w, g, v, lr, mu, inv_scale, wd, bf16):  # pragma: no cover - compiled
    for i in range(w.size):
        v[i] = _stored(_momentum_step(w, g, v, i, lr, mu, False, inv_scale, wd)[0], bf16)


@nb.njit(**_OPTS)
def _weights_16(w, g, v, lr, mu, nesterov, inv_scale, wd, bf16):  # pragma: no cover - compiled
    if nesterov:
        for i in range(w.size):
            w[i] = _stored(w[i] + mu * v[i] - lr * (g[i] * inv_scale + wd * w[i]), bf16)
    else:
        for i in range(w.size):
            w[i] = _stored(w[i] + v[i], bf16)


@nb.njit(**_OPTS)
def _momentum_16_one_pass(w, g, v, lr, mu, nesterov, inv_scale, wd, bf16):  # pragma: no cover
    """Both passes in one loop, where the rounding is cheap (bf16's; fp16's as a hardware
    conversion): 1.7x faster than the two passes, which then wait on memory."""
    for i in range(w.size):
        vel, grad = _momentum_step(w, g, v, i, lr, mu, nesterov, inv_scale, wd)
        vel = _stored(vel, bf16)
        v[i] = vel
        w[i] = _stored(w[i] + mu * vel - lr * grad if nesterov else w[i] + vel, bf16)


def momentum_fp16(w, g, v, lr, mu, nesterov, inv_scale, wd):
    """The fused SGD step with momentum, nearest-even fp16 storage, no counters."""
    if FP16_IN_HARDWARE:
        _momentum_16_one_pass(w, g, v, lr, mu, nesterov, inv_scale, wd, False)
        return
    _velocity_16(w, g, v, lr, mu, inv_scale, wd, False)
    _weights_16(w, g, v, lr, mu, nesterov, inv_scale, wd, False)


def momentum_bf16(w, g, v, lr, mu, nesterov, inv_scale, wd):
    """The fused SGD step with momentum, nearest-even bf16 storage, no counters."""
    _momentum_16_one_pass(w, g, v, lr, mu, nesterov, inv_scale, wd, True)


@nb.njit(**_OPTS)
def momentum_full(w, g, v, lr, mu, nesterov, inv_scale, wd):  # pragma: no cover - compiled
    """The fused SGD step with momentum at full precision (fp32/fp64 storage): one pass
    where numpy's array ops take four (measured 2.5x faster)."""
    for i in range(w.size):
        vel, grad = _momentum_step(w, g, v, i, lr, mu, nesterov, inv_scale, wd)
        v[i] = vel
        w[i] += mu * vel - lr * grad if nesterov else vel


@nb.njit(**_OPTS)
def momentum_master_16(w, g, v, out, lr, mu, nesterov, inv_scale, wd, bf16):  # pragma: no cover
    """``momentum_full`` on master weights ``w`` that also writes them, rounded to
    nearest-even bf16 (``bf16``) or fp16, into ``out`` (the weights the layers read): one pass
    where the step and the rounded copy take three."""
    for i in range(w.size):
        vel, grad = _momentum_step(w, g, v, i, lr, mu, nesterov, inv_scale, wd)
        v[i] = vel
        new = w[i] + (mu * vel - lr * grad if nesterov else vel)
        w[i] = new
        out[i] = _stored(new, bf16)


@nb.njit(**_OPTS)
def momentum_finish(w, v, decay):  # pragma: no cover - compiled
    """``Backend.momentum_finish`` in one pass (numpy's array ops take two or three)."""
    for i in range(w.size):
        vel = v[i] - decay * w[i]
        v[i] = vel
        w[i] += vel


@nb.njit(**_OPTS)
def bias_activation(y, b, relu):  # pragma: no cover - compiled
    """``Backend.bias_activation`` for 2-D ``y`` with a bias and identity or ReLU, in one
    pass where numpy takes two (the ReLU keeps NaN, as ``numpy.maximum`` does)."""
    zero = y.dtype.type(0)
    for i in range(y.shape[0]):
        row = y[i]
        if relu:
            for j in range(row.size):
                v = row[j] + b[j]
                row[j] = zero if v < zero else v
        else:
            for j in range(row.size):
                row[j] += b[j]


@nb.njit(**_OPTS)
def bias_softmax(y, b):  # pragma: no cover - compiled
    """``Backend.bias_activation`` with softmax for 2-D ``y``, one row at a time while it is
    in cache (numpy's six array ops pass over it six times); an empty ``b`` adds no bias.
    A NaN in a row makes the whole row NaN, as the array ops do."""
    zero = y.dtype.type(0)
    for i in range(y.shape[0]):
        row = y[i]
        if b.size:
            for j in range(row.size):
                row[j] += b[j]
        top = row[0]
        for j in range(1, row.size):
            if not row[j] <= top:
                top = row[j]
        total = zero
        for j in range(row.size):
            e = np.exp(row[j] - top)
            row[j] = e
            total += e
        for j in range(row.size):
            row[j] /= total


@nb.njit(**_OPTS)
def activation_bias_grad(y, d, bias_grad, relu, alpha, beta):  # pragma: no cover - compiled
    """``Backend.activation_bias_grad`` for 2-D ``d`` with identity or ReLU and a bias: one
    pass where numpy takes three. Rows are summed in order, as numpy's axis-0 sum does, and
    alpha and beta applied as ``scale_into`` does."""
    dt = d.dtype.type
    one, zero, alpha, beta = dt(1), dt(0), dt(alpha), dt(beta)
    total = np.zeros(bias_grad.size, d.dtype)
    for i in range(d.shape[0]):
        row = d[i]
        if relu:
            out = y[i]
            for j in range(row.size):
                v = row[j] * (one if out[j] > zero else zero)
                row[j] = v
                total[j] += v
        else:
            for j in range(row.size):
                total[j] += row[j]
    for j in range(total.size):
        v = total[j] * alpha if alpha != one else total[j]
        if beta == zero:
            bias_grad[j] = v
        else:
            bias_grad[j] = (bias_grad[j] * beta if beta != one else bias_grad[j]) + v


@nb.njit(**_OPTS)
def onehot(labels, out):  # pragma: no cover - compiled
    """``Backend.onehot`` into C-contiguous ``out``: negative labels count from the end, as
    numpy's indexing does. Returns the row of the first label out of range, else -1."""
    n = out.shape[1]
    out[:] = 0
    for i in range(labels.size):
        k = labels[i]
        if k < 0:
            k += n
        if k < 0 or k >= n:
            return i
        out[i, k] = 1
    return -1


@nb.njit(**_OPTS)
def cross_entropy(y, t, eps):  # pragma: no cover - compiled
    """``Backend.cross_entropy`` over flat arrays, summed in fp64 (numpy's takes five
    array ops). Zero targets skip the logarithm: their term is 0 unless ``y`` is NaN or
    +inf (``max`` keeps a NaN, as ``numpy.maximum`` does; 0 * inf is NaN)."""
    total = 0.0
    inf = y.dtype.type(np.inf)
    for i in range(y.size):
        v = y[i]
        if t[i] == 0:
            if not v < inf and v != -inf:
                total += np.nan
            continue
        if v < eps:
            v = eps
        total += t[i] * np.log(v)
    return -total


@nb.njit(**_OPTS)
def all_finite_bits(bits):  # pragma: no cover - compiled
    """True when no value (fp32 bit patterns) is inf or NaN: a branch-free OR-reduction."""
    seen = _U(0)
    for i in range(bits.size):
        seen |= _U(1) if (bits[i] & _INF) == _INF else _U(0)
    return seen == _U(0)


ROUNDERS = {"fp16": round_fp16, "bf16": round_bf16}
FAST_ROUNDERS = {"fp16": round_fp16_fast, "bf16": round_bf16_fast}
FAST_STOCHASTIC_ROUNDERS = {"fp16": sround_fp16_fast, "bf16": sround_bf16_fast}
FAST_MOMENTUM = {"fp16": momentum_fp16, "bf16": momentum_bf16, "fp32": momentum_full,
                 "fp64": momentum_full}
