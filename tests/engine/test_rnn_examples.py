"""Every recurrent / unsupervised example runs a short configuration: through the ``neon``
CLI where one epoch is quick, through ``neon.config`` with less data otherwise; the sweep
file validates and one of its points trains."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from neon.config import apply_overrides, build_experiment, load_config

CLI_EXAMPLES = {
    "examples/rnn/digits-rows-gru.yaml": "val_misclassification",
    "examples/autoencoder/digits-ae.yaml": "val_reconstruction_error",
    "examples/autoencoder/digits-dae.yaml": "val_reconstruction_error",
    "examples/rbm/digits-rbm.yaml": "val_pseudo_likelihood",
    "examples/rbm/digits-dbn.yaml": "val_misclassification",
}


def neon(*args):
    return subprocess.run([sys.executable, "-m", "neon.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("path", list(CLI_EXAMPLES))
def test_example_runs_from_the_cli(path):
    proc = neon(path, "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert CLI_EXAMPLES[path] in lines[1].split()
    assert len(lines) == 4 and lines[-1].startswith("final: ")
    values = dict(kv.split("=") for kv in lines[-1][len("final: "):].split(" (")[0].split())
    assert all(math.isfinite(float(v)) for v in values.values())


def test_char_lstm_example_learns_quickly():
    """The example model on 30 KB of the standard library's source: after two epochs it
    predicts far better than uniform (6.6 bits per character) and than character
    frequencies alone (about 4.7 bits): 4.12 bits measured."""
    cfg = load_config("examples/rnn/stdlib-char-lstm.yaml")
    cfg["dataset"]["max_bytes"] = 30_000
    exp = build_experiment(apply_overrides(cfg, epochs=2))
    assert exp.data.name == "stdlib_text" and exp.data.nclass <= 96
    hist = exp.run()
    first, last = (r["val_bits_per_char"] for r in hist.epochs)
    assert last < first and last < 4.4, (first, last)
    assert math.isclose(hist.final["train_loss"] / math.log(2), last, rel_tol=0.3)


def test_char_lstm_example_fp16():
    cfg = load_config("examples/rnn/stdlib-char-lstm.yaml")
    cfg["dataset"]["max_bytes"] = 8_000
    exp = build_experiment(apply_overrides(cfg, epochs=1, numerics="fp16"))
    assert math.isfinite(exp.run().final["val_bits_per_char"])


def test_char_lstm_sweep_validates_and_a_point_trains():
    sweep_mod = pytest.importorskip("search.sweep")
    sweep = sweep_mod.load_sweep("examples/sweeps/char-lstm.yaml")
    assert sweep.search.strategy in ("tpe", {"type": "tpe"}) or "tpe" in str(
        sweep.search.strategy)
    assert sweep.objective.metric == "val_bits_per_char" and sweep.objective.mode == "min"
    assert sorted(sweep.space.names) == ["hidden", "lr"]
    point = sweep.space.sample(np.random.default_rng(0))
    cfg = sweep.space.expand(point)
    assert cfg["model"]["layers"][1]["nout"] == point["hidden"]
    cfg["dataset"]["max_bytes"] = 8_000
    exp = build_experiment(apply_overrides(cfg, epochs=1))
    assert math.isfinite(exp.run().final["val_bits_per_char"])
