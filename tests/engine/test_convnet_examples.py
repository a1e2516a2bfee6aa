"""The convnet examples: digits-conv trains to >= 98% as shipped, AlexNet builds and steps on
synthetic data through the ``--dataset synthetic`` override, CIFAR-10 runs on small files,
and the architecture sweep parses into buildable models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cifar10 import write_cifar

from neon.config import apply_overrides, build_experiment, build_model, load_config

ROOT = Path(__file__).resolve().parents[2]
CONVNET = ROOT / "examples" / "convnet"
ALEXNET = ["i1k-alexnet-fp32.yaml", "i1k-alexnet-fp16.yaml"]


def test_digits_conv_reaches_98_percent_as_shipped(tmp_path):
    """The example exactly as shipped (20 epochs, seed 0) through the ``neon`` CLI; its
    claim is >= 98% validation accuracy in under 2 minutes on 2 cores."""
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "neon.cli", str(CONVNET / "digits-conv.yaml"),
                           "-q", "-o", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert len(result["history"]) == 20
    assert result["final"]["val_misclassification"] <= 0.02
    assert result["timing"]["total_seconds"] < 120


def test_alexnet_files_differ_only_in_numerics():
    fp32, fp16 = ((CONVNET / f).read_text().splitlines() for f in ALEXNET)
    diff = [(a, b) for a, b in zip(fp32, fp16) if a != b]
    assert len(fp32) == len(fp16)
    assert diff == [("backend: {name: cpu, numerics: fp32}",
                     "backend: {name: cpu, numerics: fp16}")]


@pytest.mark.parametrize("name", ALEXNET)
def test_alexnet_one_step_on_synthetic_data(name):
    cfg = apply_overrides(load_config(CONVNET / name), dataset="synthetic")
    # --dataset synthetic keeps batch size, example shape and class count
    assert dict(cfg["dataset"]) == {"name": "synthetic", "batch_size": 128,
                                    "shape": [3, 224, 224], "nclass": 1000}
    cfg["dataset"].update(ntrain=4, nvalid=2, batch_size=4)
    exp = build_experiment(apply_overrides(cfg, epochs=1))
    layers = [(type(layer).__name__, layer.out_shape) for layer in exp.model.layers]
    assert layers[:2] == [("Conv", (64, 55, 55)), ("Pool", (64, 27, 27))]
    assert ("Pool", (256, 6, 6)) in layers and layers[-1] == ("Affine", (1000,))
    assert exp.model.nparams == 61_100_840  # convnet-benchmarks' one-tower AlexNet
    assert exp.be.numerics == name.split("-")[-1][:4]
    hist = exp.run()
    assert len(hist) == 1 and np.isfinite(hist.final["train_loss"])
    w = exp.be.to_host(exp.model.layers[0].W.value)
    if exp.be.numerics == "fp16":
        assert np.array_equal(w.astype(np.float16).astype(np.float32), w)


def test_cifar10_example_on_small_files(tmp_path):
    write_cifar(tmp_path, n=16)
    cfg = load_config(CONVNET / "cifar10.yaml")
    cfg["dataset"]["path"] = str(tmp_path)
    exp = build_experiment(apply_overrides(cfg, epochs=1))
    assert exp.data.train.ndata == 80 and exp.model.out_shape == (10,)
    hist = exp.run()
    assert np.isfinite(hist.final["train_loss"]) and "val_misclassification" in hist.final


def test_digits_conv_arch_sweep_parses_into_buildable_models():
    sweep_mod = pytest.importorskip("search.sweep")
    sweep = sweep_mod.load_sweep(ROOT / "examples" / "sweeps" / "digits-conv-arch.yaml")
    assert [c.name for c in sweep.cells] == ["fp32", "fp16"]
    assert sweep.search.trials >= 4
    assert "arch" in sweep.space.names
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        point = sweep.space.sample(rng)
        arch = point["arch"]
        if arch in seen:
            continue
        seen.add(arch)
        model = build_model(sweep.space.expand(point))
        model.initialize((1, 8, 8))
        assert model.out_shape == (10,)
    assert seen == {0, 1}
