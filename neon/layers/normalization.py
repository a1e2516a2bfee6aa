"""Normalization layers: batch norm over every axis but the feature/channel axis 1."""

from __future__ import annotations

from typing import Any

from neon.layers.layer import LAYERS, Layer

__all__ = ["BatchNorm"]


@LAYERS.register("batch_norm", "batchnorm", "spatial_batch_norm")
class BatchNorm(Layer):
    """Batch normalization (Ioffe & Szegedy 2015) with running averages for inference.

    Features are axis 1 of the batch: (N, F) for dense layers, (N, C, H, W) for images
    (spatial batch norm). ``rho`` is the running average's decay, as in neon.
    """

    registry_name = "batch_norm"

    def __init__(self, rho: float = 0.9, eps: float = 1e-5, name: str | None = None) -> None:
        super().__init__(name)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho}")
        self.rho = float(rho)
        self.eps = float(eps)

    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        self.nfeat = self.in_shape[0]
        self.bshape = (1, self.nfeat) + (1,) * (len(self.in_shape) - 1)
        return self.out_shape

    def allocate(self, be: Any) -> None:
        super().allocate(be)
        self.gamma = self.add_param("gamma", be.ones(self.bshape), decay=False)
        self.beta = self.add_param("beta", be.zeros(self.bshape), decay=False)
        self.running_mean = be.zeros(self.bshape)
        self.running_var = be.ones(self.bshape)

    def states(self) -> dict[str, Any]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be, xp = self.be, self.be.xp
        axes = (0, *range(2, x.ndim))
        if inference:
            mean, var = self.running_mean, self.running_var
        else:
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
            self.running_mean *= self.rho
            self.running_mean += (1 - self.rho) * mean
            self.running_var *= self.rho
            self.running_var += (1 - self.rho) * var
            be.quantize(self.running_mean)
            be.quantize(self.running_var)
        self.inv_std = 1.0 / xp.sqrt(var + self.eps)
        xhat = self.buffer("xhat", x.shape)
        xp.subtract(x, mean, out=xhat)
        xhat *= self.inv_std
        self.xhat = xhat
        y = self.buffer("y", x.shape)
        xp.multiply(xhat, self.gamma.value, out=y)
        y += self.beta.value
        return be.quantize(y)

    def bprop(self, delta: Any) -> Any:
        be, xp = self.be, self.be.xp
        axes = (0, *range(2, delta.ndim))
        m = delta.size // self.nfeat
        delta.sum(axis=axes, keepdims=True, out=self.beta.grad)
        dx = self.buffer("dx", delta.shape)
        xp.multiply(delta, self.xhat, out=dx)
        dx.sum(axis=axes, keepdims=True, out=self.gamma.grad)
        be.quantize(self.beta.grad)
        be.quantize(self.gamma.grad)
        if not self.need_input_grad:
            return None
        # dx = gamma * inv_std * (delta - (dbeta + xhat * dgamma) / m)
        xp.multiply(self.xhat, self.gamma.grad, out=dx)
        dx += self.beta.grad
        dx *= -1.0 / m
        dx += delta
        dx *= self.gamma.value * self.inv_std
        return be.quantize(dx)

    def describe(self) -> str:
        return f"{self.name}: batch_norm over {self.nfeat} features"
