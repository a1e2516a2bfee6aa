"""Bad sweep files fail at once with one line naming file, line and key (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import write_sweep

from neon.errors import ConfigError
from search.sweep import load_sweep


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True,
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
