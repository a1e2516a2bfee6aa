"""GPU backend on CuPy: cuBLAS GEMMs (fp16/bf16 inputs on tensor cores with fp32
accumulation and output), CUDA kernels for rounding and im2col, CuPy for the rest.

Arrays are fp32 (fp64 for fp64) as on the CPU; fp16/bf16 values are exactly representable
in them, so the layer code, the rounding (bit-identical to the CPU kernels, stochastic
rounding included) and the checkpoints are the same on both devices. A GEMM of fp16/bf16
numerics casts its two operands to the 16-bit type (exact) and runs ``cublasGemmEx`` with
16-bit inputs and fp32 accumulation and output, which is where tensor cores pay.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neon.backends import gpu_kernels as kernels
from neon.backends.backend import Backend
from neon.errors import UserError

__all__ = ["GPUBackend", "column_major_gemm", "gemm_call"]


def gemm_call(a_shape: tuple[int, int], b_shape: tuple[int, int], trans_a: bool,
              trans_b: bool) -> dict[str, int]:
    """Column-major cuBLAS arguments for the row-major ``C = op(a) @ op(b)``.

    A row-major matrix is its transpose read column-major, so C^T = op(b)^T op(a)^T: the
    call passes ``b`` first. Returns ``opA, opB`` (0 = N, 1 = T; for the first and second
    cuBLAS operand), ``m, n, k`` and the leading dimensions.
    """
    m = a_shape[1] if trans_a else a_shape[0]
    k = a_shape[0] if trans_a else a_shape[1]
    kb = b_shape[1] if trans_b else b_shape[0]
    n = b_shape[0] if trans_b else b_shape[1]
    if k != kb:
        raise ValueError(f"shapes {a_shape}{'ᵀ' if trans_a else ''} and "
                         f"{b_shape}{'ᵀ' if trans_b else ''} do not align")
    return {"opA": int(trans_b), "opB": int(trans_a), "m": n, "n": m, "k": k,
            "lda": b_shape[1], "ldb": a_shape[1], "ldc": n}


def column_major_gemm(call: dict[str, int], first: np.ndarray, second: np.ndarray,
                      c: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> None:
    """What cuBLAS computes for ``call`` on flat buffers (a numpy reference for tests):
    ``C = alpha * op(A) op(B) + beta * C``, every matrix column-major with its leading
    dimension, ``A``/``B`` the first/second operand."""
    def cm(buf: np.ndarray, rows: int, cols: int, ld: int) -> np.ndarray:
        return buf.reshape(-1)[: ld * cols].reshape(cols, ld)[:, :rows].T

    m, n, k = call["m"], call["n"], call["k"]
    a = cm(first, k, m, call["lda"]).T if call["opA"] else cm(first, m, k, call["lda"])
    b = cm(second, n, k, call["ldb"]).T if call["opB"] else cm(second, k, n, call["ldb"])
    out = cm(c, m, n, call["ldc"])
    out[...] = alpha * (a @ b) + beta * out


class GPUBackend(Backend):
    """CuPy backend: ``gen_backend('gpu', 'fp16', device=0)``."""

    name = "gpu"

    def __init__(
        self,
        numerics: str = "fp32",
        stochastic_rounding: bool = False,
        seed: int = 0,
        device: int | None = None,
        threads: int | None = None,
        recipe: str | None = None,
        storage: dict[str, str] | None = None,
    ) -> None:
        self.xp = _import_cupy()
        count = _device_count(self.xp)
        index = int(device or 0)
        if count == 0:
            raise UserError("the gpu backend found no NVIDIA GPU (check nvidia-smi and "
                            "CUDA_VISIBLE_DEVICES), use --backend cpu")
        if not 0 <= index < count:
            raise UserError(f"GPU {index} does not exist: {count} visible", key="device")
        self.device = self.xp.cuda.Device(index)
        self.device.use()
        super().__init__(numerics, stochastic_rounding, seed, recipe, storage)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["device"] = int(self.device.id)
        props = self.xp.cuda.runtime.getDeviceProperties(self.device.id)
        name = props.get("name", b"")
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        return info

    # ----------------------------------------------------------------- transfers
    def to_host(self, x: Any) -> np.ndarray:
        return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    # ----------------------------------------------------------------- rounding
    def _round(self, x: Any) -> tuple[int, int]:
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            raise TypeError(f"can only round contiguous float32 arrays, got {x.dtype}")
        pre = x.copy() if self.flow is not None else None
        bits = x.reshape(-1).view(np.uint32)
        if self.stochastic_rounding:
            offset = self.next_rounding_offset(bits.size)
            kernels.stochastic_rounder(self.xp, self.format.name)(
                np.uint64(self.seed), np.uint64(offset), bits)
        else:
            kernels.rounder(self.xp, self.format.name)(bits)
        if pre is None:
            return 0, 0
        packed = int(kernels.flow_counter(self.xp)(pre.reshape(-1), x.reshape(-1),
                                                   np.float32(self.format.tiny)))
        return packed >> 32, packed & 0xFFFFFFFF

    # ----------------------------------------------------------------- GEMM
    @property
    def _half_operands(self) -> bool:
        """Whether GEMMs take 16-bit operands: the format stored now is 16-bit and the
        GEMMs' operands (weights, activations, gradients) are all stored in it, so the cast
        to 16 bits is exact, as on the CPU; otherwise fp32 GEMMs."""
        fmt, storage = self.format, self.storage
        return fmt.emulated and all(
            storage.of(c) is fmt for c in ("weights", "activations", "gradients"))

    def dot(self, a: Any, b: Any, out: Any = None, trans_a: bool = False,
            trans_b: bool = False, accumulate: bool = False) -> Any:
        if not self._half_operands:
            return super().dot(a, b, out, trans_a, trans_b, accumulate)
        if out is None:
            m = a.shape[1] if trans_a else a.shape[0]
            n = b.shape[0] if trans_b else b.shape[1]
            out = self.empty((m, n))
            accumulate = False
        self._half_gemm(a, b, out, trans_a, trans_b, beta=1.0 if accumulate else 0.0)
        return self.quantize(out)

    def _group_matmul(self, a: Any, b: Any, out: Any, groups: int, trans_a: bool = False,
                      trans_b: bool = False) -> None:
        if not self._half_operands:
            return super()._group_matmul(a, b, out, groups, trans_a, trans_b)
        if groups == 1:
            return self._half_gemm(a, b, out, trans_a, trans_b)
        a3 = a.reshape(groups, -1, a.shape[1])
        b3 = b.reshape(groups, -1, b.shape[1])
        o3 = out.reshape(groups, -1, out.shape[1])
        for g in range(groups):
            self._half_gemm(a3[g], b3[g], o3[g], trans_a, trans_b)
        return None

    def _half_gemm(self, a: Any, b: Any, out: Any, trans_a: bool, trans_b: bool,
                   beta: float = 0.0) -> None:
        """``out = op(a) @ op(b) (+ out)`` with 16-bit inputs, fp32 accumulation and output."""
        xp = self.xp
        call = gemm_call(a.shape, b.shape, trans_a, trans_b)
        if not out.flags.c_contiguous or out.dtype != np.float32:
            raise TypeError("GPU GEMM output must be a contiguous float32 array")
        a16 = self._half(xp.ascontiguousarray(a))
        b16 = self._half(xp.ascontiguousarray(b))
        self._gemm_ex(call, b16, a16, out, self._half_type(), beta=beta)

    def _half_type(self) -> int:
        return kernels.CUDA_R_16F if self.format.name == "fp16" else kernels.CUDA_R_16BF

    def _half_dtype(self) -> Any:
        return np.float16 if self.format.name == "fp16" else np.uint16

    def _half(self, x: Any) -> Any:
        """The 16-bit GEMM operand of ``x`` (exact: its values are already rounded); arrays
        that already are 16-bit patterns pass through."""
        if x.dtype in (np.float16, np.uint16):
            return x
        if self.format.name == "fp16":
            return x.astype(np.float16)
        return kernels.to_bf16_bits(self.xp)(x.reshape(-1).view(np.uint32)).reshape(x.shape)

    def _gemm_ex(self, call: dict[str, int], first: Any, second: Any, c: Any, dtype: int,
                 beta: float) -> None:
        from cupy_backends.cuda.libs import cublas

        alpha_h = np.array(1.0, dtype=np.float32)
        beta_h = np.array(beta, dtype=np.float32)
        handle = self.device.cublas_handle
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        cublas.gemmEx(handle, call["opA"], call["opB"], call["m"], call["n"], call["k"],
                      alpha_h.ctypes.data, first.data.ptr, dtype, call["lda"],
                      second.data.ptr, dtype, call["ldb"], beta_h.ctypes.data, c.data.ptr,
                      kernels.CUDA_R_32F, call["ldc"], kernels.CUBLAS_COMPUTE_32F,
                      kernels.CUBLAS_GEMM_DEFAULT)

    # ----------------------------------------------------------------- convolution
    def im2col(self, x: Any, fshape: tuple[int, int], strides: tuple[int, int],
               padding: tuple[int, int], out: Any = None) -> Any:
        if x.dtype != np.float32:
            return super().im2col(x, fshape, strides, padding, out)
        n, c, h, w = x.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        if out is None:
            out = self.empty((c * r * s, n * p * q), dtype=x.dtype)
        self._im2col(x, out, "f32", fshape, strides, padding)
        return out

    def _im2col(self, x: Any, out: Any, kind: str, fshape: tuple[int, int],
                strides: tuple[int, int], padding: tuple[int, int]) -> None:
        """Unfold into ``out`` (rows = C*R*S): fp32, or 16-bit patterns (``f16``/``bf16``)."""
        n, c, h, w = x.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        npq = n * p * q
        x = self.xp.ascontiguousarray(x)
        args = (x, out, *(np.int32(v) for v in (n, c, h, w, r, s, sh, sw, ph, pw, p, q)))
        blocks = (max(1, min((npq + 255) // 256, 1024)), c * r * s)
        kernels.im2col_kernels(self.xp)[kind](blocks, (256,), args)

    def _conv_unfold(self, x: Any, ws: dict[str, Any], shape: tuple[int, int],
                     fshape: tuple[int, int], strides: tuple[int, int],
                     padding: tuple[int, int]) -> Any:
        """fp16/bf16: the unfolded input is written as 16-bit GEMM operands directly (one
        pass instead of unfold + cast); fp32/fp64 unfold as usual."""
        if not self._half_operands or x.dtype != np.float32:
            return super()._conv_unfold(x, ws, shape, fshape, strides, padding)
        col16 = self._work(ws, "col16", shape, self._half_dtype())
        self._im2col(x, col16, "f16" if self.format.name == "fp16" else "bf16", fshape,
                     strides, padding)
        return col16

    def _conv_grad_operands(self, ws: dict[str, Any]) -> tuple[Any, Any]:
        if "col16" not in ws:
            return super()._conv_grad_operands(ws)
        # stored gradients times a 0/1 mask: exact in 16 bits
        return ws["col16"], self._half(ws["cn"])

    def col2im(self, col: Any, out: Any, fshape: tuple[int, int], strides: tuple[int, int],
               padding: tuple[int, int]) -> Any:
        if col.dtype != np.float32:
            return super().col2im(col, out, fshape, strides, padding)
        n, c, h, w = out.shape
        (r, s), (sh, sw), (ph, pw) = fshape, strides, padding
        p, q = (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1
        col = self.xp.ascontiguousarray(col)
        args = (col, out, *(np.int32(v) for v in (n, c, h, w, r, s, sh, sw, ph, pw, p, q)))
        _launch(kernels.col2im_kernel(self.xp), out.size, args)
        return out

    # ----------------------------------------------------------------- optimizer steps
    def sgd_update(self, w: Any, g: Any, v: Any, lr: float, momentum: float,
                   nesterov: bool, inv_scale: float, weight_decay: float,
                   weights: Any = None) -> None:
        """One fused kernel launch per parameter (the step is launch-bound on a GPU):
        velocity and weights rounded to the optimizer state's and master weights'
        formats."""
        if self.flow is not None:  # the diagnostics count what each rounding does
            return super().sgd_update(w, g, v, lr, momentum, nesterov, inv_scale,
                                      weight_decay, weights)
        wmode = np.int32(self.store_mode_of(self.storage.of("master_weights")))
        vmode = np.int32(self.store_mode_of(self.storage.of("optimizer_state")))
        n = int(w.size)
        offset = self.next_rounding_offset(2 * n) if max(wmode, vmode) > 2 else 0
        dt = w.dtype.type
        common = (np.uint64(self.seed), np.uint64(offset), np.uint64(n))
        if v is None:
            kernels.sgd_plain(self.xp)(g, dt(lr), dt(inv_scale), dt(weight_decay), wmode,
                                       *common, w)
        else:
            kernels.sgd_momentum(self.xp)(g, dt(lr), dt(momentum), dt(inv_scale),
                                          dt(weight_decay), vmode, wmode, *common,
                                          bool(nesterov), w, v)
        if weights is not None:
            self._copy_weights(w, weights)
        return None

    # ----------------------------------------------------------------- pooling
    def pool_fprop(self, x: Any, out: Any, argmax: Any, op: str, fshape: tuple[int, int],
                   strides: tuple[int, int], padding: tuple[int, int],
                   quantize: bool = False) -> Any:
        if x.dtype != np.float32:
            return super().pool_fprop(x, out, argmax, op, fshape, strides, padding, quantize)
        args = self._pool_args(x, out, x.shape, out.shape[2:], argmax, op, fshape, strides,
                               padding)
        _launch(kernels.pool_kernels(self.xp)[0], out.size, args)
        return self.quantize(out) if quantize else out

    def _pool_args(self, src: Any, out: Any, image: tuple[int, ...], pq: tuple[int, ...],
                   argmax: Any, op: str, fshape: tuple[int, int], strides: tuple[int, int],
                   padding: tuple[int, int]) -> tuple:
        """Kernel arguments shared by the pooling kernels (argmax unused for ``avg``)."""
        is_max = op == "max"
        amax = argmax if is_max else self.xp.empty(1, dtype=np.int32)
        dims = (*image, *fshape, *strides, *padding, *pq, is_max)
        return (self.xp.ascontiguousarray(src), out, amax, *(np.int32(v) for v in dims))

    def pool_bprop(self, delta: Any, out: Any, argmax: Any, op: str, fshape: tuple[int, int],
                   strides: tuple[int, int], padding: tuple[int, int],
                   quantize: bool = False) -> Any:
        if delta.dtype != np.float32:
            return super().pool_bprop(delta, out, argmax, op, fshape, strides, padding,
                                      quantize)
        args = self._pool_args(delta, out, out.shape, delta.shape[2:], argmax, op, fshape,
                               strides, padding)
        _launch(kernels.pool_kernels(self.xp)[1], out.size, args)
        return self.quantize(out) if quantize else out

    # ----------------------------------------------------------------- random numbers
    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._mask_calls = int(epoch) << 40

    def bernoulli_mask(self, shape: Any, keep: float, out: Any = None) -> Any:
        """Drawn on the device from counter-based bits (seed, epoch, call): reproducible per
        seed, and no host round trip (host draws cost ~10 ms a step for AlexNet's FC layers).
        """
        if out is None:
            out = self.empty(shape)
        n = int(out.size)
        offset = getattr(self, "_mask_calls", 0)
        self._mask_calls = offset + n
        threshold = np.uint32(min(int(keep * 2.0**32), 2**32 - 1))
        kernels.bernoulli(self.xp)(np.uint64(self.seed ^ 0x5BD1E995), np.uint64(offset),
                                   threshold, out)
        return out


def _launch(kernel: Any, total: int, args: tuple) -> None:
    threads = 256
    blocks = max(1, min((total + threads - 1) // threads, 65535 * 8))
    kernel((blocks,), (threads,), args)


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError:
        raise UserError("the gpu backend needs CuPy: pip install '.[gpu]' (cupy-cuda12x; "
                        "cupy-cuda13x for CUDA 13), or use --backend cpu") from None
    except Exception as exc:
        raise UserError(f"CuPy failed to load ({exc}); use --backend cpu") from None
    return cupy


def _device_count(cupy: Any) -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0
