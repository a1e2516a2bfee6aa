"""The sweep command's own behaviour: resume with the journal's settings, the leaderboard,
quiet and terminal output, --help."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys

from conftest import run_in_pty, screen, wait_for, write_sweep

from experiments.cli import main
from search.controller import SweepResult
from search.journal import Journal
from search.report import leaderboard, results_json
from search.sweep import load_sweep
from search.trial import Trial, TrialState

CLI = [sys.executable, "-m", "experiments.cli"]
SUMMARY = re.compile(r"^\d+ points, \d+ trials \(.*\) in [\d.]+ s$")


def cli(*args, cwd, timeout=300):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def last_states(workdir):
    """The latest state of every trial in the journal, by point number."""
    return {e["trial"]["number"]: e["trial"]["state"] for e in Journal(workdir).events()
            if e["event"] == "trial"}


def sweep_runs(uri, experiment="tiny", kind="trial"):
    from experiments.store import KIND_TAG, client_for

    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = '{kind}'",
                              max_results=100)


def test_printed_resume_command_runs_with_the_journal_settings(sweep_dir):
    """--trials 3 and another store, Ctrl-C, then the printed command verbatim: 3 points
    (not the file's 8), logged to the first store, whose parent run ends FINISHED."""
    write_sweep(sweep_dir, trials=8, parallel=1, epochs=60)
    proc = subprocess.Popen(
        [*CLI, "sweep.yaml", "--trials", "3", "--tracking-uri", "sqlite:///other.db",
         "--workdir", "w", "-o", "r.json"],
        cwd=sweep_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # with one trial at a time, point 2 has not started when point 1 runs
    assert wait_for(lambda: last_states(sweep_dir / "w") == {0: "completed", 1: "running"},
                    timeout=180)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (line,) = [x for x in err.splitlines() if x.startswith("resume with: ")]
    resume = shlex.split(line.removeprefix("resume with: "))
    assert resume[1:] == ["sweep.yaml", "--resume", "--workdir", "w"]
    uri = f"sqlite:///{sweep_dir}/other.db"
    (parent,) = sweep_runs(uri, kind="sweep")
    assert parent.info.status == "KILLED"

    res = subprocess.run(resume, cwd=sweep_dir, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming with the journal's settings: 3 points, parallel 1, MLflow experiment " \
           f"'tiny' in {uri}, results to {sweep_dir / 'r.json'}" in res.stdout
    data = json.loads((sweep_dir / "r.json").read_text())
    assert sorted(t["number"] for t in data["trials"]) == [0, 1, 2]
    assert all(t["state"] == "completed" for t in data["trials"])
    (parent,) = sweep_runs(uri, kind="sweep")
    assert parent.info.status == "FINISHED"
    trials = sweep_runs(uri)
    assert sorted(r.info.run_name for r in trials) == [f"trial-{n}-fp32" for n in range(3)]
    assert all(r.info.status == "FINISHED" for r in trials)
    assert not (sweep_dir / "mlflow.db").exists()
    # the summary's MLflow lines name the executable as the resume line does
    (browse,) = [x for x in res.stdout.splitlines() if "browse it: " in x]
    assert shlex.split(browse.split("browse it: ")[1])[0] == resume[0]


def test_resume_refuses_other_stores_and_lower_budgets_and_records_changes(
        sweep_dir, monkeypatch, capsys):
    write_sweep(sweep_dir, trials=5, parallel=2, epochs=1)
    base = ["sweep.yaml", "--workdir", "w"]
    first = cli(*base, "--trials", "2", "--tracking-uri", "sqlite:///other.db", "-q",
                cwd=sweep_dir)
    assert first.returncode == 0, first.stderr
    (line,) = first.stdout.splitlines()  # -q: the summary line only
    assert SUMMARY.match(line) and line.startswith("2 points, 2 trials (2 completed)")
    uri = f"sqlite:///{sweep_dir}/other.db"
    monkeypatch.chdir(sweep_dir)
    for flags, message in [
        (["--tracking-uri", "sqlite:///third.db"],
         f"this sweep logs to {uri} (from its journal); resume without --tracking-uri or "
         "start over with --fresh"),
        (["--no-tracking"], f"this sweep logs to {uri} (from its journal); resume without "
                            "--no-tracking or start over with --fresh"),
        (["--trials", "1"], "--trials 1: this sweep's budget is 2 points (from its journal); "
                            "--trials may only raise it"),
    ]:
        assert main([*base, "--resume", *flags]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.splitlines() == [f"neon-search: error: sweep.yaml: {message}"]
    assert not (sweep_dir / "third.db").exists()

    with open(sweep_dir / "sweep.yaml", "a") as fh:
        fh.write("# a comment: the search is the same\n")
    more = cli(*base, "--resume", "--trials", "3", "--parallel", "1", cwd=sweep_dir)
    assert more.returncode == 0, more.stderr
    assert "--trials 3 raises the budget from 2 points" in more.stdout
    assert "note: sweep.yaml or its model file changed since the journal was written" \
        in more.stdout
    settings = Journal(sweep_dir / "w").settings()
    assert settings["trials"] == 3 and settings["parallel"] == 1
    assert settings["tracking"] == {"uri": uri, "experiment": "tiny"}
    changes = [e["changes"] for e in Journal(sweep_dir / "w").events()
               if e["event"] == "settings"]
    assert [sorted(c) for c in changes] == [["parallel", "source", "trials"]]
    assert changes[0]["trials"] == 3 and changes[0]["parallel"] == 1
    assert len(sweep_runs(uri, kind="sweep")) == 1 and len(sweep_runs(uri)) == 3
    assert not (sweep_dir / "mlflow.db").exists()


def _trial(number, state, epochs, value):
    return Trial(number=number, cell="fp32", point={"x": number}, overrides={}, seed=0,
                 state=state, epochs=epochs, target_epochs=epochs,
                 history=[{"epoch": epochs, "val_misclassification": value}])


def test_leaderboard_ranks_completed_by_objective_and_lists_pruned_apart(sweep_dir):
    sweep = load_sweep(str(write_sweep(sweep_dir)))
    done, pruned = TrialState.COMPLETED, TrialState.PRUNED
    trials = [  # completed with unequal epochs: a tuned training.epochs
        _trial(0, done, 4, 0.30), _trial(1, done, 4, 0.10), _trial(5, done, 2, 0.20),
        _trial(2, pruned, 1, 0.05), _trial(3, pruned, 2, 0.40), _trial(4, pruned, 1, 0.50),
        _trial(6, TrialState.FAILED, 1, 0.01)]
    result = SweepResult(sweep, trials, {t.number: t.point for t in trials}, 1.0, sweep_dir)
    assert [t.number for t in result.ranking()] == [1, 5, 0]
    assert [t.number for t in result.pruned()] == [3, 2, 4]
    assert result.best is result.ranking()[0]

    text = leaderboard(result)
    completed, stopped = text.split("\n\n")
    assert completed.splitlines()[0] == ("3 completed trials (full budget) by "
                                         "val_misclassification (min), cell fp32:")
    assert re.findall(r"trial-\d", completed) == ["trial-1", "trial-5", "trial-0"]
    assert stopped.splitlines()[0].startswith("pruned early (best at their rung): 3 trials")
    assert re.findall(r"trial-\d", stopped) == ["trial-3", "trial-2", "trial-4"]

    data = results_json(result)
    assert [r["name"] for r in data["ranking"]] == ["trial-1-fp32", "trial-5-fp32",
                                                   "trial-0-fp32"]
    assert [r["rank"] for r in data["ranking"]] == [1, 2, 3]
    assert leaderboard(result, top=2).startswith("top 2 of 3 completed trials (full budget)")
    assert [r["name"] for r in data["pruned"]] == ["trial-3-fp32", "trial-2-fp32",
                                                  "trial-4-fp32"]
    assert data["best"]["name"] == "trial-1-fp32" and data["best"]["value"] == 0.10

    only_pruned = SweepResult(sweep, trials[3:6], result.points, 1.0, sweep_dir)
    assert only_pruned.best is None
    assert leaderboard(only_pruned).startswith("no trial completed its full budget")


def test_terminal_header_bar_worker_output_and_leaderboard(sweep_dir):
    """On a terminal: the header and the grid note come first, then the bar; what a worker
    writes meanwhile (here BLAS's warning about a bad NEON_BLAS) lands above the bar, never
    inside it. The tables and -o agree."""
    write_sweep(sweep_dir, strategy="grid", trials=20, parallel=2, epochs=3,
                scheduler="{type: asha, min_epochs: 1, max_epochs: 3, reduction_factor: 3}")
    env = {**os.environ, "NEON_BLAS": "bogus"}
    code, out = run_in_pty([*CLI, "sweep.yaml", "--trials", "4", "--no-tracking", "-o",
                            "r.json"], cwd=sweep_dir, env=env)
    lines = screen(out.decode("utf-8", "replace"))
    assert code == 0, "\n".join(lines)
    assert lines[0].startswith("neon-search: tiny: 4 points x 1 cells, strategy grid")
    assert lines[1] == "grid has 25 points; --trials 4 runs the first 4 (21 skipped)"
    warned = [x for x in lines if "NEON_BLAS='bogus' ignored" in x]
    assert warned and all("/4 [" not in x for x in warned)
    bars = [x for x in lines if re.search(r"\d+/4 \[", x)]
    assert len(bars) == 1 and "100%|" in bars[0], "\n".join(lines)
    assert lines.index(warned[0]) < lines.index(bars[0])

    data = json.loads((sweep_dir / "r.json").read_text())
    text = "\n".join(lines)
    head = " (full budget) by val_misclassification (min), cell fp32:"
    completed = text.split(head)[1].split("\n\n")[0]
    stopped = text.split("pruned early (best at their rung): ")[1].split("\n\n")[0]
    assert re.findall(r"trial-\d+-fp32", completed) == [r["name"] for r in data["ranking"]]
    assert re.findall(r"trial-\d+-fp32", stopped) == [r["name"] for r in data["pruned"]][:5]
    assert data["best"]["name"] == data["ranking"][0]["name"]


def test_dry_run_says_what_trials_leaves_of_a_grid(sweep_dir):
    write_sweep(sweep_dir, strategy="grid", trials=30)
    res = cli("sweep.yaml", "--dry-run", "--trials", "10", cwd=sweep_dir)
    assert res.returncode == 0, res.stderr
    assert "grid has 25 points; --trials 10 runs the first 10 (15 skipped)" in res.stdout
    res = cli("sweep.yaml", "--dry-run", cwd=sweep_dir)
    assert "grid has 25 points; the sweep ends after them (trials: 30)" in res.stdout


def test_help_shows_defaults():
    res = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    for flag, default in [("--parallel N", "(default: the sweep's search.parallel)"),
                          ("--trials N", "(default: the sweep's search.trials)"),
                          ("--workdir DIR", "(default: SWEEP.neon-search/ beside"),
                          ("--tracking-uri URI", "(default: the sweep's tracking.uri, else "
                                                 "sqlite:///mlflow.db"),
                          ("-o RESULTS.json, --output RESULTS.json", "(default: none)"),
                          ("-q, --quiet", "print only the final summary line")]:
        assert default in text.rsplit(flag, 1)[1].split(" -", 1)[0], flag
