"""Image macrobatches: writer and reader round trips on a tiny image folder written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neon.datasets import load_dataset
from neon.datasets.macrobatch import crop_flip, load_image, main, write_macrobatches
from neon.errors import DatasetError

COLORS = {"cat": (200, 30, 40), "dog": (20, 180, 60), "emu": (10, 40, 220)}
SIZES = [(40, 30), (30, 50), (24, 24), (64, 20), (33, 41)]  # (width, height)


def make_folder(root: Path, per_class: int = 5, bad: bool = True) -> Path:
    """Class subfolders of solid-colour images of assorted sizes, PNG and JPEG."""
    for c, (name, rgb) in enumerate(COLORS.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            size = SIZES[(i + c) % len(SIZES)]
            img = Image.new("RGB", size, rgb)
            if i % 2:
                img.save(folder / f"{i}.png")
            else:
                img.save(folder / f"{i}.JPG", quality=100, subsampling=0)
    if bad:
        (root / "cat" / "broken.jpg").write_bytes(b"not an image")
        (root / "cat" / "notes.txt").write_text("ignored")
    return root


def stored(out: Path, split: str):
    files = sorted(out.glob(f"{split}_*.npz"))
    data, labels = [], []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            data.append(z["data"])
            labels.append(z["labels"])
    return files, np.concatenate(data), np.concatenate(labels)


def test_load_image_resizes_short_side_and_centers(tmp_path):
    img = Image.new("RGB", (60, 20), (255, 0, 0))
    img.paste((0, 255, 0), (20, 0, 40, 20))  # the central 20x20 square is green
    img.save(tmp_path / "a.png")
    arr = load_image(tmp_path / "a.png", size=10, crop=10)
    assert arr.shape == (3, 10, 10) and arr.dtype == np.uint8
    assert (arr[1, :, 2:8] > 240).all() and (arr[0, :, 2:8] < 15).all()
    gray = Image.new("L", (8, 16), 77)
    gray.save(tmp_path / "g.png")
    assert (load_image(tmp_path / "g.png", 4, 4) == 77).all()  # grayscale becomes RGB


def test_write_and_read_back(tmp_path):
    src = make_folder(tmp_path / "src")
    summary = write_macrobatches(src, tmp_path / "out", size=16, images_per_batch=4,
                                 valid_fraction=0.2, seed=0, progress=False)
    assert summary["classes"] == 3 and summary["train"] == 12 and summary["val"] == 3
    assert len(summary["skipped"]) == 1 and summary["skipped"][0].endswith("broken.jpg")
    out = tmp_path / "out"
    tfiles, data, labels = stored(out, "train")
    assert [f.name for f in tfiles] == ["train_00000.npz", "train_00001.npz",
                                        "train_00002.npz"]
    assert data.shape == (12, 3, 16, 16) and data.dtype == np.uint8
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [4, 4, 4]
    assert len(set(labels[:4].tolist())) > 1  # written in shuffled order, not by class
    with np.load(out / "meta.npz", allow_pickle=False) as meta:
        assert meta["class_names"].tolist() == ["cat", "dog", "emu"]
        assert meta["train_counts"].tolist() == [4, 4, 4] and meta["val_counts"].tolist() == [3]
        mean = meta["mean"]
        assert mean.shape == (3, 16, 16) and mean.dtype == np.float32
        np.testing.assert_allclose(mean, data.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(meta["channel_std"],
                                   data.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-4)
        assert int(meta["size"]) == 16 and int(meta["crop"]) == 16
    colors = np.array(list(COLORS.values()))
    for img, label in zip(data, labels):  # solid colours survive resizing (+-2 for JPEG)
        assert np.abs(img.reshape(3, -1).T - colors[label]).max() <= 2
    _, vdata, vlabels = stored(out, "val")
    assert vdata.shape == (3, 3, 16, 16) and sorted(vlabels.tolist()) == [0, 1, 2]


def test_train_val_folders_and_crop(tmp_path):
    make_folder(tmp_path / "src" / "train", per_class=3, bad=False)
    make_folder(tmp_path / "src" / "val", per_class=1, bad=False)
    summary = write_macrobatches(tmp_path / "src", tmp_path / "out", size=20, crop=12,
                                 images_per_batch=100, progress=False)
    assert (summary["train"], summary["val"]) == (9, 3)
    _, data, _ = stored(tmp_path / "out", "train")
    assert data.shape == (9, 3, 12, 12)


def test_reader_batches_augmentation_and_determinism(tmp_path):
    src = make_folder(tmp_path / "src", per_class=6, bad=False)
    write_macrobatches(src, tmp_path / "out", size=12, images_per_batch=5, valid_fraction=0.2,
                       progress=False)
    spec = {"name": "macrobatch", "path": str(tmp_path / "out"), "crop": 8, "batch_size": 4,
            "normalize": "none", "seed": 1}
    data = load_dataset(spec)
    train, valid = data.train, data.valid
    assert data.shape == (3, 8, 8) and data.nclass == 3
    assert (train.ndata, valid.ndata, train.nbatches) == (15, 3, 4)
    _, raw, raw_labels = stored(tmp_path / "out", "train")
    batches = [(x.copy(), y.copy()) for x, y in train]
    assert [len(x) for x, _ in batches] == [4, 4, 4, 3]  # full batches across file edges
    xs = np.concatenate([x for x, _ in batches])
    ys = np.concatenate([y for _, y in batches])
    assert xs.dtype == np.float32 and ys.dtype == np.int64
    assert sorted(ys.tolist()) == sorted(raw_labels.tolist())
    # each example is an 8x8 window of a stored image of the same label, maybe mirrored
    pixels = np.round(xs * 255).astype(np.uint8)
    for img, label in zip(pixels, ys):
        hits = [(np.array_equal(img, w), np.array_equal(img, w[:, :, ::-1]))
                for r in raw[raw_labels == label] for oy in range(5) for ox in range(5)
                for w in [r[:, oy:oy + 8, ox:ox + 8]]]
        assert any(a or b for a, b in hits)
    again = list(load_dataset(spec).train)
    for (a, ya), (b, yb) in zip(batches, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    train.set_epoch(1)
    assert not np.array_equal(np.concatenate([y for _, y in train]), ys)
    v1 = [x.copy() for x, _ in valid]
    valid.set_epoch(5)
    v2 = [x for x, _ in valid]
    np.testing.assert_array_equal(np.concatenate(v1), np.concatenate(v2))  # center, fixed


def test_flip_and_center_crop_helpers():
    rng = np.random.default_rng(0)
    images = np.arange(64 * 3 * 6 * 6, dtype=np.uint8).reshape(64, 3, 6, 6)
    center = crop_flip(images, 4, None)
    np.testing.assert_array_equal(center, images[:, :, 1:5, 1:5])
    out = crop_flip(images, 6, rng, flip=True)
    mirrored = [np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, images)]
    same = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(a or b for a, b in zip(mirrored, same)) and 10 < sum(mirrored) < 54


def test_normalization_and_checks(tmp_path):
    src = make_folder(tmp_path / "src", per_class=4, bad=False)
    write_macrobatches(src, tmp_path / "out", size=8, images_per_batch=8, progress=False)
    path = str(tmp_path / "out")
    data = load_dataset({"name": "macrobatch", "path": path, "shape": [3, 8, 8],
                         "nclass": 3, "flip": False})
    x = np.concatenate([b for b, _ in data.train])
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-3)
    img = load_dataset({"name": "macrobatch", "path": path, "normalize": "image"})
    xi = np.concatenate([b for b, _ in img.train])
    np.testing.assert_allclose(xi.mean(axis=0), 0, atol=1e-4)
    limited = load_dataset({"name": "macrobatch", "path": path, "max_train": 5,
                            "batch_size": 2})
    assert limited.train.ndata == 5 and sum(len(y) for _, y in limited.train) == 5
    with pytest.raises(DatasetError, match="holds 3 classes but nclass is 1000"):
        load_dataset({"name": "macrobatch", "path": path, "nclass": 1000})
    with pytest.raises(Exception, match="crop"):
        load_dataset({"name": "macrobatch", "path": path, "crop": 9})
    with pytest.raises(Exception, match="shape must be"):
        load_dataset({"name": "macrobatch", "path": path, "shape": [1, 8, 8]})


def test_missing_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NEON_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        load_dataset({"name": "macrobatch"})
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "i1k") in msg and "neon-macrobatch" in msg
    (tmp_path / "i1k").mkdir()
    write_macrobatches(make_folder(tmp_path / "src", 2, False), tmp_path / "i1k", size=4,
                       images_per_batch=2, progress=False)
    (tmp_path / "i1k" / "train_00001.npz").unlink()
    with pytest.raises(DatasetError, match=r"incomplete macrobatches.*train_00001\.npz"):
        load_dataset({"name": "i1k"})


def test_console_entry(tmp_path, capsys):
    src = make_folder(tmp_path / "src", per_class=2)
    code = main([str(src), str(tmp_path / "out"), "--size", "8", "--images-per-batch", "3",
                 "--workers", "2", "-q"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "6 training and 0 validation images of 3 classes" in out.out
    assert "skipped 1 unreadable" in out.out
    assert len(list((tmp_path / "out").glob("train_*.npz"))) == 2
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "o2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image folder not found" in err
    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    assert '"neon-macrobatch=neon.datasets.macrobatch:main"' in setup
