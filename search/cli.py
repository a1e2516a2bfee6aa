"""``neon-search``: run a sweep, compare its runs, open the MLflow UI.

    neon-search SWEEP.yaml [--resume] [--dry-run] [--parallel N] [--trials N] [--workdir DIR]
    neon-search compare EXPERIMENT [--by numerics|PARAM] [--metric M] [--csv F] [--plots DIR]
    neon-search ui [--tracking-uri URI] [--port 5000]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neon.errors import UserError, cli_guard

__all__ = ["main"]

SUBCOMMANDS = ("compare", "ui")


def sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neon-search",
        description="Search hyperparameters of a neon model template. Other commands: "
        "'neon-search compare EXPERIMENT' and 'neon-search ui' (see their --help).",
    )
    p.add_argument("sweep", help="sweep YAML file (see examples/sweeps/)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep from its journal: finished trials are "
                   "kept, interrupted ones re-run")
    p.add_argument("--fresh", action="store_true",
                   help="discard a previous run's journal and checkpoints and start over")
    p.add_argument("--dry-run", action="store_true",
                   help="print the search space and the first trials without training")
    p.add_argument("--parallel", type=int, help="trials at once (overrides search.parallel)")
    p.add_argument("--trials", type=int, help="points to evaluate (overrides search.trials)")
    p.add_argument("--workdir", help="journal, checkpoints and tracebacks "
                   "(default: SWEEP.neon-search/ beside the sweep file)")
    p.add_argument("-o", "--output", metavar="RESULTS.json",
                   help="write every trial (id, point, cell, state, metrics, epochs, seconds)")
    p.add_argument("--tracking-uri", help="MLflow store (overrides tracking.uri)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def describe_spec(spec: Any) -> str:
    """``grid (grid_points=3)`` for ``{type: grid, grid_points: 3}``."""
    if isinstance(spec, dict):
        options = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "type")
        return f"{spec.get('type')}" + (f" ({options})" if options else "")
    return str(spec)


def default_workdir(sweep: Any) -> Path:
    if sweep.path is not None:
        return sweep.path.parent / f"{sweep.path.stem}.neon-search"
    return Path.cwd() / f"{sweep.name}.neon-search"


def make_tracker(sweep: Any, args: argparse.Namespace) -> Any:
    """The MLflow tracker when tracking is on (default), else a no-op one."""
    from search.tracking import Tracker

    if args.no_tracking or sweep.tracking.get("enabled") is False:
        return Tracker()
    try:
        from experiments.tracking import SweepTracker
    except ImportError:
        return Tracker()
    return SweepTracker.from_sweep(sweep, args.tracking_uri)


def dry_run(sweep: Any, trials: int) -> int:
    import yaml

    from search.strategies import build_strategy

    print(f"sweep {sweep.name}: {len(sweep.space)} parameters, {trials} points x "
          f"{len(sweep.cells)} cells ({', '.join(c.name for c in sweep.cells)}), strategy "
          f"{describe_spec(sweep.search.strategy)}, objective {sweep.objective.metric} "
          f"({sweep.objective.mode}, cell {sweep.objective_cell})")
    print()
    print(sweep.space.table() if len(sweep.space) else "(no tunable parameters)")
    strategy = build_strategy(sweep.search.strategy, sweep.space, seed=sweep.search.seed)
    points = strategy.ask(min(3, trials))
    print()
    for i, point in enumerate(points):
        for cell in sweep.cells:
            over = " ".join(f"{k}={v}" for k, v in cell.overrides.items())
            print(f"trial-{i}-{cell.name}: {point}" + (f"  [{over}]" if over else ""))
    if points:
        print("\nexpanded model of trial-0:")
        print(yaml.safe_dump(sweep.space.expand(points[0]), sort_keys=False).rstrip())
    return 0


class Progress:
    """tqdm bar: points done / total, running, failed, best so far, ETA."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="point", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, controller: Any) -> None:
        if self.bar is None:
            return
        c = controller.counts()
        self.bar.total = c["total"]
        self.bar.n = c["done"]
        best = "-" if c["best"] is None else f"{c['best']:.4g}"
        self.bar.set_postfix_str(f"running {c['running']}, failed {c['failed']}, best {best}",
                                 refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sweep(args: argparse.Namespace) -> int:
    from search.controller import Controller, SweepInterrupted
    from search.executors import build_executor
    from search.report import leaderboard, paired_table, summary_line, write_results
    from search.sweep import load_sweep

    sweep = load_sweep(args.sweep)
    if args.parallel is not None:
        if args.parallel < 1:
            raise UserError("--parallel must be >= 1")
        sweep.search.parallel = args.parallel
    trials = args.trials if args.trials is not None else sweep.search.trials
    if trials < 1:
        raise UserError("--trials must be >= 1")
    if args.dry_run:
        return dry_run(sweep, trials)
    workdir = Path(args.workdir) if args.workdir else default_workdir(sweep)
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    executor = build_executor(sweep.executor, sweep.search.parallel)
    tracker = make_tracker(sweep, args)
    progress = Progress(trials, enabled=not args.quiet and sys.stderr.isatty())
    controller = Controller(sweep, workdir, executor, tracker, resume=args.resume,
                            on_change=progress, trials=trials)
    print(f"neon-search: {sweep.name}: {trials} points x {len(sweep.cells)} cells, "
          f"strategy {describe_spec(sweep.search.strategy)}, {controller.scheduler.describe()}, "
          f"{executor.describe()}; journal {workdir}", flush=True)
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        result = controller.run()
    except SweepInterrupted as stop:
        progress.close()
        print(f"\ninterrupted: {summary_line(stop.result)}", file=sys.stderr)
        print(f"resume with: neon-search {args.sweep} --resume"
              + (f" --workdir {args.workdir}" if args.workdir else ""), file=sys.stderr)
        if args.output:
            write_results(stop.result, args.output)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress.close()
    print(summary_line(result))
    print()
    print(leaderboard(result))
    paired = paired_table(result)
    if paired:
        print()
        print(paired)
    failed = [t for t in result.trials if t.error and not t.state.ok]
    if failed:
        print()
        print(f"{len(failed)} trials did not finish:")
        for t in failed[:10]:
            print(f"  {t.name}: {t.state.value}: {t.error}")
    hint = getattr(tracker, "ui_hint", None)
    if hint:
        print()
        print(hint())
    if args.output:
        write_results(result, args.output)
    return 0


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `neon-search ... | head` ends quietly
    def body() -> int:
        if argv and argv[0] in SUBCOMMANDS:
            from experiments import cli as experiments_cli

            return experiments_cli.main(argv)
        return run_sweep(sweep_parser().parse_args(argv))

    return cli_guard("neon-search", body)

if __name__ == "__main__":
    sys.exit(main())
