"""The installed ``neon`` command: ``neon MODEL.yaml`` (``neon.cli``) with ``--mlflow``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from neon.cli import build_parser, run
from neon.errors import cli_guard

__all__ = ["main"]


def _recorder(exp: Any, args: argparse.Namespace) -> Any:
    """An MLflow run for ``--mlflow`` (``neon.cli.RunRecorder``), else None."""
    if not args.mlflow:
        return None
    from experiments.tracking import SingleRunTracker

    return SingleRunTracker.for_experiment(exp, args.model, args.tracking_uri)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--mlflow", action="store_true",
                        help="log the run to MLflow (store from --tracking-uri)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default sqlite:///mlflow.db)")
    args = parser.parse_args(argv)
    return cli_guard("neon", lambda: run(args, _recorder))


if __name__ == "__main__":
    sys.exit(main())
