"""A small tracked sweep shared by the experiment tests (runs once per session)."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "controller"))

TEMPLATE = """\
name: tracked
backend: {name: cpu, numerics: fp32}
dataset: {name: digits, batch_size: 128}
model:
  layers: !choice
    name: arch
    options:
      - - {type: affine, nout: !randint [16, 48], init: kaiming, activation: relu}
        - {type: affine, nout: 10, activation: softmax}
      - - {type: affine, nout: 10, activation: softmax}
  cost: cross_entropy
optimizer: {type: momentum, learning_rate: !loguniform [1.0e-2, 0.3], momentum: 0.9}
training: {epochs: 3, seed: 0}
metrics: [misclassification, log_loss]
diagnostics: {timing: true, ranges: true}
"""


def write_tracked_sweep(folder: Path, uri: str, trials: int = 4, experiment: str = "tracked",
                        scheduler: str = "{type: asha, min_epochs: 1, max_epochs: 3, "
                                         "reduction_factor: 3}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(TEMPLATE)
    path = folder / "sweep.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {experiment}
        model: model.yaml
        search:
          strategy: random
          objective: {{metric: val_misclassification, mode: min}}
          trials: {trials}
          parallel: 2
          seed: 0
          scheduler: {scheduler}
        compare: {{numerics: [fp32, fp16]}}
        executor: {{type: local}}
        tracking: {{uri: "{uri}", experiment: {experiment}}}
        """))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tracked_sweep(tmp_path_factory):
    """(store uri, SweepResult, sweep path) of a finished 4-point ASHA sweep."""
    from experiments.tracking import SweepTracker
    from search.controller import Controller
    from search.executors import build_executor
    from search.sweep import load_sweep

    folder = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{folder}/mlflow.db"
    path = write_tracked_sweep(folder, uri)
    sweep = load_sweep(str(path))
    tracker = SweepTracker.from_sweep(sweep)
    result = Controller(sweep, folder / "work", build_executor(sweep.executor, 2),
                        tracker).run()
    return uri, result, path


@pytest.fixture(scope="session")
def two_sweeps(tmp_path_factory):
    """Two tiny sweeps (2 points x fp32/fp16, 1 epoch, seeds 0 then 7) logged to one
    experiment, the first through the CLI: (store uri, [parent run ids oldest first], the
    first sweep's CompletedProcess)."""
    import subprocess

    from experiments.store import KIND_TAG, client_for
    from experiments.tracking import SweepTracker
    from search.controller import Controller
    from search.executors import build_executor
    from search.sweep import load_sweep

    folder = tmp_path_factory.mktemp("two")
    uri = f"sqlite:///{folder}/mlflow.db"
    path = write_tracked_sweep(folder, uri, trials=2, experiment="two", scheduler="fifo")
    model = folder / "model.yaml"
    model.write_text(model.read_text().replace("epochs: 3", "epochs: 1"))
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", str(path), "--workdir",
                           str(folder / "w0")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    path.write_text(path.read_text().replace("seed: 0", "seed: 7"))
    sweep = load_sweep(str(path))
    Controller(sweep, folder / "w7", build_executor(sweep.executor, 2),
               SweepTracker.from_sweep(sweep)).run()
    client = client_for(uri, create=False)
    exp = client.get_experiment_by_name("two")
    parents = client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = 'sweep'",
                                 order_by=["attributes.start_time ASC"])
    return uri, [p.info.run_id for p in parents], proc
