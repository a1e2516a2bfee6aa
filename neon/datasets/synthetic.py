"""Synthetic data of any shape and class count (benchmarks, smoke tests)."""

from __future__ import annotations

import math

import numpy as np

from neon.datasets.dataset import DATASETS, make_data
from neon.datasets.iterator import Data

__all__ = ["synthetic"]


@DATASETS.register("synthetic")
def synthetic(
    shape: list | int = 784,
    nclass: int = 10,
    ntrain: int = 1024,
    nvalid: int = 256,
    batch_size: int = 128,
    seed: int = 0,
    data_seed: int = 0,
) -> Data:
    """Gaussian inputs labelled by a random linear teacher, so that they can be learnt."""
    shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if nclass < 2 or ntrain < 1 or nvalid < 0 or any(s < 1 for s in shape):
        raise ValueError("need nclass >= 2, ntrain >= 1, nvalid >= 0, positive shape")
    rng = np.random.default_rng(data_seed)
    n = ntrain + nvalid
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    teacher = rng.standard_normal((math.prod(shape), nclass)).astype(np.float32)
    y = (x.reshape(n, -1) @ teacher).argmax(axis=1).astype(np.int64)
    return make_data("synthetic", x[:ntrain], y[:ntrain], x[ntrain:], y[ntrain:], batch_size,
                     seed, nclass=nclass, shape=list(shape))
