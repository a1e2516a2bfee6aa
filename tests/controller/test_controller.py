"""The search loop end to end on digits: strategies, ASHA, cells, faults, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEMPLATE, wait_for, write_sweep

from search.cli import command
from search.controller import Controller, SweepInterrupted
from search.executors import build_executor
from search.journal import Journal
from search.sweep import load_sweep
from search.trial import TrialState


def run(path, workdir, resume=False, on_change=None, trials=None):
    sweep = load_sweep(str(path))
    executor = build_executor(sweep.executor, sweep.search.parallel)
    controller = Controller(sweep, workdir, executor, resume=resume, on_change=on_change,
                            trials=trials)
    return controller, controller.run()


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe", "spearmint"])
def test_each_strategy_end_to_end(sweep_dir, strategy):
    path = write_sweep(sweep_dir, strategy=strategy, trials=3, epochs=1)
    _, result = run(path, sweep_dir / "w")
    assert len(result.trials) == 3 and all(t.state == TrialState.COMPLETED
                                           for t in result.trials)
    assert result.best is not None and result.best.value("val_misclassification") < 0.5
    assert len({json.dumps(t.point, sort_keys=True) for t in result.trials}) == 3


def test_asha_promotes_from_checkpoints_and_prunes(sweep_dir):
    path = write_sweep(sweep_dir, trials=6, epochs=4,
                       scheduler="{type: asha, min_epochs: 1, max_epochs: 4, "
                                 "reduction_factor: 2}",
                       compare="{numerics: [fp32, fp16]}")
    _, result = run(path, sweep_dir / "w")
    states = [t.state for t in result.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETED in states
    for t in result.trials:
        # a promoted trial continued: epochs are numbered 1..n once each, never restarted
        assert [int(r["epoch"]) for r in t.history] == list(range(1, t.epochs + 1))
        assert t.epochs in (1, 2, 4)
    by_point = {}
    for t in result.trials:
        by_point.setdefault(t.number, set()).add(t.epochs)
    assert all(len(e) == 1 for e in by_point.values()), "cells of a point must stay paired"
    completed = [t for t in result.trials if t.state == TrialState.COMPLETED]
    assert {t.cell for t in completed} == {"fp32", "fp16"}


def test_hyperband_runs(sweep_dir):
    path = write_sweep(sweep_dir, trials=4, epochs=3,
                       scheduler="{type: hyperband, min_epochs: 1, reduction_factor: 3}")
    _, result = run(path, sweep_dir / "w")
    assert sorted({t.epochs for t in result.trials}) in ([1, 3], [3])
    assert any(t.state == TrialState.COMPLETED for t in result.trials)


def test_pairs_share_seed_and_objective_cell(sweep_dir):
    path = write_sweep(sweep_dir, trials=2, epochs=1,
                       compare="{numerics: [fp32, bf16], objective_cell: bf16}")
    controller, result = run(path, sweep_dir / "w")
    assert {t.cell for t in result.trials} == {"fp32", "bf16"}
    assert all(t.cell == "bf16" for t in result.objective_trials())
    told = [o for o in controller.strategy.history]
    bf16 = {t.number: t.value("val_misclassification") for t in result.objective_trials()}
    assert sorted(o.value for o in told) == sorted(bf16.values())


def test_failures_do_not_stop_the_sweep(sweep_dir):
    template = TEMPLATE.replace(
        "optimizer: {type: momentum, learning_rate: !loguniform [1.0e-2, 0.3], momentum: 0.9}",
        "optimizer: {type: sgd, learning_rate: !choice [0.1, 1.0e6, -1.0]}").replace(
        "activation: relu", "activation: identity")
    path = write_sweep(sweep_dir, strategy="grid", trials=3, epochs=2, template=template)
    controller, result = run(path, sweep_dir / "w")
    by_lr = {t.point["optimizer.learning_rate"]: t for t in result.trials}
    assert by_lr[0.1].state == TrialState.COMPLETED
    assert by_lr[1e6].state == TrialState.FAILED and by_lr[1e6].error.startswith("diverged at")
    bad = by_lr[-1.0]
    assert bad.state == TrialState.FAILED and "learning_rate must be > 0" in bad.error
    assert bad.traceback_path and os.path.exists(bad.traceback_path)
    assert sum(o.value is None for o in controller.strategy.history) == 2


def test_missing_dataset_fails_trials_not_sweep(sweep_dir):
    template = TEMPLATE.replace("{name: digits, batch_size: 128}",
                                "{name: mnist, path: /nonexistent}")
    path = write_sweep(sweep_dir, trials=2, epochs=1, template=template)
    _, result = run(path, sweep_dir / "w")
    assert all(t.state == TrialState.FAILED for t in result.trials)
    assert "mnist not found in /nonexistent" in result.trials[0].error


def test_timeout_kills_the_trial(sweep_dir):
    # far more epochs than 2 s allow on any machine (the engine got fast enough for 500)
    path = write_sweep(sweep_dir, trials=2, parallel=2, epochs=100_000,
                       extra_search="timeout_per_trial: 2")
    start = time.time()
    _, result = run(path, sweep_dir / "w")
    assert time.time() - start < 30
    assert all(t.state == TrialState.TIMED_OUT for t in result.trials)
    assert result.trials[0].error == "timed out after 2 s"


def test_worker_killed_by_signal_is_retried_once_then_fails(sweep_dir):
    path = write_sweep(sweep_dir, trials=2, parallel=1, epochs=30)
    kills = {}

    def killer(controller):
        for key, proc in list(controller.executor.procs.items()):
            trial_id = key.split("@")[0]
            limit = 2 if trial_id == "0-fp32" else 1
            if kills.get(trial_id, 0) < limit and proc.is_alive() and proc.pid:
                kills[trial_id] = kills.get(trial_id, 0) + 1
                os.kill(proc.pid, signal.SIGKILL)

    _, result = run(path, sweep_dir / "w", on_change=killer)
    first, second = result.trials
    assert first.state == TrialState.FAILED and first.error == "worker died (signal 9)"
    assert first.attempts == 2
    assert second.state == TrialState.COMPLETED and second.attempts == 2


def test_journal_records_every_change_and_resume_without_rerun(sweep_dir):
    path = write_sweep(sweep_dir, trials=2, epochs=1)
    _, first = run(path, sweep_dir / "w")
    with pytest.raises(Exception, match="--resume"):
        run(path, sweep_dir / "w")
    journal = Journal(sweep_dir / "w")
    states = [e["trial"]["state"] for e in journal.events() if e["event"] == "trial"]
    assert states.count("completed") == 2 and "running" in states
    # resuming a finished sweep re-runs nothing; a larger budget only adds new points
    _, again = run(path, sweep_dir / "w", resume=True, trials=3)
    assert [t.id for t in again.trials] == ["0-fp32", "1-fp32", "2-fp32"]
    assert again.trials[0].attempts == 1 and again.trials[0].history == first.trials[0].history


def sweep_process(path, workdir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", str(path), "--workdir", str(workdir), "-q",
         "--no-tracking", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def completed(workdir):
    j = Journal(workdir)
    done = {e["trial"]["number"] for e in j.events()
            if e["event"] == "trial" and e["trial"]["state"] == "completed"}
    return len(done)


def descendants(pid):
    """PIDs of the processes below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_then_resume_counts_trials_without_duplicates(sweep_dir):
    path = write_sweep(sweep_dir, trials=6, parallel=2, epochs=3)
    workdir = sweep_dir / "w"
    proc = sweep_process(path, workdir)
    assert wait_for(lambda: completed(workdir) >= 2)
    proc.kill()
    proc.wait()
    before = completed(workdir)
    out = sweep_dir / "r.json"
    res = subprocess.run([sys.executable, "-m", "experiments.cli", str(path), "--workdir",
                          str(workdir), "--resume", "-q", "--no-tracking", "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    ids = [t["id"] for t in data["trials"]]
    assert len(ids) == len(set(ids)) == 6
    assert all(t["state"] == "completed" for t in data["trials"])
    assert all([h["epoch"] for h in t["history"]] == [1, 2, 3] for t in data["trials"])
    finished_before = [t for t in data["trials"] if t["number"] < before]
    assert all(t["attempts"] == 1 for t in finished_before[:before])


def test_workers_of_a_killed_controller_exit(sweep_dir):
    """kill -9 of the controller: its workers, mid-trial, exit instead of training on and
    then waiting forever to flush their queue into a pipe nobody reads."""
    path = write_sweep(sweep_dir, trials=2, parallel=2, epochs=100_000)
    workdir = sweep_dir / "w"
    proc = sweep_process(path, workdir)

    def running():
        states = {e["trial"]["number"]: e["trial"]["state"] for e in Journal(workdir).events()
                  if e["event"] == "trial"}
        return list(states.values()).count("running") == 2

    assert wait_for(running)
    time.sleep(1.0)  # the workers are training
    below = descendants(proc.pid)  # the forkserver, the two workers, the spare
    assert len(below) >= 3
    proc.kill()
    proc.wait()
    assert wait_for(lambda: not any(alive(p) for p in below), timeout=30), [
        p for p in below if alive(p)]


def test_ctrl_c_marks_killed_exits_130_and_resumes(sweep_dir):
    # trials outlast the 1 s before Ctrl-C on any machine; on resume they may time out
    path = write_sweep(sweep_dir, trials=3, parallel=2, epochs=100_000,
                       extra_search="timeout_per_trial: 4")
    workdir = sweep_dir / "w"
    proc = sweep_process(path, workdir)
    running = lambda: any(e["event"] == "trial" and e["trial"]["state"] == "running"  # noqa: E731
                          for e in Journal(workdir).events())
    assert wait_for(running)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"resume with: {command()} {path} --resume --workdir {workdir}" in err
    last = {}
    for e in Journal(workdir).events():
        if e["event"] == "trial":
            last[e["trial"]["number"]] = e["trial"]["state"]
    assert "killed" in last.values()
    # the killed trials run again on resume
    _, result = run(path, workdir, resume=True)
    assert all(t.state in (TrialState.COMPLETED, TrialState.TIMED_OUT) for t in result.trials)


def test_ctrl_c_in_process_raises_sweep_interrupted(sweep_dir):
    path = write_sweep(sweep_dir, trials=2, parallel=1, epochs=100)

    def interrupt(controller):
        if controller.running:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted) as stop:
        run(path, sweep_dir / "w", on_change=interrupt)
    assert stop.value.result.trials[0].state == TrialState.KILLED
