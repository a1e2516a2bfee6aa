"""One sweep is the unit of comparison: two sweeps in one experiment, through the CLI and
``experiments.load``; the architecture parameter; compare's help and metric errors."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import experiments
from experiments.comparison import compare
from experiments.store import KIND_TAG, client_for, store_path
from experiments.tracking import architecture_params
from neon.errors import UserError, cli_guard
from search.space import SearchSpace


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.cli", "compare", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def compare_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``neon-search compare ARGS`` in this process (as ``experiments.cli.main`` runs it)."""
    from experiments.cli import main

    capsys.readouterr()
    code = cli_guard("neon-search", lambda: main(["compare", *args]))
    out = capsys.readouterr()
    return code, out.out, out.err


def values_of(df: pd.DataFrame, sweep: str) -> dict[tuple[int, str], float]:
    rows = df[df["sweep"] == sweep]
    return {(int(r.number), r.cell): r.val_misclassification for r in rows.itertuples()}


def test_compare_reads_the_latest_sweep_and_says_so(two_sweeps, capsys):
    uri, (first, latest), sweep = two_sweeps
    # store creation and migration print no MLflow INFO lines
    assert " INFO " not in sweep.stderr and "alembic" not in sweep.stderr, sweep.stderr
    db = store_path(uri)
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(db.parent.iterdir()))
    proc = cli("two", "--tracking-uri", uri)
    assert proc.returncode == 0, proc.stderr
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(db.parent.iterdir())) == before
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"sweep 'two' (run {latest[:8]}, started ")
    assert "4 trial runs; 1 other sweep in the experiment" in lines[0]
    assert "fp16: pairs: 2" in lines and "fp16: incomplete pairs: 0" in lines
    assert proc.stderr == ""

    df = experiments.load("two", tracking_uri=uri, quiet=True)
    assert len(df) == 4 and set(df["sweep"]) == {latest}
    assert df.attrs["sweep_note"] == lines[0]
    table = compare(df).table
    assert list(table.index) == [0, 1]
    expected = values_of(df, latest)
    assert table["fp16"].tolist() == [expected[(n, "fp16")] for n in (0, 1)]

    older = experiments.load("two", tracking_uri=uri, sweep=first, quiet=True)
    assert set(older["sweep"]) == {first} and len(older) == 4
    by_prefix = experiments.load("two", tracking_uri=uri, sweep=first[:8], quiet=True)
    assert by_prefix["run_id"].tolist() == older["run_id"].tolist()
    code, out, err = compare_cli(capsys, "two", "--tracking-uri", uri, "--sweep", "two",
                                 "--by", "arch")
    assert code == 0, err
    assert f"(run {latest[:8]}," in out and "the latest of 2 sweeps named 'two'" in out
    # --by PARAM counts the trials of the sweep read, not of the experiment
    rows = [line.split() for line in out.splitlines()]
    assert sum(int(r[2]) for r in rows if r[:1] in (["0"], ["1"]) and len(r) > 2) == 4


def test_sweep_all_pairs_within_each_sweep(two_sweeps, tmp_path, capsys):
    uri, (first, latest), _ = two_sweeps
    df = experiments.load("two", tracking_uri=uri, sweep="all", quiet=True)
    assert len(df) == 8 and df["sweep"].drop_duplicates().tolist() == [first, latest]
    result = compare(df)
    table = result.table
    assert table.index.names == ["sweep", "number"]
    assert len(table) == 4 and result.summary["fp16: pairs"] == 4
    for sweep in (first, latest):
        expected = values_of(df, sweep)
        for n in (0, 1):
            row = table.loc[(sweep[:8], n)]
            assert row["fp32"] == expected[(n, "fp32")]
            assert row["fp16"] == expected[(n, "fp16")]
            assert row["delta fp16"] == pytest.approx(expected[(n, "fp16")]
                                                      - expected[(n, "fp32")])

    code, out, err = compare_cli(capsys, "two", "--tracking-uri", uri, "--sweep", "all",
                                 "--plots", str(tmp_path))
    assert code == 0, err
    assert out.startswith("all 2 sweeps of experiment 'two': 8 trial runs")
    assert "fp16: pairs: 4" in out
    assert (tmp_path / "paired_scatter.png").read_bytes()[:4] == b"\x89PNG"


def test_an_incomplete_pair_is_shown_and_counted(two_sweeps, tmp_path, capsys):
    uri, (_, latest), _ = two_sweeps
    copy = tmp_path / "copy.db"
    shutil.copy(store_path(uri), copy)
    copy_uri = f"sqlite:///{copy}"
    client = client_for(copy_uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("two").experiment_id],
        f"tags.`{KIND_TAG}` = 'trial' and tags.`mlflow.parentRunId` = '{latest}' "
        "and tags.number = '0' and tags.cell = 'fp32'")
    client.delete_run(run.info.run_id)
    code, out, err = compare_cli(capsys, "two", "--tracking-uri", copy_uri)
    assert code == 0, err
    lines = out.splitlines()
    row = next(line.split() for line in lines if line.lstrip().startswith("0 "))
    assert row[1] == "-" and row[3] == "-" and row[-2:] == ["fp32", "missing"]
    assert "fp16: pairs: 1" in lines and "fp16: incomplete pairs: 1" in lines


def test_unknown_sweep_lists_the_sweeps(two_sweeps, capsys):
    uri, (first, latest), _ = two_sweeps
    code, out, err = compare_cli(capsys, "two", "--tracking-uri", uri, "--sweep", "nope")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("neon-search: error: no sweep 'nope' in experiment 'two'; sweeps")
    assert line.index(latest[:8]) < line.index(first[:8])  # newest first


def test_wrong_metric_lists_the_metrics(two_sweeps, capsys):
    uri, _, _ = two_sweeps
    code, out, err = compare_cli(capsys, "two", "--tracking-uri", uri, "--metric", "val_los")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("neon-search: error: no metric 'val_los' (did you mean "
                           "'val_log_loss'?); metrics: val_log_loss, val_misclassification, ")
    assert "per-layer ones" in line


def test_compare_help_shows_defaults():
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "compare", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "95% interval" in text and "%%" not in text
    for default in ("(default: latest)", "(default: numerics)",
                    "(default: val_misclassification)", "(default: 0.005)",
                    "(default: sqlite:///mlflow.db in this directory)"):
        assert default in text, default


def test_by_architecture_uses_the_layer_choice(two_sweeps):
    uri, _, _ = two_sweeps
    df = experiments.load("two", tracking_uri=uri, quiet=True)
    assert df.attrs["architecture"] == ["arch"]
    result = compare(df, by="architecture")
    assert result.by == "arch" and "option index" in result.summary["arch"]
    assert int(result.table["trials"].sum()) == 4
    # without it: the widths inside the layers are no architecture
    wide = df.drop(columns="arch").rename(columns={"arch/0.0.nout": "model.layers.0.nout"})
    wide.attrs.update(architecture=[], params=["model.layers.0.nout", "optimizer.learning_rate"])
    with pytest.raises(UserError, match="no architecture parameter") as err:
        compare(wide, by="architecture")
    assert "model.layers.0.nout, optimizer.learning_rate" in str(err.value)


def test_architecture_params_of_templates():
    conv = SearchSpace.from_yaml("examples/convnet/digits-conv-arch-template.yaml")
    assert architecture_params(conv) == ["arch"]
    assert architecture_params(SearchSpace.from_yaml("examples/sweeps/digits-mlp-template.yaml")
                               ) == []
    unnamed = SearchSpace.from_yaml(
        "model:\n  layers: !choice\n    - [{type: affine, nout: 10}]\n"
        "    - [{type: affine, nout: !randint [8, 16]}, {type: affine, nout: 10}]\n"
        "steps: !choice [[1, 2], [3]]\n"
        "other: !choice\n  name: body\n  options: [[{type: conv, nfilters: 4}], [{type: pool}]]\n")
    assert architecture_params(unnamed) == ["model.layers", "body"]
