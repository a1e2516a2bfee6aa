"""LSTM training-step throughput: neon fp32/fp16/bf16 against PyTorch CPU ``nn.LSTM``.

One LSTM layer, hidden 512, input 512 (a first layer: no input gradient on either side),
sequence 50, batch 32; a step is forward, backpropagation through time from a fixed output
gradient, and a plain SGD update. Both run with one thread per core and are timed in
alternation after warm-up, in the same process: times are medians over rounds, ratios the
medians of the per-round ratios. Also times neon fp32 with the generic numpy cell
(Backend's reference implementation) instead of the fused numba kernels, to show what the
kernels buy. Writes benchmarks/results/engine_rnn.json.

    python -m benchmarks.engine_rnn [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import PeerProcess, check_targets, targets_text, timed, write_result
from neon.backends import gen_backend
from neon.backends.backend import Backend
from neon.layers.recurrent import LSTM
from neon.optimizers import build_optimizer

HIDDEN, INPUT, STEPS, BATCH = 512, 512, 50, 32


def step_flops() -> float:
    """GEMM flops of one step: input and recurrent projections, their weight gradients and
    the recurrent input gradients (no input gradient for a first layer)."""
    g = 4 * HIDDEN
    rows = BATCH * STEPS
    fwd = 2 * rows * (INPUT + HIDDEN) * g
    wgrad = 2 * rows * (INPUT + HIDDEN) * g
    dh = 2 * rows * HIDDEN * g
    return float(fwd + wgrad + dh)


def make_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, STEPS, INPUT), dtype=np.float32)
    dy = 0.01 * rng.standard_normal((BATCH, STEPS, HIDDEN), dtype=np.float32)
    return x, dy


def neon_step(numerics: str, x: np.ndarray, dy: np.ndarray, generic_cell: bool = False):
    be = gen_backend("cpu", numerics, seed=0)
    if generic_cell:  # the numpy reference instead of the fused kernels
        be.lstm_cell_fprop = Backend.lstm_cell_fprop.__get__(be)
        be.lstm_cell_bprop = Backend.lstm_cell_bprop.__get__(be)
    layer = LSTM(HIDDEN, name="lstm")
    layer.configure((STEPS, INPUT))
    layer.allocate(be)
    layer.need_input_grad = False
    opt = build_optimizer({"type": "sgd", "learning_rate": 1e-3})
    xd, dyd = be.array(x), be.array(dy)
    delta = be.empty(dyd.shape)

    def run() -> None:
        layer.fprop(xd)
        delta[...] = dyd  # bprop may work in place on its delta
        layer.bprop(delta)
        opt.optimize(layer.params, be)

    return run


def torch_step(x: np.ndarray, dy: np.ndarray, threads: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(INPUT, HIDDEN)  # time-major (T, N, F): its native layout
    opt = torch.optim.SGD(lstm.parameters(), lr=1e-3)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))
    dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(1, 0, 2)))

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        out, _ = lstm(xt)
        out.backward(dyt)
        opt.step()

    return run


def rounds(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int
           ) -> dict[str, list[float]]:
    """Seconds of every function in each of ``repeats`` rounds; each round times them all
    once, in an order rotated from round to round, so that load drifts hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(timed(fns[name]))
    return times


def paired(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time[a] / time[b] (robust to load changing between rounds)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/engine_rnn.json)")
    args = parser.parse_args(argv)
    repeats, warmup = (3, 1) if args.quick else (15, 3)
    threads = os.cpu_count() or 1
    x, dy = make_data()
    fns: dict[str, Any] = {f"neon_{n}": neon_step(n, x, dy) for n in ("fp32", "fp16", "bf16")}
    fns["neon_fp32_numpy_cell"] = neon_step("fp32", x, dy, generic_cell=True)
    fns["pytorch_fp32"] = peer = PeerProcess(torch_step, x, dy, threads)
    load_before = os.getloadavg()[0]
    try:
        times = rounds(fns, repeats=repeats, warmup=warmup)
    finally:
        peer.close()
    load_after = os.getloadavg()[0]
    seconds = {k: statistics.median(v) for k, v in times.items()}
    throughput = {k: BATCH * STEPS / s for k, s in seconds.items()}  # time steps per second
    gflops = {k: step_flops() / s / 1e9 for k, s in seconds.items()}
    # ratios: medians of the per-round ratios (the same round's timings, alike in load)
    ratios = {
        "neon_fp32_vs_pytorch": paired(times, "pytorch_fp32", "neon_fp32"),
        "fp16_time_vs_fp32": paired(times, "neon_fp16", "neon_fp32"),
        "bf16_time_vs_fp32": paired(times, "neon_bf16", "neon_fp32"),
        "fused_cell_speedup": paired(times, "neon_fp32_numpy_cell", "neon_fp32"),
    }
    targets = {"neon_fp32_vs_pytorch": (">=", 0.7), "fp16_time_vs_fp32": ("<=", 1.5)}
    print(f"LSTM training step: hidden {HIDDEN}, input {INPUT}, seq {STEPS}, batch {BATCH}, "
          f"SGD, {threads} threads, median of {repeats} rounds (load average "
          f"{load_before:.2f} before, {load_after:.2f} after)")
    print(f"  {'':22s} {'ms/step':>9s} {'steps/s':>9s} {'GFLOP/s':>9s}")
    for k in seconds:
        print(f"  {k:22s} {seconds[k] * 1e3:9.1f} {1 / seconds[k]:9.2f} {gflops[k]:9.1f}")
    passed = check_targets(ratios, targets)
    write_result("engine_rnn", {
        "config": {"hidden": HIDDEN, "input": INPUT, "steps": STEPS, "batch": BATCH,
                   "repeats": repeats, "warmup": warmup, "threads": threads,
                   "quick": args.quick, "load_average_before": load_before,
                   "load_average_after": load_after},
        "seconds_per_step": seconds, "seconds_per_round": times,
        "timesteps_per_second": throughput, "gflops": gflops,
        "ratios": ratios, "targets": targets_text(targets),
        "passed": passed,
    }, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
