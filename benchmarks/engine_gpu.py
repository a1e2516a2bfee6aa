"""neon's GPU backend against PyTorch on the same GPU: MLP and AlexNet training steps.

One training step = forward, backward and a momentum-SGD update on a batch already on the
GPU, for the MLP of benchmarks/engine_mlp.py (784-1024-1024-10, batch 128) and AlexNet
(convnet-benchmarks layout, 3x224x224, batch 128). neon fp32 and fp16 (fp16 storage, fp16
GEMM inputs on tensor cores with fp32 accumulation) against PyTorch fp32 (TF32 off, the
same arithmetic) and PyTorch autocast fp16, all in one run. Writes
benchmarks/results/engine_gpu.json.  Usage: python -m benchmarks.engine_gpu [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import verdict, write_result

MLP = [{"type": "affine", "nout": 1024, "init": "kaiming", "activation": "relu"},
       {"type": "affine", "nout": 1024, "init": "kaiming", "activation": "relu"},
       {"type": "affine", "nout": 10, "activation": "softmax"}]


def alexnet_layers() -> list[dict[str, Any]]:
    from neon.config import load_config

    return load_config("examples/convnet/i1k-alexnet-fp32.yaml")["model"]["layers"]


def time_steps(step: Callable[[], None], sync: Callable[[], None], repeats: int,
               steps: int) -> float:
    """Median seconds per step over ``repeats`` timings of ``steps`` steps (after warm-up)."""
    for _ in range(3):
        step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def neon_step(layers: list[dict[str, Any]], numerics: str, batch: int,
              shape: tuple[int, ...], nclass: int, timer: Any = None
              ) -> tuple[Callable[[], None], Any]:
    from neon.backends import gen_backend
    from neon.models import Model
    from neon.optimizers import build_optimizer

    be = gen_backend("gpu", numerics, seed=0)
    model = Model(layers, "cross_entropy", be=be)
    model.initialize(shape)
    rng = np.random.default_rng(0)
    x = be.array(rng.standard_normal((batch, *shape), dtype=np.float32))
    t = be.onehot(be.asarray(rng.integers(0, nclass, batch)), nclass)
    delta = be.empty((batch, nclass))
    opt = build_optimizer({"type": "momentum", "learning_rate": 0.01, "momentum": 0.9})
    params = model.params

    def step() -> None:
        y = model.fprop(x, timer=timer)
        model.cost.bprop_shortcut(be, y, t, delta)
        be.quantize(delta)
        model.bprop(delta, timer=timer)
        if timer is None:
            opt.optimize(params, be)
        else:
            with timer.span("optimizer", "update"):
                opt.optimize(params, be)

    if timer is not None:
        timer.be = be
    return step, be.synchronize


def profile(layers: list[dict[str, Any]], numerics: str, shape: tuple[int, ...],
            nclass: int, batch: int, steps: int = 5) -> dict[str, dict[str, float]]:
    """Per-layer milliseconds per step (device synchronized around each layer)."""
    from neon.diagnostics import LayerTimer

    timer = LayerTimer(None)
    step, sync = neon_step(layers, numerics, batch, shape, nclass, timer)
    step()
    sync()
    timer.reset()
    for _ in range(steps):
        step()
        timer.batches += 1
    return timer.summary()


def torch_net(kind: str) -> Any:
    from torch import nn

    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10))
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000),
    )


def torch_step(kind: str, fp16: bool, batch: int, shape: tuple[int, ...],
               nclass: int) -> tuple[Callable[[], None], Callable[[], None]]:
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # true fp32, as neon's fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    dev = torch.device("cuda")
    net = torch_net(kind).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=dev)
    y = torch.randint(0, nclass, (batch,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    return step, torch.cuda.synchronize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="also print neon's per-layer time for AlexNet")
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    repeats, steps = (3, 5) if args.quick else (5, 20)
    cases = {"mlp": (MLP, 128, (784,), 10), "alexnet": (alexnet_layers(), 128, (3, 224, 224),
                                                         1000)}
    seconds: dict[str, dict[str, float]] = {}
    for kind, (layers, batch, shape, nclass) in cases.items():
        seconds[kind] = {}
        for numerics in ("fp32", "fp16"):
            step, sync = neon_step(layers, numerics, batch, shape, nclass)
            seconds[kind][f"neon_{numerics}"] = time_steps(step, sync, repeats, steps)
            step, sync = torch_step(kind, numerics == "fp16", batch, shape, nclass)
            seconds[kind][f"pytorch_{numerics}"] = time_steps(step, sync, repeats, steps)
    ratios = {}
    for kind in cases:
        s = seconds[kind]
        ratios[f"{kind}_fp32_vs_pytorch"] = s["pytorch_fp32"] / s["neon_fp32"]
        ratios[f"{kind}_fp16_vs_pytorch"] = s["pytorch_fp16"] / s["neon_fp16"]
        ratios[f"{kind}_fp16_speedup"] = s["neon_fp32"] / s["neon_fp16"]
    targets = {"mlp_fp32_vs_pytorch": 0.8, "mlp_fp16_vs_pytorch": 0.8,
               "alexnet_fp32_vs_pytorch": 0.8, "alexnet_fp16_vs_pytorch": 0.8,
               "alexnet_fp16_speedup": 1.5}
    passed = {k: ratios[k] >= t for k, t in targets.items()}
    import cupy

    gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    gpu = gpu.decode() if isinstance(gpu, bytes) else str(gpu)
    print(f"{gpu}: training step ms (median of {repeats} x {steps} steps)")
    for kind, s in seconds.items():
        print("  " + kind + ": " + ", ".join(f"{k} {1e3 * v:.2f}" for k, v in s.items()))
    for k, t in targets.items():
        print(f"  {k:26s} {ratios[k]:6.3f} (target >= {t})  {verdict(passed[k])}")
    profiles = {}
    if args.profile:
        layers, batch, shape, nclass = cases["alexnet"]
        for numerics in ("fp32", "fp16"):
            prof = profile(layers, numerics, shape, nclass, batch)
            profiles[numerics] = prof
            print(f"  alexnet {numerics} per layer (ms/step): " + ", ".join(
                f"{name} {sum(v.values()):.2f}" for name, v in prof.items()))
    write_result("engine_gpu", {
        "profile": profiles,
        "gpu": gpu, "config": {"repeats": repeats, "steps": steps, "quick": args.quick},
        "seconds_per_step": seconds, "ratios": ratios,
        "targets": {k: f">= {t}" for k, t in targets.items()}, "passed": passed,
    }, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
