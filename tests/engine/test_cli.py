"""``neon MODEL.yaml`` end to end in a subprocess: output, JSON, checkpoints, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from neon.backends import cpu_blas

DIGITS = "examples/mlp/digits-small.yaml"


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def neon(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "neon.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("numerics", ["fp32", "fp16"])
def test_train_digits_end_to_end(tmp_path, numerics):
    out = tmp_path / "r.json"
    ckpt = tmp_path / "m.npz"
    proc = neon(DIGITS, "--numerics", numerics, "--epochs", "10", "-o", str(out),
                "--save", str(ckpt))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"numerics={numerics}" in lines[0]
    assert lines[1].split() == ["epoch", "train_loss", "val_misclassification", "val_log_loss",
                                "seconds"]
    assert len(lines) == 13 and lines[-1].startswith("final: ")
    result = json.loads(out.read_text())
    assert result["final"]["val_misclassification"] <= 0.05
    assert len(result["history"]) == 10 and result["timing"]["total_seconds"] > 0
    assert result["backend"]["numerics"] == numerics
    assert result["backend"]["blas"] == cpu_blas.BLAS.source  # which library ran the GEMMs
    with np.load(ckpt, allow_pickle=False) as f:
        assert "param/affine_0/W" in f.files


def test_diagnostics_flag_prints_tables():
    proc = neon(DIGITS, "--epochs", "1", "--numerics", "fp16", "--diagnostics")
    assert proc.returncode == 0, proc.stderr
    assert "time per minibatch" in proc.stdout and "overflowed / underflowed" in proc.stdout
    assert "numeric ranges" in proc.stdout


def test_user_errors_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(read(DIGITS).replace("type: dropout", "type: dropot"))
    proc = neon(str(bad))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and f"{bad}:9:" in proc.stderr
    assert "did you mean 'dropout'" in proc.stderr and "Traceback" not in proc.stderr
    proc = neon(str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "file not found" in proc.stderr
    proc = neon("examples/mlp/mnist-small.yaml")
    assert proc.returncode == 2 and "mnist not found" in proc.stderr


def test_dataset_override_and_help():
    proc = neon(DIGITS, "--dataset", "synthetic", "--epochs", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("final: ")
    help_text = neon("--help").stdout
    for flag in ("--backend", "--numerics", "--stochastic-rounding", "--epochs", "--seed",
                 "--save", "--diagnostics", "--output"):
        assert flag in help_text


def test_diverging_model_exits_1(tmp_path):
    cfg = tmp_path / "div.yaml"
    cfg.write_text(read(DIGITS).replace("learning_rate: 0.1", "learning_rate: 1.0e6")
                   .replace("activation: relu", "activation: identity"))
    proc = neon(str(cfg))
    assert proc.returncode == 1 and "diverged at epoch 1" in proc.stderr
