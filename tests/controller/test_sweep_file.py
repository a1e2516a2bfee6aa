"""Bad sweep files fail at once with one line naming file, line and key (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import TEMPLATE, write_sweep

from neon.errors import ConfigError
from search.sweep import load_sweep


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_valid_sweep_parses(sweep_dir):
    sweep = load_sweep(str(write_sweep(sweep_dir, compare="{numerics: [fp32, fp16]}")))
    assert [c.name for c in sweep.cells] == ["fp32", "fp16"]
    assert sweep.objective_cell == "fp32" and sweep.base_epochs == 2
    assert sweep.space.names == ["model.layers.0.nout", "optimizer.learning_rate"]


@pytest.mark.parametrize("change,line,words", [
    (("strategy: random", "strategy: spearmitn"), 4, "did you mean 'spearmint'"),
    (("trials: 3", "trials: 0"), None, "trials must be >= 1"),
    (("scheduler: fifo", "scheduler: ashha"), 9, "did you mean 'asha'"),
    (("metric: val_misclassification", "metric: val_acc"), 5, "not reported by the model"),
    (("model: model.yaml", "model: nothere.yaml"), 2, "model file not found"),
    (("search:", "serach:"), 3, "did you mean 'search'"),
])
def test_bad_sweep_files(sweep_dir, change, line, words):
    path = write_sweep(sweep_dir)
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(ConfigError) as err:
        load_sweep(str(path))
    msg = str(err.value)
    assert words in msg and msg.startswith(str(path)) and "\n" not in msg
    if line:
        assert f":{line}:" in msg


def test_unknown_compare_cell(sweep_dir):
    path = write_sweep(sweep_dir, compare="{numerics: [fp32, fp8]}")
    with pytest.raises(ConfigError, match="unknown numerics 'fp8'"):
        load_sweep(str(path))
    path = write_sweep(sweep_dir, compare="{precision: [fp32]}")
    with pytest.raises(ConfigError, match="unknown compare axis"):
        load_sweep(str(path))
    path = write_sweep(sweep_dir, compare="{numerics: [fp32, fp16], objective_cell: bf16}")
    with pytest.raises(ConfigError, match="objective_cell 'bf16' is not a cell"):
        load_sweep(str(path))


def test_bad_range_in_template_names_template_line(sweep_dir):
    path = write_sweep(sweep_dir)
    (sweep_dir / "model.yaml").write_text(
        (sweep_dir / "model.yaml").read_text().replace("[1.0e-2, 0.3]", "[0.3, 1.0e-2]"))
    with pytest.raises(ConfigError) as err:
        load_sweep(str(path))
    assert "model.yaml:9" in str(err.value) and "inverted range" in str(err.value)


def test_cli_exit_2_one_line(sweep_dir):
    path = write_sweep(sweep_dir)
    path.write_text(path.read_text().replace("strategy: random", "strategy: nope"))
    proc = cli(str(path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "sweep.yaml:4: search.strategy: unknown strategy 'nope'" in proc.stderr
    proc = cli(str(sweep_dir / "missing.yaml"))
    assert proc.returncode == 2 and "file not found" in proc.stderr
    proc = cli(str(write_sweep(sweep_dir)), "--trials", "0")
    assert proc.returncode == 2


def test_dry_run_prints_space_and_trials(sweep_dir):
    proc = cli(str(write_sweep(sweep_dir, compare="{numerics: [fp32, fp16]}")), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "model.layers.0.nout" in out and "optimizer.learning_rate" in out
    assert "trial-0-fp16" in out and "expanded model of trial-0" in out
    assert not (sweep_dir / "sweep.neon-search").exists()


def test_gpu_slots_spread_jobs_over_visible_gpus(monkeypatch):
    from search.executors.base import GPUSlots, Job

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    slots = GPUSlots()
    jobs = [Job(f"{i}-gpu@1#0", f"{i}-gpu", {"overrides": {"backend": "gpu"}, "config": {}})
            for i in range(3)]
    for job in jobs:
        slots.assign(job)
    assert [j.spec["env"]["CUDA_VISIBLE_DEVICES"] for j in jobs] == ["2", "5", "2"]
    slots.release(jobs[1].key)
    extra = Job("9-gpu@1#0", "9-gpu", {"config": {"backend": {"name": "gpu"}}})
    slots.assign(extra)
    assert extra.spec["env"]["CUDA_VISIBLE_DEVICES"] == "5"
    cpu = Job("1-cpu@1#0", "1-cpu", {"overrides": {}, "config": {"backend": {"name": "cpu"}}})
    slots.assign(cpu)
    assert "env" not in cpu.spec


def _tuned(sweep_dir, old, new, **kw):
    """A sweep whose template has ``old`` replaced by ``new``."""
    return write_sweep(sweep_dir, template=TEMPLATE.replace(old, new), **kw)


def test_tuned_epochs_and_seed_under_fifo(sweep_dir):
    path = _tuned(sweep_dir, "{epochs: EPOCHS, seed: 0}",
                  "{epochs: !choice [2, 20], seed: !randint [0, 3]}")
    sweep = load_sweep(str(path))
    assert sweep.epochs_tuned and sweep.seed_tuned and sweep.base_epochs == 20
    for point in (sweep.space.sample(np.random.default_rng(i)) for i in range(5)):
        assert sweep.epochs_of(point) == point["training.epochs"]
        assert sweep.seed_of(point) == point["training.seed"]
    # a choice of whole training sections tunes them too
    path = _tuned(sweep_dir, "{epochs: EPOCHS, seed: 0}", "!choice [{epochs: 1}, {seed: 4}]")
    sweep = load_sweep(str(path))
    assert sweep.epochs_tuned and sweep.seed_tuned and sweep.base_epochs == 10  # the default
    point = sweep.space.sample(np.random.default_rng(0))
    assert [sweep.epochs_of({**point, "training": i}) for i in (0, 1)] == [1, 10]
    assert [sweep.seed_of({**point, "training": i}) for i in (0, 1)] == [0, 4]
    # one value is no tuning: the scheduler keeps the epochs
    sweep = load_sweep(str(_tuned(sweep_dir, "epochs: EPOCHS", "epochs: !randint [3, 3]")))
    point = sweep.space.sample(np.random.default_rng(0))
    assert not sweep.epochs_tuned and sweep.epochs_of(point) is None


@pytest.mark.parametrize("old,new,kw,words", [
    ("epochs: EPOCHS", "epochs: !choice [2, 20]",
     {"scheduler": "{type: asha, max_epochs: 4}"},
     "training.epochs: the asha scheduler sets the epochs of each point"),
    ("epochs: EPOCHS", "epochs: !randint [1, 3]", {"scheduler": "hyperband"},
     "training.epochs: the hyperband scheduler sets the epochs"),
    ("epochs: EPOCHS", "epochs: !randint [1, 3]", {"scheduler": "{type: fifo, max_epochs: 2}"},
     "training.epochs: search.scheduler.max_epochs sets every point's epochs"),
    ("epochs: EPOCHS", "epochs: !uniform [1, 3]", {},
     "training.epochs: expected int, got float 1.0 (!uniform can draw it)"),
    ("epochs: EPOCHS", "epochs: !choice [2, 0]", {}, "epochs must be >= 1, got 0 (an option"),
    ("seed: 0", "seed: !choice [1, abc]", {},
     "training.seed: expected int, got str 'abc' (an option of !choice)"),
    ("numerics: fp32", "numerics: !choice [fp32, bf16]", {"compare": "{numerics: [fp32, fp16]}"},
     "backend.numerics: compare: numerics sets it for every trial"),
    ("name: cpu", "name: !choice [cpu, gpu]", {"compare": "{backend: [cpu, gpu]}"},
     "backend.name: compare: backend sets it"),
    ("numerics: fp32", "numerics: !choice [fp32, fp17]", {},
     "backend.numerics: unknown numerics 'fp17'"),
    ("numerics: fp32", "numerics: fp32, threads: !randint [1, 4]", {},
     "backend.threads: the executor sets each trial's threads"),
    ("name: digits", "name: !choice [digits, digitz]", {},
     "dataset.name: unknown dataset 'digitz' (did you mean 'digits'?)"),
    ("batch_size: 128", "batch_size: !uniform [16, 128]", {},
     "dataset.batch_size: expected int, got float 16.0 (!uniform can draw it)"),
    ("metrics: [misclassification]", "metrics: !choice [[misclassification], [log_loss]]", {},
     "search.objective.metric: objective metric 'val_misclassification' is not reported by "
     "every option of the template's metrics"),
    ("metrics: [misclassification]", "metrics: [!choice [misclassification, acuracy]]", {},
     "metrics: unknown metric 'acuracy' (did you mean 'accuracy'?)"),
])
def test_tags_the_loader_reads_are_checked_for_every_point(sweep_dir, old, new, kw, words):
    path = _tuned(sweep_dir, old, new, **kw)
    with pytest.raises(ConfigError) as err:
        load_sweep(str(path))
    msg = str(err.value)
    assert words in msg and "\n" not in msg, msg
    lines = [i for i, text in enumerate((sweep_dir / "model.yaml").read_text().splitlines(), 1)
             if new in text]
    where = f"{sweep_dir / 'model.yaml'}:{lines[0]}: "
    assert msg.startswith(where) or msg.startswith(f"{path}:"), msg


@pytest.mark.parametrize("old,new,cell", [
    ("numerics: fp32", "numerics: !choice [fp32, bf16]", "base"),
    ("name: cpu", "name: !choice [cpu]", "fp32"),
    ("metrics: [misclassification]", "metrics: [log_loss, !choice [misclassification, "
     "{type: misclassification, top_k: 1}]]", "fp32"),
    ("batch_size: 128", "batch_size: !quniform [32, 128, 32]", "fp32"),
    ("name: digits", "name: !choice [digits, synthetic]", "fp32"),
])
def test_tags_that_work_where_the_loader_reads(sweep_dir, old, new, cell):
    sweep = load_sweep(str(_tuned(sweep_dir, old, new)))
    assert [c.name for c in sweep.cells] == [cell]


def test_tags_in_the_sweeps_own_settings_are_refused(sweep_dir):
    path = write_sweep(sweep_dir, trials="!choice [2, 3]")
    with pytest.raises(ConfigError) as err:
        load_sweep(str(path))
    assert str(err.value).startswith(f"{path}:6: search.trials: tunable tags")


@pytest.mark.timeout(300)
def test_tuned_epochs_and_seed_train_end_to_end(sweep_dir):
    """FIFO with ``epochs: !choice [1, 3]``: each point trains to its own epochs with its
    own seed, its cells alike, and finishes completed (not pruned); the strategy sees every
    value at one fidelity (each point's epochs are its final ones)."""
    from search.controller import Controller
    from search.executors import build_executor

    path = _tuned(sweep_dir, "{epochs: EPOCHS, seed: 0}",
                  "{epochs: !choice [1, 3], seed: !choice [0, 7]}",
                  trials=2, compare="{numerics: [fp32, bf16]}")
    sweep = load_sweep(str(path))
    controller = Controller(sweep, sweep_dir / "w", build_executor(sweep.executor, 2))
    result = controller.run()
    assert len(result.trials) == 4
    for t in result.trials:
        assert t.state.value == "completed", t
        assert t.epochs == t.point["training.epochs"] == len(t.history)
        assert t.seed == t.point["training.seed"]
    # the random strategy's first two points (search seed 0) differ in both
    assert {t.epochs for t in result.trials} == {1, 3}
    assert {t.seed for t in result.trials} == {0, 7}
    assert [o.fidelity for o in controller.strategy.history] == [3, 3]
