"""Text datasets (local files, the standard library's source), digits as row sequences, and
the sequence metrics (bits per character, perplexity)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neon.backends import gen_backend
from neon.datasets import load_dataset
from neon.datasets.text import UNKNOWN, decode, stdlib_files
from neon.errors import DatasetError
from neon.metrics import build_metric


def test_text_windows_targets_and_vocabulary(tmp_path):
    (tmp_path / "a.txt").write_text("abcabcabcabcabcabcabcabcabcabc")  # 30 chars
    (tmp_path / "b.txt").write_text("xyz" * 4)
    data = load_dataset({"name": "text", "path": str(tmp_path / "a.txt"), "seq_len": 4,
                         "validation_fraction": 0.2, "batch_size": 2})
    vocab = data.info["vocab"]
    assert vocab[0] == UNKNOWN and sorted(vocab[1:]) == ["a", "b", "c"]
    x, y = data.train.x, data.train.y
    assert x.shape == (5, 4) and y.shape == (5, 4) and data.nclass == 4
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets are the next characters
    assert decode(x[0], vocab) == "abca" and decode(y[0], vocab) == "bcab"
    assert decode(x[1], vocab) == "bcab"  # non-overlapping windows (stride = seq_len)
    assert data.valid.x.shape == (1, 4)  # the last 6 characters validate

    # a directory (recursive, sorted), characters unseen in training map to id 0
    both = load_dataset({"name": "text", "path": str(tmp_path), "seq_len": 5,
                         "validation_fraction": 12 / 42})  # b.txt validates
    assert both.info["files"] == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    assert (both.valid.x == 0).any() and set(both.info["vocab"]) == {UNKNOWN, "a", "b", "c"}
    glob = load_dataset({"name": "text", "path": str(tmp_path / "*.txt"), "seq_len": 5,
                         "stride": 2, "max_bytes": 20, "validation_fraction": 0.0})
    assert glob.valid is None and len(glob.info["files"]) == 1 and glob.train.x.shape == (8, 5)


def test_text_errors(tmp_path):
    with pytest.raises(DatasetError, match="no text files"):
        load_dataset({"name": "text", "path": str(tmp_path / "missing*.txt")})
    (tmp_path / "short.txt").write_text("abc")
    with pytest.raises(DatasetError, match="shorter than one sequence"):
        load_dataset({"name": "text", "path": str(tmp_path / "short.txt"), "seq_len": 10})


def test_stdlib_text_is_deterministic_and_bounded():
    spec = {"name": "stdlib_text", "seq_len": 20, "max_bytes": 200_000}
    a, b = load_dataset(spec), load_dataset(spec)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.valid.y, b.valid.y)
    assert a.info["vocab"] == b.info["vocab"] and len(a.info["vocab"]) <= 256
    names = [f.name for f in stdlib_files()]
    assert a.info["files"] == names[: len(a.info["files"])] and names == sorted(names)
    assert a.info["nchars"] <= 200_000
    assert 0.08 < len(a.valid.x) / (len(a.train.x) + len(a.valid.x)) < 0.12
    assert a.train.x.shape[1:] == (20,) and a.train.y.dtype == np.int64
    assert decode(a.train.x[0], a.info["vocab"]).startswith('"""')  # __future__.py


def test_digits_as_row_sequences():
    data = load_dataset({"name": "digits", "sequence": True})
    flat = load_dataset({"name": "digits"})
    assert data.shape == (8, 8)
    np.testing.assert_array_equal(data.train.x.reshape(len(data.train.x), -1), flat.train.x)


def test_bits_per_char_and_perplexity():
    be = gen_backend("cpu", "fp64")
    rng = np.random.default_rng(0)
    p = rng.uniform(0.1, 1.0, (6, 5, 4))
    p /= p.sum(axis=-1, keepdims=True)
    labels = rng.integers(0, 4, (6, 5))
    nll = -np.log(np.take_along_axis(p, labels[..., None], axis=-1)).mean()
    bpc = build_metric("bits_per_char")
    ppl = build_metric("perplexity")
    sums = {"bpc": [0.0, 0], "ppl": [0.0, 0]}
    for lo, hi in ((0, 2), (2, 3), (3, 6)):  # uneven batches, as Model.eval sums them
        for key, m in (("bpc", bpc), ("ppl", ppl)):
            s, n = m.batch(be, be.array(p[lo:hi]), labels[lo:hi])
            sums[key][0] += s
            sums[key][1] += n
    assert sums["bpc"][1] == 30
    assert math.isclose(bpc.value(*sums["bpc"]), nll / math.log(2), rel_tol=1e-12)
    # perplexity is exp of the pass's mean, not a mean of per-batch perplexities
    assert math.isclose(ppl.value(*sums["ppl"]), math.exp(nll), rel_tol=1e-12)
    s, n = ppl.batch(be, be.array(p), labels)  # the metric keeps no state between passes
    assert math.isclose(ppl.value(s, n), math.exp(nll), rel_tol=1e-12)
