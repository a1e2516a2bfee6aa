"""The example sweeps: every one parses and dry-runs; the demo sweep runs as shipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted(p for p in (ROOT / "examples" / "sweeps").glob("*.yaml")
                if not p.stem.endswith("template"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_example_sweep_dry_runs(path):
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", str(path), "--dry-run"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "trial-0-" in proc.stdout and "expanded model of trial-0" in proc.stdout


def test_one_example_per_strategy():
    from search.sweep import load_sweep

    strategies = set()
    for path in SWEEPS:
        spec = load_sweep(str(path)).search.strategy
        strategies.add(spec["type"] if isinstance(spec, dict) else spec)
    assert strategies >= {"grid", "random", "tpe", "spearmint"}


@pytest.mark.timeout(600)
def test_demo_sweep_as_shipped(tmp_path):
    """examples/sweeps/digits-mlp.yaml: spearmint, 12 points, fp32 vs fp16, ASHA, MLflow."""
    for name in ("digits-mlp.yaml", "digits-mlp-template.yaml"):
        shutil.copy(ROOT / "examples" / "sweeps" / name, tmp_path / name)
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "digits-mlp.yaml", "-o",
                           "r.json"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stderr
    assert seconds < 240, f"the demo took {seconds:.0f} s, more than the 4 minutes promised"
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["trials"]) == 24 and data["best"]["value"] < 0.06
    assert data["best"]["name"] == data["ranking"][0]["name"]
    assert " (full budget) by val_misclassification (min), cell fp32:" in proc.stdout
    assert "pruned early (best at their rung)" in proc.stdout
    assert "neon-search ui --tracking-uri" in proc.stdout
    assert (tmp_path / "mlflow.db").exists()
