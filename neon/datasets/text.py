"""Character-level text datasets for recurrent language models.

``{name: text, path: FILE_OR_GLOB_OR_DIR, seq_len: 50}`` reads local text files;
``{name: stdlib_text}`` (the embedded default for sequences) reads the Python standard
library's own source files, present on every machine. Examples are windows of ``seq_len``
character ids (inputs, (N, T)) whose targets are the next characters (labels, (N, T)).
The split is deterministic: the first ``1 - validation_fraction`` of the text trains, the
rest validates; the vocabulary (most frequent characters first, id 0 for any character
outside it) comes from the training part only.
"""

from __future__ import annotations

import glob
import os
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np

from neon.datasets.dataset import DATASETS, make_data
from neon.datasets.iterator import Data
from neon.errors import DatasetError

__all__ = ["UNKNOWN", "build_vocab", "decode", "encode", "find_files", "stdlib_files",
           "stdlib_text", "text", "text_data"]

UNKNOWN = "\ufffd"  # id 0: characters outside the vocabulary


def find_files(path: str, pattern: str = "*") -> list[Path]:
    """Files named by ``path``: a file, a glob, or a directory searched recursively for
    ``pattern``; sorted, so the same files come in the same order on every run."""
    expanded = os.path.expanduser(path)
    p = Path(expanded)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = [f for f in p.rglob(pattern) if f.is_file()]
    else:
        files = [Path(f) for f in glob.glob(expanded, recursive=True) if Path(f).is_file()]
    if not files:
        raise DatasetError(f"no text files found at {path!r}"
                           + (f" matching {pattern!r}" if p.is_dir() else ""))
    return sorted(files)


def read_text(files: list[Path], max_bytes: int | None = None) -> tuple[str, list[Path]]:
    """The files' contents joined (UTF-8, undecodable bytes replaced), at most ``max_bytes``
    bytes in all (the last file is cut); returns the text and the files used."""
    parts, used, total = [], [], 0
    for f in files:
        if max_bytes is not None and total >= max_bytes:
            break
        raw = f.read_bytes()
        if max_bytes is not None:
            raw = raw[: max_bytes - total]
        total += len(raw)
        parts.append(raw.decode("utf-8", errors="replace"))
        used.append(f)
    return "".join(parts), used


def build_vocab(text: str, max_vocab: int = 256) -> list[str]:
    """``[UNKNOWN, most frequent char, ...]``, at most ``max_vocab`` entries; ties by code point."""
    if max_vocab < 2:
        raise ValueError(f"max_vocab must be >= 2, got {max_vocab}")
    counts = Counter(text)
    counts.pop(UNKNOWN, None)
    chars = sorted(counts, key=lambda ch: (-counts[ch], ord(ch)))
    return [UNKNOWN, *chars[: max_vocab - 1]]


def encode(text: str, vocab: list[str]) -> np.ndarray:
    """Character ids (uint8 when the vocabulary allows, else int32)."""
    table = {ch: i for i, ch in enumerate(vocab)}
    dtype = np.uint8 if len(vocab) <= 256 else np.int32
    return np.fromiter((table.get(ch, 0) for ch in text), dtype=dtype, count=len(text))


def decode(ids: np.ndarray, vocab: list[str]) -> str:
    return "".join(vocab[int(i)] for i in np.asarray(ids).reshape(-1))


def _windows(ids: np.ndarray, seq_len: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ids[s:s+T] and targets ids[s+1:s+T+1] for s = 0, stride, 2*stride, ..."""
    n = (len(ids) - seq_len - 1) // stride + 1 if len(ids) > seq_len else 0
    if n <= 0:
        return np.zeros((0, seq_len), np.float32), np.zeros((0, seq_len), np.int64)
    starts = np.arange(n) * stride
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    w = ids[idx]
    return w[:, :-1].astype(np.float32), w[:, 1:].astype(np.int64)


def text_data(
    name: str,
    text_: str,
    seq_len: int,
    batch_size: int,
    validation_fraction: float,
    max_vocab: int,
    stride: int | None,
    seed: int,
    **info: object,
) -> Data:
    """Windows of a text split into training (head) and validation (tail) parts."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    stride = int(stride or seq_len)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    cut = len(text_) - round(validation_fraction * len(text_))
    train_text, valid_text = text_[:cut], text_[cut:]
    vocab = build_vocab(train_text, max_vocab)
    xtr, ytr = _windows(encode(train_text, vocab), seq_len, stride)
    xva, yva = _windows(encode(valid_text, vocab), seq_len, seq_len)
    if not len(xtr):
        raise DatasetError(f"{name}: the training text ({len(train_text)} characters) is "
                           f"shorter than one sequence of seq_len + 1 = {seq_len + 1}")
    return make_data(name, xtr, ytr, xva, yva, batch_size, seed, nclass=len(vocab),
                     vocab=vocab, nchars=len(text_), seq_len=seq_len, **info)


@DATASETS.register("text")
def text(
    path: str,
    seq_len: int = 50,
    batch_size: int = 32,
    validation_fraction: float = 0.1,
    max_bytes: int | None = None,
    max_vocab: int = 256,
    stride: int | None = None,
    pattern: str = "*",
    seed: int = 0,
) -> Data:
    """Characters of local text files: ``path`` is a file, a glob or a directory (files
    matching ``pattern``, recursively), read in sorted order up to ``max_bytes`` in all.
    ``stride`` (default ``seq_len``) spaces the training windows; validation windows do
    not overlap."""
    files = find_files(path, pattern)
    content, used = read_text(files, max_bytes)
    return text_data("text", content, seq_len, batch_size, validation_fraction, max_vocab,
                     stride, seed, files=[str(f) for f in used])


def stdlib_files() -> list[Path]:
    """The standard library's top-level ``*.py`` modules, sorted by name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(f for f in root.glob("*.py") if f.is_file())


@DATASETS.register("stdlib_text", "stdlib")
def stdlib_text(
    seq_len: int = 50,
    batch_size: int = 32,
    validation_fraction: float = 0.1,
    max_bytes: int = 2_000_000,
    max_vocab: int = 256,
    stride: int | None = None,
    seed: int = 0,
) -> Data:
    """Python's standard library source (top-level modules in name order, the first
    ``max_bytes`` bytes): real, always-present text for character-level models. The exact
    text depends on the Python version (the files used are in ``data.info['files']``)."""
    files = stdlib_files()
    if not files:
        raise DatasetError("no standard library sources found under "
                           + sysconfig.get_paths()["stdlib"])
    content, used = read_text(files, max_bytes)
    return text_data("stdlib_text", content, seq_len, batch_size, validation_fraction,
                     max_vocab, stride, seed, files=[f.name for f in used])
