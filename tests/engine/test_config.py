"""Model YAML errors: one line naming file, line and key, with "did you mean"."""

from __future__ import annotations

import pytest

from neon.config import apply_overrides, build_experiment, load_config
from neon.errors import ConfigError

GOOD = """\
backend: {name: cpu, numerics: fp32}
dataset: {name: digits, batch_size: 64}
model:
  layers:
    - {type: affine, nout: 16, activation: relu}
    - {type: affine, nout: 10, activation: softmax}
  cost: cross_entropy
optimizer: {type: sgd, learning_rate: 0.1}
training: {epochs: 1, seed: 0}
"""


def error_for(text, tmp_path, name="m.yaml"):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        build_experiment(load_config(str(path)))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_good_config_builds(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    exp = build_experiment(load_config(str(path)))
    assert exp.epochs == 1 and exp.model.nparams == 64 * 16 + 16 + 16 * 10 + 10


def test_unknown_layer_with_suggestion(tmp_path):
    msg = error_for(GOOD.replace("type: affine, nout: 16", "type: afine, nout: 16"), tmp_path)
    assert ":5:" in msg and "unknown layer 'afine'" in msg and "did you mean 'affine'" in msg
    assert "model.layers.0.type" in msg


def test_unknown_key_with_suggestion(tmp_path):
    msg = error_for(GOOD.replace("nout: 16", "nuot: 16"), tmp_path)
    assert ":5:" in msg and "model.layers.0.nuot" in msg and "did you mean 'nout'" in msg


def test_bad_type(tmp_path):
    msg = error_for(GOOD.replace("nout: 16", "nout: lots"), tmp_path)
    assert ":5:" in msg and "nout: expected int, got str 'lots'" in msg


def test_missing_required_key(tmp_path):
    msg = error_for(GOOD.replace("{type: affine, nout: 16, activation: relu}",
                                 "{type: affine, activation: relu}"), tmp_path)
    assert ":5:" in msg and "needs 'nout'" in msg


def test_unknown_section_and_missing_model(tmp_path):
    msg = error_for(GOOD + "trainig: {epochs: 3}\n", tmp_path)
    assert ":10:" in msg and "did you mean 'training'" in msg
    msg = error_for("backend: {name: cpu}\n", tmp_path)
    assert "missing section 'model'" in msg


def test_unknown_activation_optimizer_numerics_dataset(tmp_path):
    assert "did you mean 'relu'" in error_for(GOOD.replace("activation: relu",
                                                           "activation: rleu"), tmp_path)
    assert "did you mean 'sgd'" in error_for(GOOD.replace("type: sgd", "type: sdg"), tmp_path)
    msg = error_for(GOOD.replace("numerics: fp32", "numerics: fp8"), tmp_path)
    assert ":1:" in msg and "unknown numerics 'fp8'" in msg
    msg = error_for(GOOD.replace("name: digits", "name: digitz"), tmp_path)
    assert ":2:" in msg and "did you mean 'digits'" in msg


def test_invalid_values(tmp_path):
    assert "epochs must be >= 1" in error_for(GOOD.replace("epochs: 1", "epochs: 0"), tmp_path)
    assert "keep must be in (0, 1]" in error_for(
        GOOD.replace("- {type: affine, nout: 10", "- {type: dropout, keep: 2}\n    - "
                     "{type: affine, nout: 10"), tmp_path)


def test_yaml_syntax_error_and_search_tags(tmp_path):
    msg = error_for(GOOD.replace("nout: 16,", "nout: [16,"), tmp_path)
    assert "m.yaml:" in msg
    msg = error_for(GOOD.replace("learning_rate: 0.1", "learning_rate: !uniform [0.1, 1]"),
                    tmp_path)
    assert ":8:" in msg and "unknown tag !uniform" in msg


def test_unsafe_tags_are_rejected(tmp_path):
    msg = error_for(GOOD + "name: !!python/object/apply:os.system ['echo hi']\n", tmp_path)
    assert "unknown tag" in msg or "could not determine" in msg


def test_overrides():
    cfg = load_config(GOOD)
    out = apply_overrides(cfg, numerics="fp16", epochs=3, seed=4, backend="cpu",
                          dataset="synthetic", stochastic_rounding=True)
    assert out["backend"] == {"name": "cpu", "numerics": "fp16", "stochastic_rounding": True}
    assert out["training"] == {"epochs": 3, "seed": 4}
    assert out["dataset"] == {"batch_size": 64, "name": "synthetic"}
    assert cfg["training"]["epochs"] == 1  # the original is untouched
