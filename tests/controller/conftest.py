"""Small sweeps on the digits data for controller tests (a few seconds each)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

TEMPLATE = """\
name: tiny
backend: {name: cpu, numerics: fp32}
dataset: {name: digits, batch_size: 128}
model:
  layers:
    - {type: affine, nout: !randint [8, 32], init: kaiming, activation: relu}
    - {type: affine, nout: 10, activation: softmax}
  cost: cross_entropy
optimizer: {type: momentum, learning_rate: !loguniform [1.0e-2, 0.3], momentum: 0.9}
training: {epochs: EPOCHS, seed: 0}
metrics: [misclassification]
"""


def write_sweep(tmp: Path, *, strategy="random", trials=3, parallel=2, epochs=2,
                scheduler="fifo", compare="", executor="{type: local}", template=None,
                extra_search="", name="tiny") -> Path:
    (tmp / "model.yaml").write_text((template or TEMPLATE).replace("EPOCHS", str(epochs)))
    sweep = textwrap.dedent(f"""\
        name: {name}
        model: model.yaml
        search:
          strategy: {strategy}
          objective: {{metric: val_misclassification, mode: min}}
          trials: {trials}
          parallel: {parallel}
          seed: 0
          scheduler: {scheduler}
        """)
    sweep += "".join(f"  {line}\n" for line in extra_search.splitlines() if line)
    if compare:
        sweep += f"compare: {compare}\n"
    sweep += f"executor: {executor}\n"
    path = tmp / "sweep.yaml"
    path.write_text(sweep)
    return path


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path
