"""Image macrobatches, as neon's I1K loader used them: a writer and a streaming reader.

Writer (``neon-macrobatch SRC_DIR OUT_DIR`` or ``write_macrobatches``): a folder of class
subfolders of JPEG/PNG images (or ``train/`` and ``val/`` folders of class subfolders,
ImageNet-style) becomes ``train_00000.npz ...``, ``val_00000.npz ...`` and ``meta.npz`` in
OUT_DIR. Each image is converted to RGB, resized so that its short side is ``size``, center
cropped to ``crop`` x ``crop`` and stored as uint8 CHW; each macrobatch holds
``images_per_batch`` images (``data`` (n, 3, crop, crop) uint8, ``labels`` (n,) int64) in a
seeded random order. ``meta.npz`` holds ``class_names``, the training ``mean`` image
(float32 (3, crop, crop)), per-channel ``channel_mean``/``channel_std`` (0-255 scale), the
image counts per file and the sizes. Everything is written with ``allow_pickle=False``.

Reader (``dataset: {name: macrobatch, path: DIR, crop: 224}``): streams one macrobatch at
a time (the whole set never needs to fit in memory). Training batches come from the
macrobatches in a random order per epoch, shuffled within, with a random ``crop`` window
and a random horizontal flip per image; validation uses the center crop in file order.
Everything random derives from ``(seed, epoch)``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from neon.datasets.dataset import DATASETS, data_dir
from neon.datasets.iterator import Data
from neon.errors import DatasetError, UserError, cli_guard

__all__ = [
    "IMAGE_EXTENSIONS",
    "MacrobatchIterator",
    "crop_flip",
    "load_image",
    "macrobatch",
    "main",
    "write_macrobatches",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_VALID_DIRS = ("val", "valid", "validation")


# ----------------------------------------------------------------------------- augmentation
def crop_flip(images: np.ndarray, crop: int, rng: np.random.Generator | None,
              flip: bool = True) -> np.ndarray:
    """(B, C, H, W) -> (B, C, crop, crop): a random window per image and, with ``flip``,
    a horizontal flip of about half of them; ``rng=None`` takes the center window."""
    b, _, h, w = images.shape
    if crop > h or crop > w:
        raise ValueError(f"crop {crop} is larger than the {h}x{w} images")
    if rng is None:
        if crop == h == w:
            return images
        oy, ox = (h - crop) // 2, (w - crop) // 2
        return images[:, :, oy:oy + crop, ox:ox + crop]
    oy = rng.integers(0, h - crop + 1, size=b)
    ox = rng.integers(0, w - crop + 1, size=b)
    windows = np.lib.stride_tricks.sliding_window_view(images, (crop, crop), axis=(2, 3))
    out = windows[np.arange(b), :, oy, ox]  # (B, C, crop, crop), one gather
    if flip:
        flipped = rng.random(b) < 0.5
        out[flipped] = out[flipped, :, :, ::-1]
    return out


# ----------------------------------------------------------------------------- writer
def load_image(path: str | os.PathLike[str], size: int, crop: int) -> np.ndarray:
    """An image file as uint8 (3, crop, crop): RGB, short side resized to ``size``, centered."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(crop, round(w * scale)), max(crop, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (nw - crop) // 2, (nh - crop) // 2
        img = img.crop((left, top, left + crop, top + crop))
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(src: Path, valid_fraction: float, seed: int
          ) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(class names, train items, validation items) of an image folder."""
    if not src.is_dir():
        raise DatasetError(f"image folder not found: {src} (expected class subfolders of "
                           "JPEG/PNG images)")
    sub = {p.name: p for p in _class_dirs(src)}
    valid_dir = next((sub[n] for n in _VALID_DIRS if n in sub), None)
    if "train" in sub and valid_dir is not None:
        classes = [p.name for p in _class_dirs(sub["train"])]
        index = {c: i for i, c in enumerate(classes)}
        train = [(f, index[d.name]) for d in _class_dirs(sub["train"]) for f in _images_in(d)]
        valid = []
        for d in _class_dirs(valid_dir):
            if d.name not in index:
                raise DatasetError(f"validation class {d.name!r} has no training folder in "
                                   f"{sub['train']}")
            valid += [(f, index[d.name]) for f in _images_in(d)]
    else:
        if not 0.0 <= valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
        dirs = _class_dirs(src)
        classes = [d.name for d in dirs]
        rng = np.random.default_rng(seed)
        train, valid = [], []
        for label, d in enumerate(dirs):  # stratified split, seeded
            files = _images_in(d)
            order = rng.permutation(len(files))
            nvalid = round(valid_fraction * len(files))
            valid += [(files[i], label) for i in sorted(order[:nvalid])]
            train += [(files[i], label) for i in sorted(order[nvalid:])]
    if not classes or not train:
        raise DatasetError(f"no images in {src}: expected class subfolders (or train/ and "
                           f"val/ folders of them) holding {'/'.join(IMAGE_EXTENSIONS)} files")
    return classes, train, valid


def _load_item(job: tuple[str, int, int]) -> np.ndarray | None:
    path, size, crop = job
    try:
        return load_image(path, size, crop)
    except OSError:  # unreadable or not an image (PIL's UnidentifiedImageError is an OSError)
        return None


def _write_split(name: str, items: list[tuple[Path, int]], out: Path, size: int, crop: int,
                 per_batch: int, workers: int, progress: bool,
                 stats: dict[str, Any] | None) -> tuple[list[int], list[str]]:
    """Write ``name_NNNNN.npz`` files; returns (images per file, skipped paths)."""
    from tqdm import tqdm

    counts: list[int] = []
    skipped: list[str] = []
    data: list[np.ndarray] = []
    labels: list[int] = []

    def flush() -> None:
        if not data:
            return
        arr = np.stack(data)
        if stats is not None:
            stats["sum"] += arr.sum(axis=0, dtype=np.float64)
            stats["sumsq"] += np.square(arr, dtype=np.float64).sum(axis=(0, 2, 3))
            stats["n"] += len(arr)
        np.savez(out / f"{name}_{len(counts):05d}.npz", allow_pickle=False, data=arr,
                 labels=np.asarray(labels, dtype=np.int64))
        counts.append(len(arr))
        data.clear()
        labels.clear()

    jobs = [(str(path), size, crop) for path, _ in items]
    pool = None
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_load_item, jobs, chunksize=16)
    else:
        results = map(_load_item, jobs)
    try:
        bar = tqdm(results, total=len(jobs), desc=f"{name} {out.name}", unit="img",
                   disable=not progress, file=sys.stderr)
        for (path, label), img in zip(items, bar):
            if img is None:
                skipped.append(str(path))
                continue
            data.append(img)
            labels.append(label)
            if len(data) == per_batch:
                flush()
        flush()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return counts, skipped


def write_macrobatches(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: int = 64,
    crop: int | None = None,
    images_per_batch: int = 1024,
    valid_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert an image folder to macrobatches (see the module docstring); returns a summary.

    Training images are written in a random order drawn from ``seed``; without ``train/``
    and ``val/`` folders, ``valid_fraction`` of each class (seeded) is held out.
    """
    crop = size if crop is None else int(crop)
    if size < 1 or not 1 <= crop <= size or images_per_batch < 1 or workers < 1:
        raise ValueError("need size >= 1, 1 <= crop <= size, images_per_batch >= 1, "
                         "workers >= 1")
    src, out = Path(src).expanduser(), Path(out).expanduser()
    classes, train, valid = _scan(src, valid_fraction, seed)
    order = np.random.default_rng([seed, 1]).permutation(len(train))
    train = [train[i] for i in order]
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("train_*.npz"), *out.glob("val_*.npz")]:
        old.unlink()  # a re-run must not leave files of a bigger earlier run behind
    stats: dict[str, Any] = {"sum": np.zeros((3, crop, crop)), "sumsq": np.zeros(3), "n": 0}
    tcounts, tskip = _write_split("train", train, out, size, crop, images_per_batch, workers,
                                  progress, stats)
    vcounts, vskip = _write_split("val", valid, out, size, crop, images_per_batch, workers,
                                  progress, None)
    n = stats["n"]
    if n == 0:
        raise DatasetError(f"no readable training images in {src}")
    mean = stats["sum"] / n
    channel_mean = mean.mean(axis=(1, 2))
    channel_var = stats["sumsq"] / (n * crop * crop) - channel_mean**2
    np.savez(out / "meta.npz", allow_pickle=False,
             class_names=np.array(classes, dtype=str), mean=mean.astype(np.float32),
             channel_mean=channel_mean.astype(np.float32),
             channel_std=np.sqrt(np.maximum(channel_var, 1e-12)).astype(np.float32),
             train_counts=np.array(tcounts, np.int64), val_counts=np.array(vcounts, np.int64),
             size=np.int64(size), crop=np.int64(crop), seed=np.int64(seed))
    return {"classes": len(classes), "train": sum(tcounts), "val": sum(vcounts),
            "train_files": len(tcounts), "val_files": len(vcounts),
            "skipped": tskip + vskip, "out": str(out)}


# ----------------------------------------------------------------------------- reader
class MacrobatchIterator:
    """Minibatches streamed from macrobatch files (the interface of ``ArrayIterator``).

    Training (``shuffle``): file order and order within each file are permuted per epoch,
    each image gets a random ``crop`` window and (with ``flip``) a random horizontal flip.
    Otherwise files are read in order with the center crop. Inputs are float32,
    ``(x - channel_mean) / channel_std`` (``normalize: channel``), minus the mean image
    (``image``) or ``x / 255`` (``none``); labels are int64.
    """

    def __init__(self, files: Sequence[Path], counts: Sequence[int], meta: dict[str, Any],
                 batch_size: int, crop: int, shuffle: bool, seed: int, flip: bool,
                 normalize: str, name: str, limit: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.files = list(files)
        self.counts = [int(c) for c in counts]
        self.batch_size = int(batch_size)
        self.crop = int(crop)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.flip = bool(flip)
        self.normalize = normalize
        self.name = name
        self.nclass = len(meta["class_names"])
        self.epoch = 0
        total = sum(self.counts)
        self.limit = total if limit is None else min(int(limit), total)
        stored = meta["mean"]
        self.channels = stored.shape[0]
        c = self.channels
        if normalize == "channel":
            self._offset = meta["channel_mean"].reshape(1, c, 1, 1)
            self._scale = (1.0 / meta["channel_std"]).reshape(1, c, 1, 1)
        elif normalize == "image":
            self._offset = stored[None]
            self._scale = (1.0 / meta["channel_std"]).reshape(1, c, 1, 1)
        else:
            self._offset = np.zeros((1, c, 1, 1), np.float32)
            self._scale = np.full((1, c, 1, 1), 1.0 / 255.0, np.float32)

    @property
    def ndata(self) -> int:
        return self.limit

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.crop, self.crop)

    @property
    def nbatches(self) -> int:
        return math.ceil(self.ndata / self.batch_size)

    def __len__(self) -> int:
        return self.nbatches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _convert(self, raw: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        if self.normalize == "image":  # subtract the full-size mean image before cropping
            full = (raw.astype(np.float32) - self._offset) * self._scale
            return np.ascontiguousarray(crop_flip(full, self.crop, rng, self.flip),
                                        dtype=np.float32)
        x = crop_flip(raw, self.crop, rng, self.flip).astype(np.float32)
        x -= self._offset
        x *= self._scale
        return x

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch, 7]) if self.shuffle else None
        order = rng.permutation(len(self.files)) if rng is not None else range(len(self.files))
        left = self.limit
        pend_x: list[np.ndarray] = []
        pend_y: list[np.ndarray] = []
        pending = 0
        for i in order:
            if left <= 0:
                break
            with np.load(self.files[i], allow_pickle=False) as f:
                data, labels = f["data"], f["labels"]
            if len(data) > left:
                data, labels = data[:left], labels[:left]
            left -= len(data)
            if rng is not None:
                perm = rng.permutation(len(data))
                data, labels = data[perm], labels[perm]
            pend_x.append(data)
            pend_y.append(labels)
            pending += len(data)
            if pending < self.batch_size:
                continue
            data, labels = np.concatenate(pend_x), np.concatenate(pend_y)
            nfull = len(data) // self.batch_size * self.batch_size
            for lo in range(0, nfull, self.batch_size):
                hi = lo + self.batch_size
                yield self._convert(data[lo:hi], rng), labels[lo:hi].astype(np.int64)
            pend_x, pend_y = [data[nfull:]], [labels[nfull:]]
            pending = len(data) - nfull
        if pending:
            data, labels = np.concatenate(pend_x), np.concatenate(pend_y)
            yield self._convert(data, rng), labels.astype(np.int64)


def read_meta(folder: Path) -> dict[str, Any]:
    """``meta.npz`` of a macrobatch folder as a dict, or one line saying what is missing."""
    path = folder / "meta.npz"
    if not path.is_file():
        raise DatasetError(
            f"macrobatches not found in {folder}: missing meta.npz and train_*.npz/val_*.npz; "
            f"write them with 'neon-macrobatch SRC_DIR {folder}' (nothing is downloaded) "
            "or set 'path:'")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@DATASETS.register("macrobatch", "i1k")
def macrobatch(
    path: str | None = None,
    batch_size: int = 128,
    seed: int = 0,
    crop: int | None = None,
    shape: list | None = None,
    nclass: int | None = None,
    flip: bool = True,
    normalize: Literal["channel", "image", "none"] = "channel",
    max_train: int | None = None,
    max_valid: int | None = None,
) -> Data:
    """Macrobatches written by ``neon-macrobatch`` from ``path`` (default
    ``$NEON_DATA_DIR/i1k``).

    ``crop`` (or ``shape: [3, crop, crop]``) is the training window (default: the stored
    size, so only flips); ``nclass`` is checked against the files. ``shape`` and ``nclass``
    are also what ``--dataset synthetic`` keeps to imitate this data.
    """
    folder = Path(path).expanduser() if path else data_dir("i1k")
    meta = read_meta(folder)
    stored = int(meta["crop"])
    channels = int(meta["mean"].shape[0])
    if shape is not None:
        if len(shape) != 3 or shape[1] != shape[2] or shape[0] != channels:
            raise ValueError(f"shape must be [{channels}, crop, crop], got {list(shape)}")
        if crop is not None and crop != shape[1]:
            raise ValueError(f"crop {crop} disagrees with shape {list(shape)}")
        crop = int(shape[1])
    crop = stored if crop is None else int(crop)
    if not 1 <= crop <= stored:
        raise ValueError(f"crop must be in [1, {stored}] (the stored image size), got {crop}")
    classes = len(meta["class_names"])
    if nclass is not None and nclass != classes:
        raise DatasetError(f"{folder} holds {classes} classes but nclass is {nclass}")
    train_files = [folder / f"train_{i:05d}.npz" for i in range(len(meta["train_counts"]))]
    val_files = [folder / f"val_{i:05d}.npz" for i in range(len(meta["val_counts"]))]
    missing = [f.name for f in train_files + val_files if not f.is_file()]
    if missing:
        raise DatasetError(f"incomplete macrobatches in {folder}: missing "
                           f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    train = MacrobatchIterator(train_files, meta["train_counts"], meta, batch_size, crop,
                               True, seed, flip, normalize, "train", max_train)
    valid = None
    if val_files and int(np.sum(meta["val_counts"])) and max_valid != 0:
        valid = MacrobatchIterator(val_files, meta["val_counts"], meta, batch_size, crop,
                                   False, seed, False, normalize, "valid", max_valid)
    return Data(name="macrobatch", train=train, valid=valid, nclass=classes,  # type: ignore
                info={"path": str(folder), "classes": [str(c) for c in meta["class_names"]],
                      "stored_size": stored, "crop": crop})


# ----------------------------------------------------------------------------- console entry
def main(argv: Sequence[str] | None = None) -> int:
    """``neon-macrobatch SRC_DIR OUT_DIR [--size 64] [--crop N] [--images-per-batch N]``."""
    p = argparse.ArgumentParser(
        prog="neon-macrobatch",
        description="Write .npz image macrobatches from a folder of class subfolders of "
        "JPEG/PNG images (or train/ and val/ folders of them) for the 'macrobatch' dataset.")
    p.add_argument("src", metavar="SRC_DIR", help="folder of class subfolders of images")
    p.add_argument("out", metavar="OUT_DIR", help="where the .npz macrobatches go")
    p.add_argument("--size", type=int, default=64, help="short side after resizing (64)")
    p.add_argument("--crop", type=int, default=None,
                   help="side of the stored center crop (default: --size)")
    p.add_argument("--images-per-batch", type=int, default=1024,
                   help="images per macrobatch file (1024)")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="share of each class held out when there is no val/ folder (0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and order (0)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="image decoding processes (all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def run() -> int:
        try:
            summary = write_macrobatches(args.src, args.out, args.size, args.crop,
                                         args.images_per_batch, args.valid_fraction, args.seed,
                                         args.workers, progress=not args.quiet)
        except ValueError as exc:  # an option value out of range
            raise UserError(str(exc)) from exc
        skipped = summary["skipped"]
        print(f"neon-macrobatch: {summary['train']} training and {summary['val']} validation "
              f"images of {summary['classes']} classes in {summary['train_files']} + "
              f"{summary['val_files']} macrobatches in {summary['out']}"
              + (f"; skipped {len(skipped)} unreadable files (first: {skipped[0]})"
                 if skipped else ""))
        return 0

    return cli_guard("neon-macrobatch", run)


if __name__ == "__main__":
    sys.exit(main())
