"""The embedded default dataset: scikit-learn's 1797 real 8x8 handwritten digits."""

from __future__ import annotations

import numpy as np

from neon.datasets.dataset import DATASETS, make_data, split, standardize
from neon.datasets.iterator import Data

__all__ = ["digits"]


@DATASETS.register("digits")
def digits(
    batch_size: int = 64,
    validation_fraction: float = 0.2,
    split_seed: int = 0,
    seed: int = 0,
    standardized: bool = True,
    image: bool = False,
    sequence: bool = False,
) -> Data:
    """Digits 0-9 as 64 features (or 1x8x8 images with ``image``, or sequences of 8 rows of 8
    pixels with ``sequence``), standardized per pixel.

    The train/validation split depends only on ``split_seed``; ``seed`` shuffles batches.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    xtr, ytr, xva, yva = split(x, y, validation_fraction, split_seed)
    if standardized:
        xtr, xva = standardize(xtr, xva)
    else:
        xtr, xva = xtr / 16.0, xva / 16.0
    if image:
        xtr, xva = xtr.reshape(-1, 1, 8, 8), xva.reshape(-1, 1, 8, 8)
    elif sequence:  # rows as 8 time steps of 8 features, for recurrent models
        xtr, xva = xtr.reshape(-1, 8, 8), xva.reshape(-1, 8, 8)
    return make_data("digits", xtr, ytr, xva, yva, batch_size, seed, nclass=10,
                     source="sklearn.datasets.load_digits")
