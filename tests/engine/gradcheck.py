"""Central-difference gradient checks for layers and costs (shared by engine tests)."""

from __future__ import annotations

from typing import Any

import numpy as np


def numeric_grad(f: Any, x: np.ndarray, eps: float) -> np.ndarray:
    """d f / d x by central differences, perturbing ``x`` in place."""
    g = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = float(flat[i])  # a Python number: CuPy indexing returns a view
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def check_layer(layer: Any, be: Any, in_shape: tuple[int, ...], batch: int = 3,
                eps: float | None = None, rtol: float | None = None, seed: int = 0,
                x: np.ndarray | None = None) -> float:
    """Compare a layer's bprop with finite differences of ``sum(R * fprop(x))``.

    Returns the largest relative error over the input and parameter gradients.
    """
    fp64 = be.dtype == np.float64
    eps = eps if eps is not None else (1e-6 if fp64 else 1e-2)
    rtol = rtol if rtol is not None else (1e-6 if fp64 else 5e-2)
    rng = np.random.default_rng(seed)
    layer.configure(in_shape)
    layer.allocate(be)
    layer.need_input_grad = True
    if x is None:
        x = rng.standard_normal((batch, *in_shape))
    x = be.array(x)
    y = layer.fprop(x)
    r = be.array(rng.standard_normal(y.shape))

    def loss() -> float:
        out = layer.fprop(x)
        return float((be.to_host(out).astype(np.float64) * be.to_host(r)).sum())

    loss()
    dx = layer.bprop(r.copy())
    analytic = {"x": be.to_host(dx).astype(np.float64)}
    for p in layer.params:
        analytic[p.name] = be.to_host(p.grad).astype(np.float64).copy()
    numeric = {"x": numeric_grad(loss, x, eps)}
    for p in layer.params:
        numeric[p.name] = numeric_grad(loss, p.value, eps)
    worst = 0.0
    for key, a in analytic.items():
        n = numeric[key]
        scale = max(np.abs(n).max(), np.abs(a).max(), 1e-8)
        err = float(np.abs(a - n).max() / scale)
        assert err < rtol, f"{layer.registry_name} d{key}: relative error {err:.2e} >= {rtol}"
        worst = max(worst, err)
    return worst


def check_cost(cost: Any, be: Any, y: np.ndarray, t: np.ndarray, eps: float = 1e-6,
               rtol: float = 1e-6) -> None:
    yd, td = be.array(y), be.array(t)
    analytic = be.to_host(cost.bprop(be, yd, td, be.empty(yd.shape))).astype(np.float64)
    numeric = numeric_grad(lambda: cost.fprop(be, yd, td), yd, eps)
    err = np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-12)
    assert err < rtol, f"{cost}: relative error {err:.2e}"
