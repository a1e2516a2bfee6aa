"""``neon MODEL.yaml``: train one model from its YAML file and report per-epoch metrics."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from neon.backends.numerics import FORMATS, RECIPES
from neon.callbacks import Callback
from neon.errors import TrainingDiverged, cli_guard
from neon.text import format_table, format_value

__all__ = ["RunRecorder", "build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neon",
        description="Train one model described by a YAML file (see examples/ANNOTATED_EXAMPLE"
        ".yaml). Command-line flags override the file's values.",
    )
    p.add_argument("model", help="model YAML file")
    p.add_argument("--backend", choices=["cpu", "gpu"], help="compute backend")
    p.add_argument("--numerics", choices=list(FORMATS),
                   help="storage format: fp32, fp16, bf16 (fp32 arithmetic) or fp64")
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="which tensors a 16-bit run stores in 16 bits: mixed (default: "
                   "optimizer state and master weights in fp32) or pure (everything)")
    p.add_argument("--stochastic-rounding", action="store_true", default=None,
                   help="round stored fp16/bf16 values stochastically instead of to nearest")
    p.add_argument("--epochs", type=int, help="number of epochs")
    p.add_argument("--seed", type=int, help="seed for initialization, dropout and data order")
    p.add_argument("--dataset", help="use this dataset instead of the file's (e.g. synthetic)")
    p.add_argument("--save", metavar="OUT.npz", help="save weights, optimizer state and config")
    p.add_argument("--diagnostics", action="store_true",
                   help="measure per-layer time and numeric ranges (overflow/underflow)")
    p.add_argument("-o", "--output", metavar="RESULT.json",
                   help="write final metrics, per-epoch history and timing as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the final line")
    return p


class EpochPrinter(Callback):
    """Prints one table row per epoch as training goes."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.widths = [max(len(c), 8) for c in columns]

    def on_train_begin(self, model: Any, epochs: int, initial_epoch: int) -> None:
        print("  ".join(c.rjust(w) for c, w in zip(self.columns, self.widths)), flush=True)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        print("  ".join(format_value(metrics.get(c, "")).rjust(w)
                        for c, w in zip(self.columns, self.widths)), flush=True)


def _diagnostics_report(record: dict[str, Any], storage: dict[str, str]) -> str:
    """The last epoch's diagnostics as tables; ``storage`` is the format of each tensor
    class."""
    diag = record.get("diagnostics") or {}
    out = []
    timing = diag.get("timing") or {}
    if timing:
        rows = [{"layer": k, **v} for k, v in timing.items()]
        cols = ["layer", "fprop_ms", "bprop_ms", "update_ms"]
        out.append("time per minibatch (last epoch):\n" + format_table(rows, cols))
    ranges = diag.get("ranges") or {}
    flow = diag.get("flow") or {}
    if ranges:
        rows = []
        for layer, tensors in ranges.items():
            for tensor, s in tensors.items():
                rows.append({"layer": layer, "tensor": tensor, **s})
        out.append("numeric ranges (sampled minibatches):\n"
                   + format_table(rows, ["layer", "tensor", "min", "max", "mean_abs",
                                         "nonfinite"]))
    if flow:
        rows = [{"scope": k, **v} for k, v in flow.items()]
        out.append("fraction of stored values that overflowed / underflowed:\n"
                   + format_table(rows, ["scope", "overflow", "underflow"]))
    classes = diag.get("flow_classes") or {}
    if classes:
        order = [c for c in storage if c in classes]  # numerics.TENSOR_CLASSES' order
        rows = [{"tensor class": k, "format": storage[k], **classes[k]} for k in order]
        out.append("by tensor class:\n" + format_table(
            rows, ["tensor class", "format", "overflow", "underflow"]))
    return "\n\n".join(out)


class RunRecorder(Protocol):
    """Where a run is recorded besides the terminal (the MLflow one lives in the top layer)."""

    def callback(self) -> Callback:
        """The callback that records each epoch."""

    def finish(self, state: str, reason: str | None) -> None:
        """The run ended: ``completed`` or ``failed`` with its reason."""


Recorder = Callable[[Any, argparse.Namespace], RunRecorder | None]


def run(args: argparse.Namespace, recorder: Recorder | None = None) -> int:
    """Train the model of ``args.model``; ``recorder(experiment, args)`` may return a
    ``RunRecorder`` for the run."""
    from neon.config import apply_overrides, build_experiment, load_config

    cfg = load_config(args.model)
    cfg = apply_overrides(
        cfg, backend=args.backend, numerics=args.numerics, recipe=args.recipe,
        stochastic_rounding=args.stochastic_rounding, epochs=args.epochs, seed=args.seed,
        dataset=args.dataset,
    )
    if args.diagnostics:
        cfg["diagnostics"] = {"timing": True, "ranges": True}
    if args.quiet:
        from neon.backends.kernel_cache import announce_as

        announce_as(None)
    exp = build_experiment(cfg)
    be = exp.be
    if not args.quiet:
        sr = " stochastic-rounding" if be.stochastic_rounding else ""
        recipe = f" recipe={be.storage.summary()}" if be.storage.emulated else ""
        print(f"neon: {args.model}: backend={be.name} numerics={be.numerics}{recipe}{sr} "
              f"seed={exp.seed} dataset={exp.data.name} ({exp.data.train.ndata} train, "
              f"{exp.data.valid.ndata if exp.data.valid else 0} valid) "
              f"params={exp.model.nparams:,}", flush=True)
    columns = ["epoch", "train_loss", *[f"val_{m.name}" for m in exp.metrics], "seconds"]
    callbacks: list[Callback] = [] if args.quiet else [EpochPrinter(columns)]
    tracker = recorder(exp, args) if recorder is not None else None
    if tracker is not None:
        callbacks.append(tracker.callback())
    start = time.perf_counter()
    try:
        history = exp.run(callbacks=callbacks)
    except TrainingDiverged as exc:
        if tracker is not None:
            tracker.finish("failed", str(exc))
        print(f"neon: {args.model}: training {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    final = {k: v for k, v in history.final.items()
             if k.startswith("val_") or k == "train_loss"}
    if args.save:
        exp.model.save(args.save, exp.optimizer)
    if tracker is not None:
        tracker.finish("completed", None)
    print("final: " + " ".join(f"{k}={format_value(v)}" for k, v in final.items())
          + f" ({total:.1f} s)" + (f"; saved {args.save}" if args.save else ""))
    if args.diagnostics and not args.quiet:
        print()
        print(_diagnostics_report(history.final, be.storage.names()))
    if args.output:
        result = {
            "model": args.model,
            "final": final,
            "history": history.epochs,
            "timing": {
                "total_seconds": total,
                "epoch_seconds": history.metric("seconds"),
                "layers": (history.final.get("diagnostics") or {}).get("timing"),
            },
            "backend": be.describe(),
            "config": exp.config,
        }
        with open(args.output, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, default=float)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``neon MODEL.yaml`` without experiment tracking (the installed ``neon`` command adds
    ``--mlflow``: ``experiments.neon_cli``)."""
    args = build_parser().parse_args(argv)
    return cli_guard("neon", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
