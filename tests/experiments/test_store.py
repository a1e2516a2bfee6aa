"""Opening MLflow stores: read-only commands write nothing, processes racing on a new store,
no MLflow INFO lines, and ``experiments.compare`` in every import order."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from experiments.store import _head_revision, client_for, store_path
from neon.errors import UserError

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=ENV)


def test_read_only_commands_on_a_missing_store_write_nothing(tmp_path):
    missing = f"no MLflow store at {tmp_path}/mlflow.db; run a sweep first or pass --tracking-uri"
    for args in (["compare", "digits-mlp"], ["ui"],
                 ["compare", "digits-mlp", "--tracking-uri", "sqlite:///sub/dir/other.db"]):
        proc = run(["-m", "experiments.cli", *args], tmp_path)
        assert proc.returncode == 2 and proc.stdout == "", args
        expected = missing.replace(f"{tmp_path}/mlflow.db", f"{tmp_path}/sub/dir/other.db") \
            if "--tracking-uri" in args else missing
        assert proc.stderr.splitlines() == [f"neon-search: error: {expected}"], args
    proc = run(["-c", "import experiments\ntry:\n    experiments.load('digits-mlp')\n"
                "except Exception as exc:\n    print(type(exc).__name__, exc)"], tmp_path)
    assert proc.stdout.strip() == f"UserError {missing}" and proc.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_an_older_store_is_refused_by_readers_and_upgraded_by_writers(tracked_sweep, tmp_path,
                                                                     capsys):
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config

    uri, result, _ = tracked_sweep
    copy = tmp_path / "old.db"
    shutil.copy(store_path(uri), copy)
    copy_uri = f"sqlite:///{copy}"
    command.downgrade(_get_alembic_config(copy_uri), "-1")  # the schema of the MLflow before
    with sqlite3.connect(copy) as con:
        (older,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
    con.close()
    assert older != _head_revision()
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    with pytest.raises(UserError, match=f"has schema {older}; .*mlflow db upgrade"):
        client_for(copy_uri, create=False)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]

    capsys.readouterr()
    client = client_for(copy_uri)  # a writer (a sweep) upgrades it, and says so
    assert capsys.readouterr().err == (f"note: upgraded the MLflow store {copy} from schema "
                                       f"{older} to {_head_revision()}\n")
    exp = client.get_experiment_by_name("tracked")
    assert len(client.search_runs([exp.experiment_id], max_results=1000)) == \
        len(result.trials) + 1
    client_for(copy_uri, create=False)


WORKER = textwrap.dedent("""\
    import json, sys, traceback
    from experiments.store import client_for, experiment_id
    role = sys.argv[1]
    for line in sys.stdin:
        uri = line.strip()
        try:
            if role == "reader":  # neon-search ui / compare / a notebook's experiments.load
                try:
                    client_for(uri, create=False).search_experiments()
                except Exception as exc:
                    if "no MLflow store" not in str(exc):
                        raise
            else:  # a sweep starting
                client = client_for(uri)
                run = client.create_run(experiment_id(client, "race", uri), run_name=role)
                client.log_metric(run.info.run_id, "x", 1.0)
                client.set_terminated(run.info.run_id)
            print("ok", flush=True)
        except Exception:
            print(json.dumps(traceback.format_exc()), flush=True)
    """)


@pytest.mark.timeout(300)
def test_processes_racing_on_a_new_store(tmp_path):
    """Three writers and a reader open the same new store at the same moment, 20 times."""
    (tmp_path / "worker.py").write_text(WORKER)
    roles = ["writer-1", "writer-2", "writer-3", "reader"]
    env = dict(ENV, NEON_SEARCH_CACHE=str(tmp_path / "cache"))  # round 0 runs the migrations
    procs = [subprocess.Popen([sys.executable, "worker.py", role], cwd=tmp_path, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for role in roles]
    failures = []
    start = time.perf_counter()
    try:
        for k in range(20):
            uri = f"sqlite:///{tmp_path}/r{k}/mlflow.db"
            for p in procs:
                p.stdin.write(uri + "\n")
                p.stdin.flush()
            for role, p in zip(roles, procs):
                answer = p.stdout.readline()
                if answer.strip() != "ok":
                    failures.append((k, role, json.loads(answer) if answer else "no answer"))
    finally:
        for p in procs:
            p.stdin.close()
        errs = [p.stderr.read() for p in procs]
        for p in procs:
            p.wait(timeout=60)
    seconds = time.perf_counter() - start
    assert failures == [], failures[0][2]
    assert all(err == "" for err in errs), errs  # no MLflow INFO lines, no warnings
    schemas = set()
    for k in range(20):
        client = client_for(f"sqlite:///{tmp_path}/r{k}/mlflow.db", create=False)
        exp = client.get_experiment_by_name("race")
        assert len(client.search_runs([exp.experiment_id])) == 3
        with sqlite3.connect(tmp_path / f"r{k}" / "mlflow.db") as con:
            schemas.add(tuple(sorted(con.execute("SELECT type, name, sql FROM sqlite_master"))))
        con.close()
    assert len(schemas) == 1  # the migrated store (round 0) and the copies of its schema
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [
        f"mlflow-schema-{_head_revision()}.db"]
    print(f"20 rounds of 4 processes on a new store: {seconds:.1f} s")


@pytest.mark.parametrize("imports", [
    "import experiments",  # the README's order
    "from experiments import compare, load\nimport experiments.comparison, experiments.cli\n"
    "import experiments.plots, experiments.tracking\nimport experiments",
])
def test_experiments_compare_is_the_function_in_every_import_order(tracked_sweep, tmp_path,
                                                                   imports):
    uri, _, _ = tracked_sweep
    code = f"""{imports}
df = experiments.load("tracked", tracking_uri={uri!r})
result = experiments.compare(df, by="numerics")
print(result.summary["fp16: pairs"], len(df))
"""
    proc = run(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["4", "8"]
    assert proc.stderr.startswith("experiments.load: sweep 'tracked' (run ")
