"""The Dask executor on a real ``distributed.LocalCluster`` (two worker processes)."""

from __future__ import annotations

import pytest
from conftest import write_sweep

from search.controller import Controller
from search.executors import build_executor
from search.sweep import load_sweep
from search.trial import TrialState


@pytest.mark.timeout(300)
def test_dask_local_cluster_sweep_with_asha(sweep_dir):
    path = write_sweep(sweep_dir, trials=4, parallel=2, epochs=3,
                       executor="{type: dask, local_workers: 2}",
                       scheduler="{type: asha, min_epochs: 1, max_epochs: 3, "
                                 "reduction_factor: 3}",
                       compare="{numerics: [fp32, fp16]}")
    sweep = load_sweep(str(path))
    executor = build_executor(sweep.executor, sweep.search.parallel)
    seen_epochs = []

    class Spy:
        def __getattr__(self, name):
            return lambda *a, **k: None

        def log_epochs(self, trial, records, first_epoch):
            seen_epochs.append((trial.id, first_epoch, len(records)))

    controller = Controller(sweep, sweep_dir / "w", executor, tracker=Spy())
    result = controller.run()
    assert executor.cluster is None  # shut down
    assert len(result.trials) == 8
    assert all(t.state in (TrialState.COMPLETED, TrialState.PRUNED) for t in result.trials)
    assert any(t.state == TrialState.COMPLETED and t.epochs == 3 for t in result.trials)
    for t in result.trials:
        assert [int(r["epoch"]) for r in t.history] == list(range(1, t.epochs + 1))
    assert seen_epochs, "per-epoch progress must come back from the dask workers"
    logged = {}
    for tid, first, n in seen_epochs:
        logged.setdefault(tid, []).extend(range(first, first + n))
    for t in result.trials:
        assert logged[t.id] == list(range(1, t.epochs + 1)), t.id


@pytest.mark.timeout(300)
def test_dask_timeout_restarts_the_worker(sweep_dir):
    path = write_sweep(sweep_dir, trials=1, parallel=1, epochs=100_000,
                       executor="{type: dask, local_workers: 1}",
                       extra_search="timeout_per_trial: 3")
    sweep = load_sweep(str(path))
    executor = build_executor(sweep.executor, sweep.search.parallel)
    result = Controller(sweep, sweep_dir / "w", executor).run()
    assert result.trials[0].state == TrialState.TIMED_OUT
