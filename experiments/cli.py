"""The installed ``neon-search`` command: sweeps with MLflow records, ``compare`` and ``ui``.

    neon-search SWEEP.yaml [...]          (the sweep command: ``search.cli``)
    neon-search compare EXPERIMENT [...]
    neon-search ui [...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from neon.errors import UserError, cli_guard
from search.cli import run_sweep, sweep_parser

__all__ = ["SUBCOMMANDS", "main", "start_ui", "stop_ui", "sweep_tracker"]

SUBCOMMANDS = ("compare", "ui")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in its help, where it has a value."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neon-search compare", formatter_class=_Help,
        description="Compare the trials of one sweep of an experiment: paired fp16-vs-fp32 "
        "(or any compare cell) table with a 95% interval and a Wilcoxon test, or a "
        "per-option table of a parameter such as the architecture.")
    p.add_argument("experiment", help="MLflow experiment name (the sweep's tracking.experiment)")
    p.add_argument("--sweep", default="latest",
                   help="the sweep to read: latest, all (pairs stay within a sweep), a sweep "
                   "name (its latest run) or a parent run id")
    p.add_argument("--tracking-uri",
                   help="MLflow store (default: sqlite:///mlflow.db in this directory)")
    p.add_argument("--by", default="numerics",
                   help="numerics | backend | cell | architecture | a parameter name")
    p.add_argument("--metric", default="val_misclassification", help="metric to compare")
    p.add_argument("--baseline", help="the cell others are compared with (default: fp32)")
    p.add_argument("--within", type=float, default=0.005,
                   help="tolerance for 'as good as the baseline'")
    p.add_argument("--csv", help="also write the table as CSV")
    p.add_argument("--plots", metavar="DIR", help="write the sweep's figures as PNG files")
    return p


def ui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neon-search ui", formatter_class=_Help,
        description="Start the MLflow UI on 127.0.0.1 for a store; Ctrl-C stops it.")
    p.add_argument("--tracking-uri",
                   help="MLflow store (default: sqlite:///mlflow.db in this directory)")
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    p.add_argument("--experiment", help="experiment whose runs page to print")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for /health")
    return p


def run_compare(args: argparse.Namespace) -> int:
    from experiments.comparison import compare, load, trained_rows

    df = load(args.experiment, tracking_uri=args.tracking_uri, sweep=args.sweep, quiet=True)
    result = compare(df, by=args.by, metric=args.metric, baseline=args.baseline,
                     within=args.within)
    print(result)
    if args.csv:
        result.table.to_csv(args.csv)
        print(f"\nwrote {args.csv}")
    if args.plots:
        from experiments.plots import frame_figures, save_figures
        from experiments.store import client_for

        client = client_for(args.tracking_uri, create=False)
        histories = {}
        several = df["sweep"].nunique() > 1
        ranked = trained_rows(df).sort_values(args.metric)
        for _, row in ranked.head(5).iterrows():
            hist = client.get_metric_history(row["run_id"], args.metric)
            hist = sorted(hist, key=lambda m: m.step)
            label = f"{row['run_name']} ({str(row['sweep'])[:8]})" if several else row["run_name"]
            histories[label] = ([m.step for m in hist], [m.value for m in hist])
        cell_col = "cell" if args.by not in df.columns or args.by == "architecture" else args.by
        paths = save_figures(frame_figures(df, args.metric, histories, by=cell_col),
                             args.plots)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_ui(uri: str, port: int, timeout: float = 90.0) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1, lean (one worker, no job runner), in its own process
    group; returns once ``/health`` answers."""
    from experiments.store import artifact_root, client_for

    if not _port_free(port):
        raise UserError(f"port {port} on 127.0.0.1 is in use; choose another with --port")
    client_for(uri)  # create the store before the server migrates it concurrently
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    root = artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root, "--no-serve-artifacts"]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    url = f"http://127.0.0.1:{port}/health"
    while time.time() < deadline:
        if proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            last = err[-1] if err else f"code {proc.returncode}"
            raise UserError(f"mlflow server exited: {last}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_ui(proc)
    raise UserError(f"mlflow server did not answer {url} within {timeout:g} s")


def stop_ui(proc: subprocess.Popen) -> None:
    """Stop the server and every process it started (its whole process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _experiment_url(uri: str, port: int, name: str | None) -> str:
    """The runs page of experiment ``name`` (default: the newest), in MLflow's model-training
    view, on the saved view of its latest sweep when it has one."""
    from experiments.store import client_for
    from experiments.views import latest_view, runs_page

    client = client_for(uri, create=False)
    base = f"http://127.0.0.1:{port}"
    if name:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise UserError(f"no experiment {name!r} in {uri}")
    else:
        exps = [e for e in client.search_experiments(order_by=["creation_time DESC"])
                if e.name != "Default"]
        exp = exps[0] if exps else None
    if exp is None:
        return base
    return f"{base}/{runs_page(exp.experiment_id, latest_view(client, exp))}"


def run_ui(args: argparse.Namespace) -> int:
    from experiments.store import client_for, resolve_uri

    uri = resolve_uri(args.tracking_uri)
    client_for(uri, create=False)  # a missing store: one line and exit 2, nothing written
    proc = start_ui(uri, args.port, args.timeout)
    print(f"MLflow UI for {uri}: {_experiment_url(uri, args.port, args.experiment)}", flush=True)
    print("Ctrl-C stops it.", flush=True)

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        while proc.poll() is None:
            time.sleep(0.5)
        print(f"mlflow server exited with code {proc.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stop_ui(proc)
        print("stopped.", flush=True)
        return 0


def sweep_tracker(sweep: Any, uri: str | None, experiment: str | None) -> Any:
    """The MLflow tracker of a sweep (``search.cli.TrackerFactory``)."""
    from experiments.tracking import SweepTracker

    tracker = SweepTracker.from_sweep(sweep, uri)
    if experiment:
        tracker.experiment = experiment
    return tracker


def _subcommand(argv: Sequence[str]) -> int:
    command, rest = argv[0], list(argv[1:])
    if command == "compare":
        return run_compare(compare_parser().parse_args(rest))
    return run_ui(ui_parser().parse_args(rest))


def main(argv: Sequence[str] | None = None) -> int:
    """``neon-search``: a sweep file, or one of ``SUBCOMMANDS``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `neon-search ... | head` ends quietly

    def body() -> int:
        if argv and argv[0] in SUBCOMMANDS:
            return _subcommand(argv)
        return run_sweep(sweep_parser().parse_args(argv), sweep_tracker)

    return cli_guard("neon-search", body)


if __name__ == "__main__":
    sys.exit(main())
