"""CUDA kernels of the GPU backend (CuPy ElementwiseKernel/RawKernel sources).

The rounding kernels are the CPU kernels' bit logic (``cpu_kernels.py``) in CUDA C, so fp16
and bf16 rounding, stochastic rounding included (same splitmix64 counter stream), give the
same bits on both devices. Kernels are compiled on first use and cached by CuPy.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = [
    "CUDA_R_16BF",
    "CUDA_R_16F",
    "CUDA_R_32F",
    "PREAMBLE",
    "bernoulli",
    "col2im_kernel",
    "flow_counter",
    "im2col_kernels",
    "pool_kernels",
    "rounder",
    "sgd_momentum",
    "sgd_plain",
    "stochastic_rounder",
    "to_bf16_bits",
]

CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF = 0, 2, 14
CUBLAS_COMPUTE_32F = 68
CUBLAS_GEMM_DEFAULT = -1

PREAMBLE = r"""
__device__ __forceinline__ unsigned int nr_round_fp16(unsigned int v) {
    unsigned int a = v & 0x7FFFFFFFu;
    if (a >= 0x38800000u) {
        if (a < 0x7F800000u) {
            a = (a + 0xFFFu + ((a >> 13) & 1u)) & 0xFFFFE000u;
            if (a > 0x477FE000u) a = 0x7F800000u;
        }
    } else if (a != 0u) {
        float r = rintf(__uint_as_float(a) * 16777216.0f) * 5.9604644775390625e-08f;
        a = __float_as_uint(r);
    }
    return (v & 0x80000000u) | a;
}
__device__ __forceinline__ unsigned int nr_round_bf16(unsigned int v) {
    unsigned int a = v & 0x7FFFFFFFu;
    if (a < 0x7F800000u) {
        a = (a + 0x7FFFu + ((a >> 16) & 1u)) & 0xFFFF0000u;
    } else if (a > 0x7F800000u) {
        a = 0x7FC00000u;
    }
    return (v & 0x80000000u) | a;
}
__device__ __forceinline__ unsigned int nr_bits(unsigned long long seed,
                                                unsigned long long index) {
    unsigned long long z = seed + index * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (unsigned int)(z >> 32);
}
__device__ __forceinline__ unsigned int sr_round_fp16(unsigned int v, unsigned int bits) {
    unsigned int a = v & 0x7FFFFFFFu;
    if (a >= 0x38800000u) {
        if (a < 0x7F800000u) {
            a = (a + (bits & 0x1FFFu)) & 0xFFFFE000u;
            if (a > 0x477FE000u) a = 0x7F800000u;
        }
    } else if (a != 0u) {
        float f = __uint_as_float(a) * 16777216.0f;
        float low = floorf(f);
        float u = (float)(bits >> 8) * 5.9604644775390625e-08f;
        if (u < f - low) low += 1.0f;
        a = __float_as_uint(low * 5.9604644775390625e-08f);
    }
    return (v & 0x80000000u) | a;
}
__device__ __forceinline__ unsigned int sr_round_bf16(unsigned int v, unsigned int bits) {
    unsigned int a = v & 0x7FFFFFFFu;
    if (a < 0x7F800000u) {
        a = (a + (bits & 0xFFFFu)) & 0xFFFF0000u;
    } else if (a > 0x7F800000u) {
        a = 0x7FC00000u;
    }
    return (v & 0x80000000u) | a;
}
"""


@cache
def rounder(cupy: Any, fmt: str) -> Any:
    """In-place nearest-even rounding of fp32 bits (``uint32`` view) to ``fmt``."""
    return cupy.ElementwiseKernel("", "uint32 x", f"x = nr_round_{fmt}(x)",
                                  f"neon_round_{fmt}", preamble=PREAMBLE)


@cache
def stochastic_rounder(cupy: Any, fmt: str) -> Any:
    """In-place stochastic rounding; element ``i`` uses bits (seed, offset + i)."""
    return cupy.ElementwiseKernel(
        "uint64 seed, uint64 offset", "uint32 x",
        f"x = sr_round_{fmt}(x, nr_bits(seed, offset + (unsigned long long)i))",
        f"neon_sround_{fmt}", preamble=PREAMBLE)


@cache
def flow_counter(cupy: Any) -> Any:
    """(overflow << 32) + underflow counts from values before and after rounding."""
    return cupy.ReductionKernel(
        "float32 pre, float32 post, float32 tiny", "uint64 y",
        "(isfinite(pre) && isinf(post) ? (1ull << 32) : 0ull)"
        " + ((pre != 0.0f && fabsf(post) < tiny) ? 1ull : 0ull)",
        "a + b", "y = a", "0", "neon_flow_count")


@cache
def to_bf16_bits(cupy: Any) -> Any:
    """The upper halves of fp32 bit patterns: exact for values already rounded to bf16."""
    return cupy.ElementwiseKernel("uint32 x", "uint16 y", "y = (unsigned short)(x >> 16)",
                                  "neon_to_bf16_bits")


_IM2COL = r"""
__device__ __forceinline__ unsigned short neon_fp16_bits(float f) {
    // exact for values already representable in fp16 (stored activations are)
    unsigned int u = __float_as_uint(f);
    unsigned int sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) return (unsigned short)(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u : 0u));
    if (a >= 0x38800000u)
        return (unsigned short)(sign | (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3FFu));
    return (unsigned short)(sign | (unsigned int)(__uint_as_float(a) * 16777216.0f));
}
template <int MODE> __device__ __forceinline__ unsigned short neon_bits(float v) {
    return MODE == 1 ? neon_fp16_bits(v) : (unsigned short)(__float_as_uint(v) >> 16);
}
template <typename T, int MODE>
__device__ __forceinline__ void neon_im2col(
        const float* x, T* out, int N, int C, int H, int W, int R, int S,
        int sh, int sw, int ph, int pw, int P, int Q) {
    int row = blockIdx.y;  // (c, r, s)
    int s = row % S, r = (row / S) % R, c = row / (R * S);
    int npq = N * P * Q;
    T* dst = out + (long long)row * npq;
    for (int col = blockIdx.x * blockDim.x + threadIdx.x; col < npq;
         col += blockDim.x * gridDim.x) {
        int q = col % Q, t = col / Q, p = t % P, n = t / P;
        int h = p * sh - ph + r, w = q * sw - pw + s;
        float v = (h >= 0 && h < H && w >= 0 && w < W)
            ? x[(((long long)n * C + c) * H + h) * W + w] : 0.0f;
        if (MODE == 0) dst[col] = (T)v; else dst[col] = (T)neon_bits<MODE>(v);
    }
}
extern "C" __global__ void neon_im2col_f32(const float* x, float* out, int N, int C, int H,
        int W, int R, int S, int sh, int sw, int ph, int pw, int P, int Q) {
    neon_im2col<float, 0>(x, out, N, C, H, W, R, S, sh, sw, ph, pw, P, Q);
}
extern "C" __global__ void neon_im2col_f16(const float* x, unsigned short* out, int N, int C,
        int H, int W, int R, int S, int sh, int sw, int ph, int pw, int P, int Q) {
    neon_im2col<unsigned short, 1>(x, out, N, C, H, W, R, S, sh, sw, ph, pw, P, Q);
}
extern "C" __global__ void neon_im2col_bf16(const float* x, unsigned short* out, int N, int C,
        int H, int W, int R, int S, int sh, int sw, int ph, int pw, int P, int Q) {
    neon_im2col<unsigned short, 2>(x, out, N, C, H, W, R, S, sh, sw, ph, pw, P, Q);
}
"""

_COL2IM = r"""
extern "C" __global__ void neon_col2im(
        const float* col, float* out, int N, int C, int H, int W, int R, int S,
        int sh, int sw, int ph, int pw, int P, int Q) {
    int total = N * C * H * W;  // < 2**31 for any batch that fits in memory
    long long npq = (long long)N * P * Q;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += blockDim.x * gridDim.x) {
        int w = idx % W, t = idx / W, h = t % H; t /= H;
        int c = t % C, n = t / C;
        int plo = max(0, (h + ph - R + sh) / sh), phi = min(P - 1, (h + ph) / sh);
        int qlo = max(0, (w + pw - S + sw) / sw), qhi = min(Q - 1, (w + pw) / sw);
        if (h + ph - R + 1 < 0) plo = 0;
        if (w + pw - S + 1 < 0) qlo = 0;
        float acc = 0.0f;
        for (int p = plo; p <= phi; ++p) {
            int r = h + ph - p * sh;
            for (int q = qlo; q <= qhi; ++q) {
                int s = w + pw - q * sw;
                long long row = ((long long)c * R + r) * S + s;
                acc += col[row * npq + ((long long)n * P + p) * Q + q];
            }
        }
        out[idx] = acc;
    }
}
"""


@cache
def im2col_kernels(cupy: Any) -> dict[str, Any]:
    """im2col writing fp32, or exact fp16 / bf16 bit patterns (GEMM-ready 16-bit operands)."""
    module = cupy.RawModule(code=_IM2COL)
    return {name: module.get_function(f"neon_im2col_{name}") for name in ("f32", "f16", "bf16")}


@cache
def col2im_kernel(cupy: Any) -> Any:
    return cupy.RawKernel(_COL2IM, "neon_col2im")


@cache
def bernoulli(cupy: Any) -> Any:
    """``m = 1`` with probability threshold / 2**32 (counter-based bits, like rounding)."""
    return cupy.ElementwiseKernel(
        "uint64 seed, uint64 offset, uint32 threshold", "T m",
        "m = nr_bits(seed, offset + (unsigned long long)i) < threshold ? (T)1 : (T)0",
        "neon_bernoulli", preamble=PREAMBLE)


_POOL = r"""
extern "C" __global__ void neon_pool_fprop(
        const float* x, float* out, int* argmax, int N, int C, int H, int W, int R, int S,
        int sh, int sw, int ph, int pw, int P, int Q, int is_max) {
    long long total = (long long)N * C * P * Q;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        int q = idx % Q; long long t = idx / Q; int p = t % P; long long nc = t / P;
        int h0 = p * sh - ph, w0 = q * sw - pw;
        int h1 = min(h0 + R, H), w1 = min(w0 + S, W);
        h0 = max(h0, 0); w0 = max(w0, 0);
        const float* plane = x + nc * H * W;
        if (is_max) {
            float best = __int_as_float(0xff800000); int where = h0 * W + w0; bool nan = false;
            for (int h = h0; h < h1; ++h)
                for (int w = w0; w < w1; ++w) {
                    float v = plane[h * W + w];
                    if (isnan(v)) { best = v; where = h * W + w; nan = true; }  // last NaN
                    else if (!nan && v > best) { best = v; where = h * W + w; }
                }
            out[idx] = best; argmax[idx] = where;
        } else {
            float acc = 0.0f;
            for (int h = h0; h < h1; ++h)
                for (int w = w0; w < w1; ++w) acc += plane[h * W + w];
            out[idx] = acc / (float)((h1 - h0) * (w1 - w0));
        }
    }
}
extern "C" __global__ void neon_pool_bprop(
        const float* delta, float* out, const int* argmax, int N, int C, int H, int W,
        int R, int S, int sh, int sw, int ph, int pw, int P, int Q, int is_max) {
    long long total = (long long)N * C * H * W;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        int w = idx % W; long long t = idx / W; int h = t % H; long long nc = t / H;
        int plo = max(0, (h + ph - R + sh) / sh), phi = min(P - 1, (h + ph) / sh);
        int qlo = max(0, (w + pw - S + sw) / sw), qhi = min(Q - 1, (w + pw) / sw);
        if (h + ph - R + 1 < 0) plo = 0;
        if (w + pw - S + 1 < 0) qlo = 0;
        float acc = 0.0f;
        for (int p = plo; p <= phi; ++p)
            for (int q = qlo; q <= qhi; ++q) {
                long long o = (nc * P + p) * Q + q;
                if (is_max) {
                    if (argmax[o] == h * W + w) acc += delta[o];
                } else {
                    int h0 = p * sh - ph, w0 = q * sw - pw;
                    int cnt = (min(h0 + R, H) - max(h0, 0)) * (min(w0 + S, W) - max(w0, 0));
                    acc += delta[o] / (float)cnt;
                }
            }
        out[idx] = acc;
    }
}
"""


@cache
def pool_kernels(cupy: Any) -> tuple[Any, Any]:
    module = cupy.RawModule(code=_POOL)
    return module.get_function("neon_pool_fprop"), module.get_function("neon_pool_bprop")


_STORE = r"""
__device__ __forceinline__ float neon_store(float x, int mode, unsigned long long seed,
                                            unsigned long long index) {
    if (mode == 0) return x;
    unsigned int v = __float_as_uint(x);
    if (mode == 1) v = nr_round_fp16(v);
    else if (mode == 2) v = nr_round_bf16(v);
    else if (mode == 3) v = sr_round_fp16(v, nr_bits(seed, index));
    else v = sr_round_bf16(v, nr_bits(seed, index));
    return __uint_as_float(v);
}
"""


@cache
def sgd_momentum(cupy: Any) -> Any:
    """The CPU ``sgd_update`` kernel's arithmetic, one thread per weight: the velocity
    stored under ``vmode``, the weights under ``wmode``."""
    return cupy.ElementwiseKernel(
        "T g, T lr, T mu, T inv_scale, T wd, int32 vmode, int32 wmode, uint64 seed, "
        "uint64 offset, uint64 count, bool nesterov", "T w, T v",
        """
        T grad = g * inv_scale + wd * w;
        T vel = (T)neon_store((float)(mu * v - lr * grad), vmode, seed, offset + i);
        if (vmode == 0) vel = mu * v - lr * grad;
        v = vel;
        T step = nesterov ? mu * vel - lr * grad : vel;
        T nw = w + step;
        w = wmode == 0 ? nw : (T)neon_store((float)nw, wmode, seed, offset + count + i);
        """, "neon_sgd_momentum", preamble=PREAMBLE + _STORE)


@cache
def sgd_plain(cupy: Any) -> Any:
    return cupy.ElementwiseKernel(
        "T g, T lr, T inv_scale, T wd, int32 mode, uint64 seed, uint64 offset, uint64 count",
        "T w",
        """
        T nw = w - lr * (g * inv_scale + wd * w);
        w = mode == 0 ? nw : (T)neon_store((float)nw, mode, seed, offset + count + i);
        """, "neon_sgd_plain", preamble=PREAMBLE + _STORE)
