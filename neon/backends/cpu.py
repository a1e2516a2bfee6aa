"""CPU backend: numpy arrays, OpenBLAS GEMM, numba kernels for rounding and statistics."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from neon.backends import cpu_kernels as kernels
from neon.backends import cpu_rnn_kernels as rnn_kernels
from neon.backends.backend import Backend

__all__ = ["CPUBackend"]


class CPUBackend(Backend):
    """numpy backend; fp16/bf16 live in fp32 arrays holding exactly representable values."""

    name = "cpu"
    xp = np

    def __init__(
        self,
        numerics: str = "fp32",
        stochastic_rounding: bool = False,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        super().__init__(numerics, stochastic_rounding, seed)
        if threads:
            self.set_threads(threads)

    def _round(self, x: np.ndarray) -> tuple[int, int]:
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            raise TypeError(f"can only round contiguous float32 arrays, got {x.dtype}")
        bits = x.reshape(-1).view(np.uint32)
        if self.stochastic_rounding:
            offset = self.next_rounding_offset(bits.size)
            fn = kernels.STOCHASTIC_ROUNDERS[self.format.name]
            return fn(bits, bits, np.uint64(self.seed), np.uint64(offset))
        return kernels.ROUNDERS[self.format.name](bits, bits)

    def _flow_counts(self, x: np.ndarray) -> tuple[int, int]:
        return kernels.flow_counts(x.reshape(-1), x.dtype.type(self.format.tiny))

    def range_stats(self, x: np.ndarray) -> tuple[float, float, float, int]:
        flat = np.ascontiguousarray(x).reshape(-1)
        lo, hi, total, bad = kernels.range_stats(flat)
        finite = flat.size - bad
        if finite == 0:
            return float("nan"), float("nan"), float("nan"), int(bad)
        return float(lo), float(hi), float(total) / finite, int(bad)

    def all_finite(self, arrays: list[Any]) -> bool:
        return all(kernels.range_stats(np.ascontiguousarray(a).reshape(-1))[3] == 0 for a in arrays)

    def set_threads(self, n: int) -> None:
        from threadpoolctl import threadpool_limits

        n = max(1, int(n))
        threadpool_limits(limits=n)
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    # Fused numba versions of the recurrent-cell primitives (same contract as Backend's).
    def lstm_cell_fprop(self, gates: Any, c_prev: Any, c: Any, tanh_c: Any, h: Any) -> None:
        rnn_kernels.lstm_fprop(gates, c_prev, c, tanh_c, h)
        for a in (gates, c, tanh_c, h):
            self.quantize(a)

    def lstm_cell_bprop(
        self, gates: Any, c_prev: Any, tanh_c: Any, dh: Any, dc: Any, dgates: Any, dc_prev: Any
    ) -> None:
        rnn_kernels.lstm_bprop(gates, c_prev, tanh_c, dh, dc, dgates, dc_prev)
        self.quantize(dgates)
        self.quantize(dc_prev)
