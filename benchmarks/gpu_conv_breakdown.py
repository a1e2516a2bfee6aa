"""Where a GPU convolution step spends its time: each primitive of conv_fprop/conv_bprop
timed alone (CUDA events), for AlexNet's conv1 and conv2 at batch 128, fp32 and fp16."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

CASES = {"conv1": ((128, 3, 224, 224), 64, (11, 11), (4, 4), (2, 2)),
         "conv2": ((128, 64, 27, 27), 192, (5, 5), (1, 1), (2, 2))}


def breakdown(be: Any, case: tuple) -> dict[str, float]:
    """Median GPU milliseconds of each primitive for one convolution shape."""
    from cupyx.profiler import benchmark

    shape, k, fshape, strides, padding = case
    n, c, h, w = shape
    p = (h + 2 * padding[0] - fshape[0]) // strides[0] + 1
    q = (w + 2 * padding[1] - fshape[1]) // strides[1] + 1
    x = be.array(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    wt = be.array(np.random.default_rng(1).standard_normal((k, c, *fshape)) * 0.01)
    crs, npq = c * fshape[0] * fshape[1], n * p * q
    w2 = wt.reshape(k, crs)
    col, cn = be.empty((crs, npq)), be.empty((k, npq))
    y, dwt = be.empty((n, k, p, q)), be.empty((crs, k))
    steps = {
        "im2col": lambda: be.im2col(x, fshape, strides, padding, out=col),
        "fprop gemm": lambda: be._group_matmul(w2, col, cn, 1),
        "cn_to_nchw+relu": lambda: be.cn_to_nchw(cn, y, None, True),
        "quantize y": lambda: be.quantize(y),
        "nchw_to_cn": lambda: be.nchw_to_cn(y, cn, y),
        "dW gemm": lambda: be._group_matmul(col, cn, dwt, 1, trans_b=True),
        "dx gemm": lambda: be._group_matmul(w2, cn, col, 1, trans_a=True),
        "col2im": lambda: be.col2im(col, x, fshape, strides, padding),
        "cast col to 16 bits": lambda: be._half(col),
    }
    return {label: 1e3 * float(np.median(benchmark(fn, n_repeat=10, n_warmup=2).gpu_times))
            for label, fn in steps.items()}


def main() -> int:
    import cupy

    from neon.backends import gen_backend

    for numerics in ("fp32", "fp16"):
        be = gen_backend("gpu", numerics)
        for name, case in CASES.items():
            ms = breakdown(be, case)
            print(f"{numerics} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()),
                  flush=True)
            cupy.get_default_memory_pool().free_all_blocks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
