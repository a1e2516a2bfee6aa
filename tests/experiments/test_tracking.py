"""MLflow records of a sweep, checked through MLflow's own API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, write_tracked_sweep

from experiments.store import KIND_TAG, client_for
from experiments.views import VIEW_TAG, view_key


def runs_of(client, experiment, kind="trial"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = '{kind}'",
                              max_results=1000)


def test_parent_and_trial_runs(tracked_sweep):
    uri, result, _ = tracked_sweep
    client = client_for(uri)
    (parent,) = runs_of(client, "tracked", "sweep")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["strategy"] == "random" and "asha" in parent.data.tags["scheduler"]
    assert parent.data.tags["best_trial"] == result.best.name
    assert parent.data.params["best.optimizer.learning_rate"] == str(
        result.best.point["optimizer.learning_rate"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "template.yaml", "space.txt", "results.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/learning_curves.png",
            "plots/paired_scatter.png", "plots/parallel_coordinates.png"} <= plots

    children = runs_of(client, "tracked")
    assert len(children) == len(result.trials) == 8
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {t.name for t in result.trials}
    for trial in result.trials:
        run = by_name[trial.name]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["state"] == trial.state.value
        assert run.data.tags["rung"] == str(trial.epochs)
        assert run.info.status == "FINISHED"  # pruned as planned is no failure: see the tag
        if trial.state.value == "pruned":
            assert "stopped early" in run.data.tags["failure_reason"]
        params = run.data.params
        assert params["numerics"] == trial.cell and params["backend"] == "cpu"
        assert params["seed"] == "0" and params["arch"] == str(trial.point["arch"])
        if trial.cell == "fp16":  # which tensors the default recipe keeps in fp32
            assert params["recipe"] == "mixed" and params["storage.weights"] == "fp16"
            assert params["storage.optimizer_state"] == params["storage.master_weights"] \
                == "fp32"
        else:
            assert "recipe" not in params
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == list(range(1, trial.epochs + 1))
        for key in ("val_misclassification", "val_log_loss", "seconds",
                    "time_fprop_ms/affine_0", "overflow/affine_0", "overflow_fraction"):
            assert key in run.data.metrics, key
        assert run.data.metrics["trial_epochs"] == trial.epochs
        model_yaml = client.download_artifacts(run.info.run_id, "model.yaml")
        text = Path(model_yaml).read_text()
        assert f"numerics: {trial.cell}" in text and "!" not in text


def test_failed_trial_has_failed_status_and_reason(tmp_path):
    from experiments.tracking import SweepTracker
    from search.controller import Controller
    from search.executors import build_executor
    from search.sweep import load_sweep

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_tracked_sweep(tmp_path, uri, trials=1, experiment="fails", scheduler="fifo")
    (tmp_path / "model.yaml").write_text((tmp_path / "model.yaml").read_text().replace(
        "momentum: 0.9}", "momentum: 1.5}"))
    sweep = load_sweep(str(path))
    Controller(sweep, tmp_path / "w", build_executor(sweep.executor, 2),
               SweepTracker.from_sweep(sweep)).run()
    runs = runs_of(client_for(uri), "fails")
    assert len(runs) == 2 and all(r.info.status == "FAILED" for r in runs)
    assert all("momentum must be in [0, 1)" in r.data.tags["failure_reason"] for r in runs)
    assert all(r.data.tags["state"] == "failed" for r in runs)


def test_resume_reuses_parent_and_never_duplicates_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_tracked_sweep(tmp_path, uri, trials=2, experiment="resumed", scheduler="fifo")
    cmd = [sys.executable, "-m", "experiments.cli", str(path), "-q", "--workdir",
           str(tmp_path / "w")]
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    proc = subprocess.run([*cmd, "--resume", "--trials", "3"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    client = client_for(uri)
    (parent,) = runs_of(client, "resumed", "sweep")
    exp = client.get_experiment_by_name("resumed")
    assert VIEW_TAG + view_key(parent.info.run_id) in exp.tags
    names = [r.info.run_name for r in runs_of(client, "resumed")]
    assert sorted(names) == sorted(f"trial-{n}-{c}" for n in range(3) for c in ("fp32", "fp16"))
    for run in runs_of(client, "resumed"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(steps) == [1, 2, 3]


def test_kill_9_resume_keeps_one_run_per_trial(tmp_path):
    import time

    from search.journal import Journal

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_tracked_sweep(tmp_path, uri, trials=4, experiment="crash", scheduler="fifo")
    (tmp_path / "model.yaml").write_text((tmp_path / "model.yaml").read_text().replace(
        "epochs: 3", "epochs: 40"))
    cmd = [sys.executable, "-m", "experiments.cli", str(path), "-q", "--workdir",
           str(tmp_path / "w")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        states = [e["trial"]["state"] for e in Journal(tmp_path / "w").events()
                  if e["event"] == "trial"]
        if states.count("completed") >= 1 and "running" in states[-3:]:
            break
        time.sleep(0.2)
    time.sleep(1.5)
    proc.kill()
    proc.wait()
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    client = client_for(uri)
    runs = runs_of(client, "crash")
    names = [r.info.run_name for r in runs]
    assert len(names) == len(set(names)) == 8
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, 41)), run.info.run_name
        assert run.info.status == "FINISHED"


@pytest.mark.timeout(300)
def test_sweep_logs_to_an_mlflow_server_over_http(tmp_path):
    from experiments.cli import start_ui, stop_ui

    port = free_port()
    server = start_ui(f"sqlite:///{tmp_path}/server.db", port)
    try:
        uri = f"http://127.0.0.1:{port}"
        path = write_tracked_sweep(tmp_path / "s", uri, trials=2, experiment="remote",
                                   scheduler="fifo")
        proc = subprocess.run([sys.executable, "-m", "experiments.cli", str(path), "-q"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        client = client_for(uri)
        runs = runs_of(client, "remote")
        assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
        (parent,) = runs_of(client, "remote", "sweep")
        assert "sweep.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    finally:
        stop_ui(server)
    assert server.poll() is not None


def test_neon_cli_mlflow_single_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/single.db"
    proc = subprocess.run([sys.executable, "-m", "experiments.neon_cli",
                           "examples/mlp/digits-small.yaml", "--epochs", "2", "--mlflow",
                           "--tracking-uri", uri, "-q", "--numerics", "bf16", "--recipe", "pure"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    client = client_for(uri)
    (run,) = runs_of(client, "digits-small", "single")
    assert run.info.status == "FINISHED" and run.data.params["numerics"] == "bf16"
    assert run.data.params["recipe"] == "pure"
    assert run.data.params["storage.optimizer_state"] == "bf16"
    assert run.data.params["optimizer.learning_rate"] == "0.1"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_misclassification")]
    assert steps == [1, 2]
    assert "model.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_results_json_artifact_matches_trials(tracked_sweep):
    uri, result, _ = tracked_sweep
    client = client_for(uri)
    (parent,) = runs_of(client, "tracked", "sweep")
    data = json.loads(Path(client.download_artifacts(parent.info.run_id, "results.json"))
                      .read_text())
    assert {t["id"] for t in data["trials"]} == {t.id for t in result.trials}


def test_ui_hint_names_a_neon_search_command_that_runs_from_here():
    from search.cli import command

    cmd = command("neon-search")
    out = subprocess.run([cmd, "ui", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--tracking-uri" in out.stdout


def test_sweep_experiment_opens_on_its_trials_in_the_training_view(tracked_sweep):
    """The experiment is tagged model training; the sweep's saved view lists its trials by
    the objective with columns that exist on them; the summary's link opens that view."""
    from experiments.tracking import RunLogger, SweepTracker
    from experiments.views import runs_page

    uri, result, _ = tracked_sweep
    client = client_for(uri)
    exp = client.get_experiment_by_name("tracked")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent,) = runs_of(client, "tracked", "sweep")
    view = json.loads(exp.tags[VIEW_TAG + view_key(parent.info.run_id)])
    assert view["name"].startswith("tracked sweep ") and isinstance(view["createdAt"], int)
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`val_misclassification`" and state["orderByAsc"]
    runs = client.search_runs([exp.experiment_id], state["searchFilter"],
                              order_by=[f"{state['orderByKey']} ASC"])
    assert sorted(r.info.run_name for r in runs) == sorted(t.name for t in result.trials)
    values = [r.data.metrics["val_misclassification"] for r in runs]
    assert values == sorted(values)
    columns = state["selectedColumns"]
    assert columns[:3] == ["metrics.`val_misclassification`", "tags.`state`", "tags.`rung`"]
    assert {"params.`numerics`", "params.`backend`", "params.`arch`",
            "params.`optimizer.learning_rate`"} <= set(columns)
    assert state["columnOrder"][-len(columns):] == columns
    data = {"metrics": runs[0].data.metrics, "params": runs[0].data.params,
            "tags": runs[0].data.tags}
    for column in columns:
        kind, key = column.split(".", 1)
        assert key.strip("`") in data[kind], column

    tracker = SweepTracker(uri, "tracked")
    tracker.exp_id, tracker.parent = exp.experiment_id, RunLogger(client, parent.info.run_id)
    page = runs_page(exp.experiment_id, view_key(parent.info.run_id))
    assert page == (f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
                    f"&viewStateShareKey=neon-search-{parent.info.run_id}")
    hint = tracker.ui_hint()
    assert f" ui --tracking-uri {uri} --experiment tracked\n" in hint
    assert f"then http://127.0.0.1:5000/{page}\n" in hint
    tracker.uri = "http://mlflow.example:5000/"
    assert f"browse it: http://mlflow.example:5000/{page}\n" in tracker.ui_hint()


def test_experiment_kind_is_set_once_on_existing_experiments(tmp_path):
    from experiments.store import experiment_id

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    bare = client.create_experiment("bare")
    genai = client.create_experiment("genai", tags={"mlflow.experimentKind": "genai_development"})
    assert experiment_id(client, "bare", uri) == bare
    assert experiment_id(client, "genai", uri) == genai
    new = experiment_id(client, "new", uri)
    kinds = {i: client.get_experiment(i).tags.get("mlflow.experimentKind")
             for i in (bare, genai, new)}
    assert kinds == {bare: "custom_model_development", genai: "genai_development",
                     new: "custom_model_development"}
