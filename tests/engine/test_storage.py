"""Which tensors are stored in which format: recipes, per-class overrides in the model YAML,
the master copy of the weights in training and checkpoints, results and diagnostics."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from neon.backends import resolve_storage
from neon.config import apply_overrides, build_experiment, load_config
from neon.diagnostics import flatten_record
from neon.errors import ConfigError
from neon.models import Model

DIGITS = "examples/mlp/digits-small.yaml"
CLASSES = ("weights", "master_weights", "activations", "gradients", "optimizer_state")


def names(storage):
    return [storage.of(c).name for c in CLASSES]


def test_recipes_and_overrides():
    assert names(resolve_storage("fp16")) == ["fp16", "fp32", "fp16", "fp16", "fp32"]
    assert resolve_storage("bf16").recipe == "mixed"
    assert names(resolve_storage("bf16", "pure")) == ["bf16"] * 5
    assert resolve_storage("fp32").recipe == "pure"
    assert names(resolve_storage("fp32", "mixed")) == ["fp32"] * 5
    assert names(resolve_storage("fp64")) == ["fp64"] * 5
    over = resolve_storage("fp16", "pure", {"optimizer_state": "fp32", "gradients": "bf16"})
    assert names(over) == ["fp16", "fp16", "fp16", "bf16", "fp32"] and not over.keeps_master
    assert resolve_storage("fp16").keeps_master and resolve_storage("fp16").emulated
    fp32_weights = resolve_storage("fp16", storage={"weights": "fp32"})
    assert not fp32_weights.keeps_master  # the master copy would be the weights themselves
    assert resolve_storage("fp16").summary() == "mixed (master_weights, optimizer_state: fp32)"
    assert resolve_storage("bf16", "pure").summary() == "pure"


@pytest.mark.parametrize("recipe,storage,message", [
    ("mixd", None, "recipe: unknown recipe 'mixd' (did you mean 'mixed'?)"),
    (None, {"optimizer_stat": "fp32"}, "storage.optimizer_stat: unknown tensor class "
                                       "(did you mean 'optimizer_state'?)"),
    (None, {"gradients": "fp8"}, "storage.gradients: unknown numerics 'fp8'"),
    (None, {"weights": "fp64"}, "storage: fp64 cannot be mixed"),
    (None, {"master_weights": "bf16"}, "storage.master_weights: master_weights bf16 must be "
                                       "the weights' format (fp16) or fp32"),
    (None, ["fp32"], "storage: expected a mapping"),
])
def test_storage_mistakes_are_config_errors(recipe, storage, message):
    with pytest.raises(ConfigError) as err:
        resolve_storage("fp16", recipe, storage)
    assert message in str(err.value)


def test_yaml_backend_section_names_file_line_and_key(tmp_path):
    with open(DIGITS, encoding="utf-8") as fh:
        text = fh.read()
    assert "backend: {name: cpu, numerics: fp32}" in text
    path = tmp_path / "m.yaml"
    path.write_text(text.replace(
        "backend: {name: cpu, numerics: fp32}",
        "backend:\n  numerics: fp16\n  storage:\n    optimizer_state: fp32\n    gradiens: fp16"))
    with pytest.raises(ConfigError) as err:
        build_experiment(load_config(str(path)))
    line = text.splitlines().index("backend: {name: cpu, numerics: fp32}") + 5
    assert str(err.value).startswith(f"{path}:{line}: backend.storage.gradiens: unknown tensor "
                                     "class (did you mean 'gradients'?)")


def test_yaml_recipe_and_storage_reach_the_backend_and_the_results(tmp_path):
    cfg = apply_overrides(load_config(DIGITS), numerics="fp16", recipe="pure", epochs=1)
    cfg["backend"]["storage"] = {"optimizer_state": "fp32"}
    exp = build_experiment(cfg)
    history = exp.run()
    assert history.numerics["recipe"] == "pure"
    assert history.numerics["storage"] == {
        "weights": "fp16", "master_weights": "fp16", "activations": "fp16",
        "gradients": "fp16", "optimizer_state": "fp32"}
    p = exp.model.params[0]
    assert p.master is None
    np.testing.assert_array_equal(p.value, p.value.astype(np.float16).astype(np.float32))
    velocity = p.state["velocity"]
    assert not np.array_equal(velocity, velocity.astype(np.float16).astype(np.float32))


def test_mixed_weights_are_the_master_rounded_and_checkpoints_keep_the_master(tmp_path):
    """Resuming from a checkpoint continues bit for bit: the master copy (fp32) is saved
    beside the fp16 weights and restored."""
    cfg = apply_overrides(load_config(DIGITS), numerics="fp16", epochs=3)
    full = build_experiment(cfg)
    full_hist = full.run()
    for p in full.model.params:
        assert p.master is not None and p.master is not p.value
        np.testing.assert_array_equal(p.value, p.master.astype(np.float16).astype(np.float32))
        assert not np.array_equal(p.master, p.value)  # steps below fp16's spacing are kept

    part = build_experiment(apply_overrides(cfg, epochs=2))
    part.run()
    path = tmp_path / "ckpt.npz"
    part.model.save(str(path))
    with np.load(path, allow_pickle=False) as f:
        assert f["param/affine_0/W"].dtype == np.float16
        assert f["master/affine_0/W"].dtype == np.float32
        assert f["opt/affine_0/W/velocity"].dtype == np.float32
    restored = Model.load(str(path))
    assert restored.be.storage.names() == full.be.storage.names()
    for p, q in zip(part.model.params, restored.params):
        np.testing.assert_array_equal(p.master, q.master)
        np.testing.assert_array_equal(p.value, q.value)
    hist = restored.fit(part.data.train, restored.optimizer, 3, valid=part.data.valid,
                        metrics=part.metrics)
    for p, q in zip(full.model.params, restored.params):
        np.testing.assert_array_equal(p.master, q.master)
    assert hist.final["train_loss"] == full_hist.final["train_loss"]


@pytest.mark.parametrize("recipe", ["pure", "mixed"])
def test_diagnostics_count_the_optimizer_states_underflow(recipe):
    """Adam's second moment (g^2 / 1000) underflows in fp16: the flow counter's
    optimizer_state row shows it in the pure recipe, and nothing in the mixed one."""
    cfg = apply_overrides(load_config(DIGITS), numerics="fp16", recipe=recipe, epochs=1)
    cfg["optimizer"] = {"type": "adam", "learning_rate": 0.001}
    cfg["diagnostics"] = {"ranges": True}
    record = build_experiment(cfg).run().final
    diag = record["diagnostics"]
    ranges = diag["ranges"]["affine_0"]
    assert {"W", "dW", "W.m", "W.v"} <= set(ranges)
    assert ("W.master" in ranges) == (recipe == "mixed")
    # without a master copy the optimizer steps the weights themselves
    assert ("master_weights" in diag["flow_classes"]) == (recipe == "mixed")
    assert "weights" in diag["flow_classes"]
    underflow = diag["flow_classes"]["optimizer_state"]["underflow"]
    if recipe == "pure":
        assert underflow > 0.05
    else:
        assert underflow == 0
    flat = flatten_record(record)
    assert flat["underflow_fraction/optimizer_state"] == underflow
    assert "range_max/affine_0/W.v" in flat


def test_cli_records_the_storage_and_takes_a_recipe(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "neon.cli", DIGITS, "--numerics", "bf16",
                           "--epochs", "1", "-o", str(out), "--diagnostics"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert "numerics=bf16 recipe=mixed (master_weights, optimizer_state: fp32)" in first
    assert "by tensor class:" in proc.stdout and "optimizer_state  fp32" in proc.stdout
    result = json.loads(out.read_text())
    assert result["backend"]["recipe"] == "mixed"
    assert result["backend"]["storage"]["optimizer_state"] == "fp32"
    proc = subprocess.run([sys.executable, "-m", "neon.cli", DIGITS, "--numerics", "fp16",
                           "--recipe", "pure", "--epochs", "1", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "recipe=pure " in proc.stdout.splitlines()[0]
    assert set(json.loads(out.read_text())["backend"]["storage"].values()) == {"fp16"}
