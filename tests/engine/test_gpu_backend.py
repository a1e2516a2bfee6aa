"""GPU backend: what can be checked without a GPU runs here; kernels run where one is lent."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from neon.backends.gpu import column_major_gemm, gemm_call


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_cublas_argument_mapping_reproduces_row_major_gemm(trans_a, trans_b, accumulate):
    rng = np.random.default_rng(0)
    m, k, n = 5, 3, 4
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    c = rng.standard_normal((m, n))
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b) + (c if accumulate else 0)
    call = gemm_call(a.shape, b.shape, trans_a, trans_b)
    column_major_gemm(call, np.ascontiguousarray(b), np.ascontiguousarray(a), c,
                      beta=1.0 if accumulate else 0.0)
    np.testing.assert_allclose(c, expected, rtol=1e-12)


def test_gemm_call_rejects_misaligned_shapes():
    with pytest.raises(ValueError, match="do not align"):
        gemm_call((3, 4), (5, 6), False, False)


def test_gpu_selected_without_cupy_or_gpu_is_one_clear_line():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "from neon.cli import main\n"
            "sys.exit(main(['examples/mlp/digits-small.yaml', '--backend', 'gpu']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "needs CuPy" in proc.stderr


def test_gpu_kernel_sources_match_cpu_rounding_constants():
    """The CUDA rounding source carries the same bit constants as the numba kernels."""
    from neon.backends import gpu_kernels

    for constant in ("0x38800000u", "0x477FE000u", "0xFFFFE000u", "0x7FFFu", "0xFFFF0000u",
                     "0x9E3779B97F4A7C15ull", "0xBF58476D1CE4E5B9ull", "0x94D049BB133111EBull"):
        assert constant in gpu_kernels.PREAMBLE


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_gpu_rounding_is_bit_identical_to_cpu(fmt):
    import cupy

    from neon.backends import gen_backend

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(300_000) * np.exp(rng.uniform(-30, 14, 300_000))).astype(
        np.float32)
    x[:5] = [np.inf, -np.inf, np.nan, 65519.99, 1e-45]
    for sr in (False, True):
        cpu = gen_backend("cpu", fmt, stochastic_rounding=sr, seed=3).quantize(x.copy())
        gpu = gen_backend("gpu", fmt, stochastic_rounding=sr, seed=3)
        got = cupy.asnumpy(gpu.quantize(cupy.asarray(x)))
        same = (got.view(np.uint32) == cpu.view(np.uint32)) | (np.isnan(got) & np.isnan(cpu))
        assert same.all(), (sr, (~same).sum())


@pytest.mark.gpu
@pytest.mark.parametrize("numerics", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True)])
def test_gpu_gemm_matches_fp32_reference(numerics, trans):
    import cupy

    from neon.backends import gen_backend

    be = gen_backend("gpu", numerics)
    rng = np.random.default_rng(1)
    ta, tb = trans
    a = be.array(rng.standard_normal((64, 96) if not ta else (96, 64)))
    b = be.array(rng.standard_normal((96, 40) if not tb else (40, 96)))
    out = be.dot(a, b, trans_a=ta, trans_b=tb)
    ha, hb = cupy.asnumpy(a).astype(np.float64), cupy.asnumpy(b).astype(np.float64)
    ref = (ha.T if ta else ha) @ (hb.T if tb else hb)
    tol = {"fp32": 1e-5, "fp16": 2e-3, "bf16": 1e-2}[numerics]
    np.testing.assert_allclose(cupy.asnumpy(out), ref, rtol=tol, atol=tol * np.abs(ref).max())
    acc = be.dot(a, b, out=out, trans_a=ta, trans_b=tb, accumulate=True)
    np.testing.assert_allclose(cupy.asnumpy(acc), 2 * ref, rtol=2 * tol,
                               atol=2 * tol * np.abs(ref).max())


@pytest.mark.gpu
def test_gpu_im2col_col2im_match_the_generic_implementation():
    import cupy

    from neon.backends import gen_backend
    from neon.backends.backend import Backend

    be = gen_backend("gpu")
    x = cupy.asarray(np.random.default_rng(0).standard_normal((2, 3, 9, 7), dtype=np.float32))
    for fshape, strides, padding in [((3, 3), (1, 1), (1, 1)), ((5, 3), (2, 1), (2, 0)),
                                     ((2, 2), (2, 2), (0, 0))]:
        fast = be.im2col(x, fshape, strides, padding)
        slow = Backend.im2col(be, x, fshape, strides, padding)
        cupy.testing.assert_array_equal(fast, slow)
        out1 = cupy.empty_like(x)
        out2 = cupy.empty_like(x)
        be.col2im(fast, out1, fshape, strides, padding)
        Backend.col2im(be, fast, out2, fshape, strides, padding)
        cupy.testing.assert_allclose(out1, out2, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
def test_digits_example_trains_on_the_gpu(numerics):
    from neon.config import apply_overrides, build_experiment, load_config

    cfg = apply_overrides(load_config("examples/mlp/digits-small.yaml"), backend="gpu",
                          numerics=numerics)
    hist = build_experiment(cfg).run()
    assert hist.final["val_misclassification"] <= 0.05


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("fshape,strides,padding", [((3, 3), (2, 2), (0, 0)),
                                                    ((3, 2), (1, 2), (1, 1)),
                                                    ((2, 2), (2, 2), (0, 0))])
def test_gpu_pool_kernels_match_the_generic_implementation(op, fshape, strides, padding):
    import cupy

    from neon.backends import gen_backend
    from neon.backends.backend import Backend

    be = gen_backend("gpu")
    x = cupy.asarray(np.random.default_rng(0).standard_normal((2, 3, 9, 8), dtype=np.float32))
    x[0, 0, 1, 1] = np.nan
    n, c, h, w = x.shape
    p = (h + 2 * padding[0] - fshape[0]) // strides[0] + 1
    q = (w + 2 * padding[1] - fshape[1]) // strides[1] + 1
    outs, amaxes, grads = [], [], []
    for impl in (be.pool_fprop, lambda *a: Backend.pool_fprop(be, *a)):
        out = cupy.empty((n, c, p, q), np.float32)
        amax = cupy.empty((n, c, p, q), np.int32)
        impl(x, out, amax, op, fshape, strides, padding)
        outs.append(out)
        amaxes.append(amax)
    cupy.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    if op == "max":
        cupy.testing.assert_array_equal(amaxes[0], amaxes[1])
    delta = cupy.asarray(np.random.default_rng(1).standard_normal((n, c, p, q), np.float32))
    for impl in (be.pool_bprop, lambda *a: Backend.pool_bprop(be, *a)):
        dx = cupy.empty_like(x)
        impl(delta, dx, amaxes[0], op, fshape, strides, padding)
        grads.append(dx)
    cupy.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_gpu_dropout_masks_are_seeded_and_unbiased():
    import cupy

    from neon.backends import gen_backend

    a, b = gen_backend("gpu", seed=4), gen_backend("gpu", seed=4)
    a.set_epoch(0)
    b.set_epoch(0)
    ma, mb = a.bernoulli_mask((1000, 1000), 0.3), b.bernoulli_mask((1000, 1000), 0.3)
    cupy.testing.assert_array_equal(ma, mb)
    assert abs(float(ma.mean()) - 0.3) < 0.002
    assert not bool((a.bernoulli_mask((1000, 1000), 0.3) == ma).all())


@pytest.mark.gpu
@pytest.mark.parametrize("recipe,storage", [("pure", None), ("pure", {"optimizer_state": "fp32"}),
                                            ("mixed", None)], ids=["pure", "state32", "mixed"])
@pytest.mark.parametrize("numerics", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_gpu_fused_sgd_matches_the_cpu_kernel(numerics, momentum, nesterov, recipe, storage):
    """The velocity and weights stored in one format or in two (the kernel's two modes); a
    master copy's step also writes the weights the layers read (``weights``)."""
    import cupy

    from neon.backends import gen_backend

    rng = np.random.default_rng(0)
    w0, g0, v0 = (rng.standard_normal(4096) * s for s in (1.0, 50.0, 0.1))
    results = []
    for name in ("cpu", "gpu"):
        be = gen_backend(name, numerics, recipe=recipe, storage=storage)
        w, g, v = be.array(w0), be.array(g0), be.array(v0)
        copy = be.zeros(w.shape) if be.storage.keeps_master else None
        be.sgd_update(w, g, v if momentum else None, 0.05, momentum, nesterov, 1 / 64, 1e-3,
                      copy)
        results.append([be.to_host(a) for a in (w, v, w if copy is None else copy)])
    (wc, vc, cc), (wg, vg, cg) = results
    tol = {"fp32": 1e-6, "fp16": 2.0**-10, "bf16": 2.0**-7}[numerics]
    np.testing.assert_allclose(wg, wc, rtol=tol, atol=1e-7)
    np.testing.assert_allclose(cg, cc, rtol=tol, atol=1e-7)
    if momentum:
        np.testing.assert_allclose(vg, vc, rtol=tol, atol=1e-7)
    assert cupy is not None
