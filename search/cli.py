"""The sweep command of ``neon-search``: its parser, the settings a run uses, the progress
bar and the report.

    neon-search SWEEP.yaml [--resume | --fresh] [--dry-run] [--parallel N] [--trials N]
                [--workdir DIR] [-o RESULTS.json] [--tracking-uri URI | --no-tracking] [-q]

The installed ``neon-search`` (``experiments.cli.main``) runs ``run_sweep`` with the MLflow
tracker and adds the ``compare`` and ``ui`` commands; this layer knows trackers only through
``search.tracking.Tracker``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neon.errors import UserError
from search.tracking import Tracker

TrackerFactory = Callable[[Any, str | None, str | None], Tracker]
"""``factory(sweep, uri, experiment)``: the tracker logging to ``uri`` and ``experiment``
(None: the sweep file's)."""

__all__ = ["TrackerFactory", "command", "run_sweep", "sweep_parser"]


def sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neon-search",
        description="Search hyperparameters of a neon model template. Other commands: "
        "'neon-search compare EXPERIMENT' and 'neon-search ui' (see their --help).",
    )
    p.add_argument("sweep", help="sweep YAML file (see examples/sweeps/)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue an interrupted (or finished) sweep from its journal with "
                       "the settings it was started with (trials, parallel, MLflow store and "
                       "experiment, -o file): finished trials are kept, interrupted ones "
                       "re-run. --trials may raise the budget, --parallel and -o may change")
    start.add_argument("--fresh", action="store_true",
                       help="discard a previous run's journal and checkpoints and start over")
    p.add_argument("--dry-run", action="store_true",
                   help="print the search space, the first 3 points and the first one's "
                   "model, without training")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="trials at once (default: the sweep's search.parallel)")
    p.add_argument("--trials", type=int, metavar="N",
                   help="points to evaluate, each in every compare cell (default: the sweep's "
                   "search.trials)")
    p.add_argument("--workdir", metavar="DIR", help="journal, checkpoints and tracebacks "
                   "(default: SWEEP.neon-search/ beside the sweep file)")
    p.add_argument("-o", "--output", metavar="RESULTS.json",
                   help="also write every trial (id, point, cell, state, metrics, epochs, "
                   "seconds) and the leaderboard's ranking as JSON (default: none)")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow store (default: the sweep's tracking.uri, else "
                   "sqlite:///mlflow.db in the current directory)")
    p.add_argument("--no-tracking", action="store_true",
                   help="do not log to MLflow (default: log, unless the sweep's tracking "
                   "has enabled: false)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the final summary line (errors still go to stderr)")
    return p


def command(name: str = "neon-search") -> str:
    """``name`` as the user can type it here, shell-quoted: bare when it is on PATH, else the
    script of this environment (``make demo`` runs from ``.venv`` without activating it)."""
    script = Path(sys.executable).parent / name
    if shutil.which(name) == str(script) or not script.exists():
        return name
    rel = os.path.relpath(script)
    return shlex.quote(str(script) if rel.startswith("..") else rel)


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this sweep, runnable as printed from here."""
    words = [command(), shlex.quote(args.sweep), "--resume"]
    if args.workdir:
        words += ["--workdir", shlex.quote(args.workdir)]
    return " ".join(words)


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


def make_tracker(sweep: Any, factory: TrackerFactory | None, uri: str | None = None,
                 experiment: str | None = None, enabled: bool = True) -> Tracker:
    """The tracker for ``uri`` and ``experiment`` (defaults: the sweep file's), or a no-op
    one when not ``enabled`` or without a factory."""
    if not enabled or factory is None:
        return Tracker()
    return factory(sweep, uri, experiment)


def _store(tracker: Any) -> dict[str, str] | None:
    """The journal's record of where a tracker logs (None: nowhere)."""
    uri = getattr(tracker, "uri", None)
    return {"uri": uri, "experiment": tracker.experiment} if uri else None


def settle(sweep: Any, args: argparse.Namespace, workdir: Path,
           recorded: dict[str, Any] | None,
           factory: TrackerFactory | None = None) -> tuple[dict[str, Any], Any]:
    """The settings this run uses and its tracker. A new sweep: the flags, else the sweep
    file's. A resumed one (``recorded``: its journal's settings): those, where a flag may
    change only what can change (--trials raises the budget, --parallel, -o); a flag that
    differs otherwise is refused."""
    wanted = make_tracker(sweep, factory, args.tracking_uri, enabled=not args.no_tracking
                          and sweep.tracking.get("enabled") is not False)
    settings: dict[str, Any] = {
        "trials": args.trials or sweep.search.trials,
        "parallel": args.parallel or sweep.search.parallel,
        "tracking": _store(wanted),
        "output": str(Path(args.output).resolve()) if args.output else None,
        "workdir": str(workdir.resolve()),
        "sweep_file": str(sweep.path.resolve()) if sweep.path else None,
    }
    if recorded is None:
        return settings, wanted
    tracker = wanted
    if "tracking" in recorded:
        store = recorded["tracking"]
        fresh = "or start over with --fresh"
        if store is None and args.tracking_uri:
            raise UserError("this sweep does not log to MLflow (from its journal); resume "
                            f"without --tracking-uri {fresh}", file=args.sweep)
        if store is not None and args.no_tracking:
            raise UserError(f"this sweep logs to {store['uri']} (from its journal); resume "
                            f"without --no-tracking {fresh}", file=args.sweep)
        asked = (settings["tracking"] or {}).get("uri")
        if store is not None and args.tracking_uri and asked != store["uri"]:
            raise UserError(f"this sweep logs to {store['uri']} (from its journal); resume "
                            f"without --tracking-uri {fresh}", file=args.sweep)
        settings["tracking"] = store
        tracker = make_tracker(sweep, factory, store["uri"], store["experiment"]) if store \
            else make_tracker(sweep, factory, enabled=False)
    if "trials" in recorded:
        if args.trials is None:
            settings["trials"] = recorded["trials"]
        elif args.trials < recorded["trials"]:
            raise UserError(f"--trials {args.trials}: this sweep's budget is "
                            f"{recorded['trials']} points (from its journal); --trials may "
                            "only raise it", file=args.sweep)
    for key, flag in (("parallel", args.parallel), ("output", args.output)):
        if flag is None and key in recorded:
            settings[key] = recorded[key]
    return settings, tracker


def grid_note(strategy: Any, trials: int, flag: bool) -> str | None:
    """What a points budget leaves of a grid: '... runs the first 10 (26 skipped)'."""
    from search.strategies.grid import GridSearch

    if not isinstance(strategy, GridSearch):
        return None
    budget = f"--trials {trials}" if flag else f"trials: {trials}"
    if trials < strategy.size:
        return (f"grid has {strategy.size} points; {budget} runs the first {trials} "
                f"({strategy.size - trials} skipped)")
    if trials > strategy.size:
        return f"grid has {strategy.size} points; the sweep ends after them ({budget})"
    return None


def dry_run(sweep: Any, trials: int, trials_flag: bool = False) -> int:
    import yaml

    from search.strategies import build_strategy

    strategy = build_strategy(sweep.search.strategy, sweep.space, seed=sweep.search.seed)
    print(f"sweep {sweep.name}: {len(sweep.space)} parameters, {trials} points x "
          f"{len(sweep.cells)} cells ({', '.join(c.name for c in sweep.cells)}), strategy "
          f"{describe_spec(sweep.search.strategy)}, objective {sweep.objective.metric} "
          f"({sweep.objective.mode}, cell {sweep.objective_cell})")
    note = grid_note(strategy, trials, trials_flag)
    if note:
        print(note)
    print()
    print(sweep.space.table() if len(sweep.space) else "(no tunable parameters)")
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
    """The tqdm bar (points done / total, running, failed, best so far, ETA) on stderr.

    While the bar is drawn it owns the terminal: whatever else this process or the workers it
    starts (they inherit its stdout and stderr) write to the terminal goes through a pipe and
    is printed above the bar with ``tqdm.write``, so no line lands inside the bar."""

    _END = b"\0neon-search: end of bar\0"

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.bar: Any = None
        self._saved: dict[int, int] = {}
        self._write_end = -1
        self._drained = threading.Event()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        from tqdm import tqdm

        sys.stdout.flush()
        sys.stderr.flush()
        self._term = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8",
                               errors="replace")
        read_end, self._write_end = os.pipe()
        for fd in (1, 2):
            if os.isatty(fd):
                self._saved[fd] = os.dup(fd)
                os.dup2(self._write_end, fd)
        threading.Thread(target=self._forward, args=(read_end,), name="terminal",
                         daemon=True).start()
        self.bar = tqdm(total=self.total, unit="point", dynamic_ncols=True, file=self._term)

    def _forward(self, read_end: int) -> None:
        """Copy the pipe to the terminal line by line: above the bar while it is drawn, plain
        after it (from workers still alive then) until every writer has closed the pipe."""
        buffer = b""
        while chunk := os.read(read_end, 65536):
            buffer += chunk
            end = -1 if self._drained.is_set() else buffer.find(self._END)
            if end >= 0:
                if buffer[:end]:
                    self._emit(buffer[:end])
                buffer = buffer[end + len(self._END):]
                self._drained.set()
            lines, newline, rest = buffer.rpartition(b"\n")
            if newline:
                self._emit(lines)
                buffer = rest
        os.close(read_end)

    def _emit(self, data: bytes) -> None:
        """One or more lines to the terminal; a failing terminal must not stop the reading
        (writers would block on a full pipe)."""
        from tqdm import tqdm

        text = data.decode("utf-8", "replace")
        with contextlib.suppress(OSError, ValueError):
            if self._drained.is_set():
                self._term.write(text + "\n")
            else:
                tqdm.write(text, file=self._term)

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
        """Give the terminal back (after printing what was written to it up to now), then
        close the bar."""
        if self.bar is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = {}
        os.write(self._write_end, self._END)
        os.close(self._write_end)
        self._drained.wait(timeout=5.0)
        self.bar.close()
        self.bar = None


def run_sweep(args: argparse.Namespace, tracker_factory: TrackerFactory | None = None) -> int:
    """Run (or dry-run, or resume) the sweep of ``args``; the exit code."""
    from search.controller import Controller, SweepInterrupted
    from search.executors import build_executor
    from search.journal import Journal
    from search.report import summary_line, write_results
    from search.sweep import load_sweep

    sweep = load_sweep(args.sweep)
    for flag in ("parallel", "trials"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be >= 1")
    if args.dry_run:
        return dry_run(sweep, args.trials or sweep.search.trials, args.trials is not None)
    workdir = Path(args.workdir) if args.workdir else default_workdir(sweep)
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    recorded = Journal(workdir).settings() if args.resume else None
    settings, tracker = settle(sweep, args, workdir, recorded, tracker_factory)
    sweep.search.parallel = settings["parallel"]
    if args.quiet:
        from neon.backends.kernel_cache import announce_as

        announce_as(None)
    executor = build_executor(sweep.executor, sweep.search.parallel)
    controller = Controller(sweep, workdir, executor, tracker, resume=args.resume,
                            trials=settings["trials"], settings=settings)
    trials = controller.budget
    if not args.quiet:
        print(f"neon-search: {sweep.name}: {trials} points x {len(sweep.cells)} cells, "
              f"strategy {describe_spec(sweep.search.strategy)}, "
              f"{controller.scheduler.describe()}, {executor.describe()}; journal {workdir}")
        for line in _notes(controller, args, recorded):
            print(line)
        sys.stdout.flush()
    output = settings["output"]
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with Progress(controller.points_planned,
                      enabled=not args.quiet and sys.stderr.isatty()) as progress:
            controller.on_change = progress
            result = controller.run()
    except SweepInterrupted as stop:
        print(f"\ninterrupted: {summary_line(stop.result)}", file=sys.stderr)
        print(f"resume with: {resume_command(args)}", file=sys.stderr)
        if output:
            write_results(stop.result, output)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary_line(result))
    if not args.quiet:
        print()
        print(details(result, tracker))
    if output:
        write_results(result, output)
        if not args.quiet:
            print(f"\nwrote {output}")
    return 0


def details(result: Any, tracker: Any) -> str:
    """What follows the summary line: leaderboard, paired table, failures, MLflow lines."""
    from search.report import leaderboard, paired_table

    parts = [leaderboard(result), paired_table(result)]
    failed = [t for t in result.trials if t.error and not t.state.ok]
    if failed:
        parts.append(f"{len(failed)} trials did not finish:\n" + "\n".join(
            f"  {t.name}: {t.state.value}: {t.error}" for t in failed[:10]))
    hint = getattr(tracker, "ui_hint", None)
    if hint:
        parts.append(hint())
    return "\n\n".join(p for p in parts if p)


def _notes(controller: Any, args: argparse.Namespace,
           recorded: dict[str, Any] | None) -> list[str]:
    """Lines under the header: what the budget leaves of a grid; on resume, the journal's
    settings in use, a raised budget, an edited sweep file."""
    notes = []
    grid = grid_note(controller.strategy, controller.budget, args.trials is not None)
    if grid:
        notes.append(grid)
    if recorded:
        s = controller.settings
        store = s.get("tracking")
        where = f"MLflow experiment '{store['experiment']}' in {store['uri']}" if store \
            else "no MLflow tracking"
        notes.append(f"resuming with the journal's settings: {s['trials']} points, "
                     f"parallel {s['parallel']}, {where}"
                     + (f", results to {s['output']}" if s.get("output") else ""))
        if recorded.get("trials") and recorded["trials"] < s["trials"]:
            notes.append(f"--trials {s['trials']} raises the budget from "
                         f"{recorded['trials']} points")
        if recorded.get("source") and recorded["source"] != s["source"]:
            notes.append(f"note: {args.sweep} or its model file changed since the journal was "
                         "written; the search is the same, so the journal's settings hold")
    return notes


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
