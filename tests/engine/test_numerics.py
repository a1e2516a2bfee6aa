"""Rounding to fp16/bf16: nearest-even against ml_dtypes/numpy, stochastic rounding unbiased."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from scipy import stats

from neon.backends import cpu_kernels as kernels
from neon.backends import gen_backend, get_format
from neon.backends.numerics import round_nearest, round_stochastic
from neon.errors import ConfigError

DTYPES = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16}


def hard_values(fmt: str) -> np.ndarray:
    """Ties, subnormals, overflow boundaries, specials and a wide random sweep."""
    rng = np.random.default_rng(0)
    wide = (rng.standard_normal(200_000) * np.exp(rng.uniform(-30, 14, 200_000)))
    dtype = DTYPES[fmt]
    # exact midpoints between consecutive representable values -> ties to even
    grid = np.arange(0, 60_000, 37, dtype=np.uint16).view(dtype).astype(np.float32)
    grid = grid[np.isfinite(grid)]
    nxt = np.nextafter(grid.astype(dtype), np.array(np.inf, dtype)).astype(np.float32)
    ties = ((grid.astype(np.float64) + nxt) / 2).astype(np.float32)
    info = get_format(fmt)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.max, -info.max, info.tiny,
                         info.tiny / 2, info.tiny / 3, 65519.99, 65520.0, 3.0e38, 1e-45,
                         2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-26])
    return np.concatenate([wide, ties, -ties, specials]).astype(np.float32)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_nearest_kernel_matches_ml_dtypes_bit_for_bit(fmt):
    x = hard_values(fmt)
    with np.errstate(over="ignore"):
        expected = x.astype(DTYPES[fmt]).astype(np.float32)
    be = gen_backend("cpu", fmt)
    got = be.quantize(x.copy())
    same = (got.view(np.uint32) == expected.view(np.uint32)) | (np.isnan(got) & np.isnan(expected))
    assert same.all(), f"{(~same).sum()} mismatches, e.g. {x[~same][:5]} -> {got[~same][:5]}"
    np.testing.assert_array_equal(round_nearest(x, get_format(fmt)), expected)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_large_arrays_use_the_parallel_kernel_with_same_results(fmt):
    x = np.random.default_rng(1).standard_normal(kernels.PARALLEL_MIN_SIZE * 3).astype(np.float32)
    a, b = x.copy(), x.copy()
    kernels.ROUNDERS[fmt].serial(a.view(np.uint32))
    kernels.ROUNDERS[fmt](b.view(np.uint32))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_stochastic_rounding_lands_on_neighbours_and_is_unbiased(fmt):
    rng = np.random.default_rng(3)
    base = (rng.standard_normal(64) * np.exp(rng.uniform(-6, 6, 64))).astype(np.float32)
    if fmt == "fp16":  # include values in fp16's subnormal range
        base[:8] = rng.uniform(-2.0**-15, 2.0**-15, 8).astype(np.float32)
    n = 20_000
    x = np.repeat(base[None, :], n, axis=0)
    be = gen_backend("cpu", fmt, stochastic_rounding=True, seed=7)
    r = be.quantize(x.copy())
    dtype = DTYPES[fmt]
    # every result is representable and one of the two neighbours of x
    np.testing.assert_array_equal(r.astype(dtype).astype(np.float32), r)
    lo = np.minimum.reduce(r, axis=0)
    hi = np.maximum.reduce(r, axis=0)
    assert np.all((lo <= base) & (base <= hi))
    # mean within 4.5 standard errors of x (a Bernoulli between two neighbours)
    p = np.where(hi > lo, (base - lo) / np.where(hi > lo, hi - lo, 1), 0)
    stderr = (hi - lo) * np.sqrt(p * (1 - p) / n) + 1e-30
    z = np.abs(r.astype(np.float64).mean(axis=0) - base) / stderr
    assert z.max() < 4.5, f"biased: max z {z.max():.2f}"


def test_stochastic_rounding_reference_is_unbiased():
    x = np.full(100_000, 1.0 + 2.0**-12, dtype=np.float32)  # between fp16 1.0 and 1.0009765625
    r = round_stochastic(x, get_format("fp16"), np.random.default_rng(0))
    assert set(np.unique(r)) == {1.0, np.float32(1 + 2.0**-10)}
    assert stats.binomtest(int((r > 1).sum()), r.size, 0.25).pvalue > 1e-4


def test_stochastic_rounding_is_reproducible_per_seed():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    a = gen_backend("cpu", "fp16", stochastic_rounding=True, seed=1).quantize(x.copy())
    b = gen_backend("cpu", "fp16", stochastic_rounding=True, seed=1).quantize(x.copy())
    c = gen_backend("cpu", "fp16", stochastic_rounding=True, seed=2).quantize(x.copy())
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_flow_counts_overflow_and_underflow():
    be = gen_backend("cpu", "fp16")
    from neon.backends import FlowCounter

    be.flow = FlowCounter()
    with be.scope("layer"):
        be.quantize(np.array([1e5, -1e6, 1.0, 1e-6, 1e-9, 0.0, 2.0], dtype=np.float32))
    f = be.flow.fractions()["layer"]
    assert f["overflow"] == pytest.approx(2 / 7)
    assert f["underflow"] == pytest.approx(2 / 7)  # 1e-6 (subnormal) and 1e-9 (to zero)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_counted_stochastic_rounding_equals_the_uncounted_one(fmt):
    """With the diagnostics' flow counting on, stochastic rounding draws the same bits and
    stores the same values, and counts what overflowed."""
    from neon.backends import FlowCounter

    rng = np.random.default_rng(5)
    x = (rng.standard_normal(1000) * np.exp(rng.uniform(-20, 20, 1000))).astype(np.float32)
    x[:3] = [3.402e38 if fmt == "bf16" else 1e6, 3.0, -2.5]  # past the format's max
    plain = gen_backend("cpu", fmt, stochastic_rounding=True, seed=4).quantize(x.copy())
    be = gen_backend("cpu", fmt, stochastic_rounding=True, seed=4)
    be.flow = FlowCounter()
    with be.scope("layer"):
        counted = be.quantize(x.copy())
    np.testing.assert_array_equal(counted, plain)
    overflowed = (np.isinf(counted) & np.isfinite(x)).sum()
    assert overflowed > 0
    assert be.flow.fractions()["layer"]["overflow"] == pytest.approx(overflowed / x.size)


def test_fp32_storage_counts_infinities_and_subnormals():
    from neon.backends import FlowCounter

    be = gen_backend("cpu", "fp32")
    be.flow = FlowCounter()
    be.quantize(np.array([np.inf, 1.0, 1e-40, 0.0], dtype=np.float32))
    assert be.flow.fractions()["-"] == {"overflow": 0.25, "underflow": 0.25}


def test_unknown_numerics_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean 'fp16'"):
        gen_backend("cpu", "fp17")


def test_formats():
    assert get_format("fp16").max == 65504.0
    assert get_format("bf16").mantissa_bits == 7
    assert not get_format("fp32").emulated and get_format("bf16").emulated
    assert gen_backend("cpu", "fp64").dtype == np.float64


def test_all_finite_sees_every_inf_and_nan():
    be = gen_backend("cpu", "fp16")
    x = np.zeros(100_003, dtype=np.float32)
    assert be.all_finite([x, x[:7]])
    for bad in (np.inf, -np.inf, np.nan):
        y = x.copy()
        y[-1] = bad
        assert not be.all_finite([x, y])
    assert not gen_backend("cpu", "fp64").all_finite([np.array([1.0, np.nan])])


def _with_nan_payloads(x: np.ndarray) -> np.ndarray:
    payloads = np.array([0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FC00001, 0xFFFFFFFF, 0x7F802000],
                        np.uint32).view(np.float32)
    return np.concatenate([x, payloads])


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_fast_rounders_are_the_counting_ones_bit_for_bit(fmt):
    """The count-free kernels (bf16's on signed bits, fp16's a hardware conversion where
    there is one) against the counting ones, NaN payloads included."""
    x = _with_nan_payloads(hard_values(fmt))
    fast, counted = x.copy(), x.copy()
    kernels.FAST_ROUNDERS[fmt](fast.view(np.uint32))
    kernels.ROUNDERS[fmt].serial(counted.view(np.uint32))
    np.testing.assert_array_equal(fast.view(np.uint32), counted.view(np.uint32))


def test_fp16_rounds_in_hardware_where_the_cpu_converts():
    """F16C on x86-64 (the reference machine and CI): the fast path must not be lost."""
    import platform

    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten().split(",")
    if platform.machine() == "x86_64":
        assert kernels.FP16_IN_HARDWARE is ("+f16c" in features)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_one_pass_16_bit_momentum_is_the_two_pass_one_bit_for_bit(fmt, nesterov):
    """The one-loop step (fp16 in hardware, bf16) against velocity-then-weights passes."""
    rng = np.random.default_rng(2)
    w, g, v = (rng.standard_normal((3, 70_001)) * [[1.0], [300.0], [0.1]]).astype(np.float32)
    w[:3] = [np.inf, np.nan, 7e4]
    bf16 = fmt == "bf16"
    kernels.FAST_ROUNDERS[fmt](w.view(np.uint32))
    kernels.FAST_ROUNDERS[fmt](v.view(np.uint32))
    lr, mu, inv_scale, wd = (np.float32(a) for a in (0.05, 0.9, 1 / 128, 1e-3))
    args = (lr, mu, nesterov, inv_scale, wd)
    one, two = (w.copy(), v.copy()), (w.copy(), v.copy())
    kernels.FAST_MOMENTUM[fmt](one[0], g, one[1], *args)
    kernels._velocity_16(two[0], g, two[1], lr, mu, inv_scale, wd, bf16)
    kernels._weights_16(two[0], g, two[1], *args, bf16)
    for got, want in zip(one, two):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_the_software_fp16_value_rounding_is_the_hardware_one():
    """``_fp16_by_bits`` (machines without F16C) and the conversion agree bit for bit."""
    import numba

    @numba.njit
    def both(x, soft, hard):
        for i in range(x.size):
            soft[i] = kernels._fp16_by_bits(x[i])
            hard[i] = kernels._fp16_by_conversion(x[i]) if kernels.FP16_IN_HARDWARE else soft[i]

    x = _with_nan_payloads(hard_values("fp16"))
    soft, hard = np.empty_like(x), np.empty_like(x)
    both(x, soft, hard)
    counted = x.copy()
    kernels.ROUNDERS["fp16"].serial(counted.view(np.uint32))
    np.testing.assert_array_equal(soft.view(np.uint32), counted.view(np.uint32))
    np.testing.assert_array_equal(hard.view(np.uint32), counted.view(np.uint32))
