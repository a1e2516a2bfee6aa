"""The default 16-bit recipe trains: every optimizer takes the shipped Fashion-MNIST example
(one epoch over the 60000 training images, the complete 10000-image test set) in fp16 and bf16
to within 1.5 points of fp32's test error, same seed. With everything stored in 16 bits
(``recipe: pure``), Adam in fp16 and plain and momentum SGD in bf16 miss that bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from neon.config import apply_overrides, build_experiment, load_config
from neon.datasets import load_dataset
from neon.datasets.idx import FASHION_MNIST_DIR

EXAMPLE = "examples/mlp/fashion-mnist.yaml"
OPTIMIZERS = ["sgd", "momentum", "nesterov", "rmsprop", "adadelta", "adam"]  # their defaults

pytestmark = pytest.mark.skipif(
    not (Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")


@pytest.fixture(scope="module")
def config():
    return apply_overrides(load_config(EXAMPLE), epochs=1)


@pytest.fixture(scope="module")
def data(config):
    data = load_dataset(config["dataset"], seed=config["training"]["seed"])
    assert (data.train.ndata, data.valid.ndata) == (60000, 10000)
    return data


def trained_error(config, data, numerics: str, optimizer: str) -> tuple[float, dict]:
    """Percent misclassified on the test set after training; the backend's description."""
    cfg = apply_overrides(config, numerics=numerics)
    cfg["optimizer"] = {"type": optimizer}
    exp = build_experiment(cfg, data=data)
    history = exp.run()
    return 100 * history.final["val_misclassification"], history.numerics


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fp16_and_bf16_train_within_1_5_points_of_fp32(config, data, optimizer):
    errors = {}
    for numerics in ("fp32", "fp16", "bf16"):
        errors[numerics], described = trained_error(config, data, numerics, optimizer)
        if numerics != "fp32":  # the default recipe, as the results record it
            assert described["recipe"] == "mixed"
            assert described["storage"] == {
                "weights": numerics, "master_weights": "fp32", "activations": numerics,
                "gradients": numerics, "optimizer_state": "fp32"}
    assert errors["fp32"] < 30, errors  # it learned something to compare
    for numerics in ("fp16", "bf16"):
        assert abs(errors[numerics] - errors["fp32"]) <= 1.5, errors
