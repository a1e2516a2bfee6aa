"""Append-only journal of a sweep (JSON lines, fsynced), the basis of ``--resume``.

Each line is one event: ``start`` (the settings the sweep runs with: trials budget,
parallel, tracking store, workdir, output, the sweep's fingerprint), ``settings`` (settings a
resume changed), ``ask`` (points proposed by the strategy in one call), ``tell`` (an
objective value given to the strategy), ``trial`` (a full snapshot of a trial after any
state change). Every record is written by ``append``. Events are group-committed: the
controller calls ``sync()`` (flush + fsync) before every wait for workers, so everything it
has decided is on disk before anything else can happen. The strategy's own state is saved
beside it from time to time (``strategy.json``, atomic replace, only after a sync) with the
journal position it reflects; events after that position are replayed on resume.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Journal"]


class Journal:
    """Durable event log in ``workdir/journal.jsonl``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / "journal.jsonl"
        self.state_path = self.workdir / "strategy.json"
        self.seq = 0
        self._fh: Any = None
        self._dirty = False

    @property
    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def open(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        self.seq = sum(1 for _ in self.events())
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open

    def _drop_torn_tail(self) -> None:
        """A kill during a write can leave half a line; cut it so appends stay parseable."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None

    def append(self, event: str, **data: Any) -> int:
        """Write one event (durable at the next ``sync``); returns its sequence number."""
        record = {"seq": self.seq, "t": round(time.time(), 3), "event": event, **data}
        self._fh.write(json.dumps(record, default=_json_default) + "\n")
        self._dirty = True
        self.seq += 1
        return record["seq"]

    def sync(self) -> None:
        """Flush and fsync the events written since the last sync."""
        if self._dirty and self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._dirty = False

    def events(self) -> Iterator[dict[str, Any]]:
        """Every complete event; a torn last line (killed mid-write) is skipped."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    break

    def settings(self) -> dict[str, Any] | None:
        """The settings the sweep runs with: the ``start`` record's, updated by each later
        ``settings`` record; None when there is no start record."""
        found: dict[str, Any] | None = None
        for e in self.events():
            if e["event"] == "start":
                found = dict(e.get("settings") or {})
                for old in ("budget", "fingerprint"):  # a journal from before settings
                    if old in e:
                        found.setdefault("trials" if old == "budget" else old, e[old])
            elif e["event"] == "settings" and found is not None:
                found.update(e["changes"])
        return found

    def save_strategy(self, state: dict[str, Any]) -> None:
        """Save the strategy's state as of the journal's current end (synced first, so the
        state never runs ahead of the events it reflects)."""
        self.sync()
        payload = json.dumps({"seq": self.seq, "state": state}, default=_json_default)
        fd, tmp = tempfile.mkstemp(dir=self.workdir, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def load_strategy(self) -> tuple[int, dict[str, Any]] | None:
        if not self.state_path.exists():
            return None
        data = json.loads(self.state_path.read_text(encoding="utf-8"))
        return int(data["seq"]), data["state"]


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
