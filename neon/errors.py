"""User-facing errors: one line naming file, line and key; the CLIs exit 2 on them."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake in the user's input (config file, flag, dataset path), not a bug.

    ``str(err)`` is one line: ``file:line: key: message`` with the parts that are known.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        elif self.line:
            where = f"line {self.line}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"

    def located(
        self, file: str | None = None, line: int | None = None, key: str | None = None
    ) -> UserError:
        """Fill in location parts that are still unknown; returns self for re-raising."""
        self.file = self.file or file
        self.line = self.line or line
        self.key = self.key or key
        self.args = (self.format(),)
        return self


class ConfigError(UserError):
    """Malformed or invalid model/sweep YAML."""


class DatasetError(UserError):
    """A dataset's files are missing or unreadable."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the trial failed, not the program."""

    def __init__(self, epoch: int, batch: int | None = None, loss: float | None = None) -> None:
        self.epoch = epoch
        self.batch = batch
        self.loss = loss
        where = f" (batch {batch})" if batch is not None else ""
        super().__init__(f"diverged at epoch {epoch}{where}: loss is {loss}")


def cli_guard(prog: str, run: Callable[[], int]) -> int:
    """Run a command's body: a ``UserError`` is one line on stderr and its exit code (2),
    Ctrl-C is 130; anything else is a bug and keeps its traceback."""
    try:
        return run()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
