"""MLP 784-1024-1024-10 training throughput: neon fp32/fp16/bf16 against PyTorch CPU.

Same shapes, batch 128, momentum SGD, synthetic data, all measured in one run; achieved
GFLOP/s against the sgemm peak measured in the same run (the larger of numpy's and the
engine's own BLAS's), its GEMMs timed in turn with the epochs so that both see the same
machine. Writes
benchmarks/results/engine_mlp.json.  Usage: python -m benchmarks.engine_mlp [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable

import numpy as np

from benchmarks.common import (
    PeerProcess,
    check_targets,
    interleaved,
    targets_text,
    timed,
    write_result,
)
from neon.backends import cpu_blas, gen_backend
from neon.datasets import ArrayIterator
from neon.models import Model
from neon.optimizers import build_optimizer

SIZES = (784, 1024, 1024, 10)
BATCH = 128


def step_flops(batch: int = BATCH) -> float:
    """GEMM flops of one training step: forward, weight gradients, input gradients
    (not for the first layer, whose input gradient nobody needs)."""
    pairs = list(itertools.pairwise(SIZES))
    fwd = sum(2 * batch * a * b for a, b in pairs)
    wgrad = fwd
    dgrad = sum(2 * batch * a * b for a, b in pairs[1:])
    return float(fwd + wgrad + dgrad)


def make_data(nbatches: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((nbatches * BATCH, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], nbatches * BATCH)
    return x, y


def neon_epoch(numerics: str, x: np.ndarray, y: np.ndarray):
    be = gen_backend("cpu", numerics, seed=0)
    layers = [{"type": "affine", "nout": n, "init": "kaiming", "activation": "relu"}
              for n in SIZES[1:-1]]
    layers.append({"type": "affine", "nout": SIZES[-1], "activation": "softmax"})
    model = Model(layers, "cross_entropy", be=be)
    data = ArrayIterator(x, y, BATCH)
    opt = build_optimizer({"type": "momentum", "learning_rate": 0.01, "momentum": 0.9})
    state = {"epochs": 0}

    def run() -> None:
        state["epochs"] += 1
        model.fit(data, opt, state["epochs"], metrics=None)

    return run


def torch_epoch(x: np.ndarray, y: np.ndarray, threads: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers: list = []
    for a, b in itertools.pairwise(SIZES[:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(SIZES[-2], SIZES[-1]))
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs = torch.from_numpy(x).split(BATCH)
    ys = torch.from_numpy(y).split(BATCH)

    def run() -> None:
        for xb, yb in zip(xs, ys):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()

    return run


PEAK_N = 2048


def sgemm_calls(n: int = PEAK_N) -> dict[str, Callable[[], float]]:
    """An n^3 sgemm in numpy (its OpenBLAS) and in the engine's BLAS, each returning the
    seconds of the last of three products in a row, a sustained load like the epochs it
    alternates with. The first two let the threads of the library that ran before go idle
    (OpenBLAS's spin for about 0.1 s after a call: timed at once, oneMKL right after numpy's
    sgemm ran at half speed). The fraction of peak is taken against the faster library."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    products = {"numpy": lambda: np.dot(a, a, out=c)}
    if cpu_blas.BLAS.available:
        products[cpu_blas.BLAS.library] = lambda: cpu_blas.gemm(a, a, c)

    def third(product: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            product()
            product()
            return timed(product)
        return run

    return {name: third(product) for name, product in products.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and repeats")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/engine_mlp.json)")
    args = parser.parse_args(argv)
    nbatches, repeats = (8, 3) if args.quick else (40, 7)
    threads = os.cpu_count() or 1
    x, y = make_data(nbatches)
    fns = {f"neon_{n}": neon_epoch(n, x, y) for n in ("fp32", "fp16", "bf16")}
    fns["pytorch_fp32"] = peer = PeerProcess(torch_epoch, x, y, threads)
    gemms = {f"sgemm_{name}": fn for name, fn in sgemm_calls().items()}
    try:
        seconds = interleaved(fns | gemms, repeats=repeats, warmup=2)
    finally:
        peer.close()
    peaks = {k.removeprefix("sgemm_"): 2 * PEAK_N**3 / seconds.pop(k) / 1e9 for k in gemms}
    samples = nbatches * BATCH
    throughput = {k: samples / s for k, s in seconds.items()}
    peak = max(peaks.values())
    gflops = step_flops() * nbatches / seconds["neon_fp32"] / 1e9
    ratios = {
        "neon_fp32_vs_pytorch": throughput["neon_fp32"] / throughput["pytorch_fp32"],
        "fraction_of_sgemm_peak": gflops / peak,
        "fraction_of_numpy_sgemm_peak": gflops / peaks["numpy"],
        "fp16_time_vs_fp32": seconds["neon_fp16"] / seconds["neon_fp32"],
        "bf16_time_vs_fp32": seconds["neon_bf16"] / seconds["neon_fp32"],
    }
    targets = {
        "neon_fp32_vs_pytorch": (">=", 1.0),
        "fraction_of_sgemm_peak": (">=", 0.60),
        "fp16_time_vs_fp32": ("<=", 1.5),
        "bf16_time_vs_fp32": ("<=", 1.5),
    }
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, momentum SGD, {threads} threads, "
          f"{nbatches} batches per timing, median of {repeats}")
    for k in seconds:
        print(f"  {k:14s} {throughput[k]:10.0f} samples/s")
    print(f"  sgemm peak {peak:.1f} GFLOP/s (" + ", ".join(f"{k} {v:.1f}" for k, v in
                                                 peaks.items())
          + f"); neon fp32 achieves {gflops:.1f} GFLOP/s with {cpu_blas.BLAS.source}")
    passed = check_targets(ratios, targets)
    write_result("engine_mlp", {
        "config": {"sizes": SIZES, "batch": BATCH, "nbatches": nbatches, "repeats": repeats,
                   "threads": threads, "quick": args.quick},
        "seconds_per_epoch": seconds, "samples_per_second": throughput,
        "sgemm_peak_gflops": peak, "sgemm_peaks_gflops": peaks, "neon_fp32_gflops": gflops,
        "ratios": ratios, "targets": targets_text(targets),
        "passed": passed,
    }, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
