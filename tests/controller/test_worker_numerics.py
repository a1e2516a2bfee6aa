"""A trial's result says which format each tensor class was stored in (for its records)."""

from __future__ import annotations

from neon.config import load_config, to_plain
from search.worker import run_job


def test_a_trials_result_records_the_recipe_and_each_tensor_class_format():
    spec = {"key": "t0", "config": to_plain(load_config("examples/mlp/digits-small.yaml")),
            "epochs": 1, "seed": 0, "overrides": {"numerics": "bf16"}}
    result = run_job(spec)
    assert result["status"] == "ok", result["error"]
    assert result["numerics"]["recipe"] == "mixed"
    assert result["numerics"]["storage"] == {
        "weights": "bf16", "master_weights": "fp32", "activations": "bf16",
        "gradients": "bf16", "optimizer_state": "fp32"}
