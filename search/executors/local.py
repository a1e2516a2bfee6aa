"""Local executor: one process per job, forked from a server that has imported neon once.

Using multiprocessing's ``forkserver`` keeps the price of a fresh process per trial near
8 ms (measured) instead of the ~0.5 s of importing numpy and neon again, while every trial
still gets a process of its own that can be killed on timeout or die without harm. One
spare process is always started ahead of need, so a free slot gets its next trial by a
message on a pipe rather than by a fork.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue as queue_mod
import sys
import time
from collections.abc import Iterator
from typing import Any

from search.executors.base import EXECUTORS, Event, Executor, GPUSlots, Job

__all__ = ["LocalExecutor"]

_PRELOAD = ["search.worker", "neon.config", "neon.backends.cpu"]


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without telling them about the parent's ``__main__``.

    multiprocessing makes each new process import the parent's main script so that pickled
    references into it resolve; workers only run ``search.worker``, so that import is pure
    cost (about 100 ms a trial when the script imports the world) and runs unguarded
    top-level code of a user's script once per trial.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    spec = getattr(main, "__spec__", None)
    has_file = hasattr(main, "__file__")
    path = getattr(main, "__file__", None)
    main.__spec__ = None
    if has_file:
        del main.__file__
    try:
        yield
    finally:
        main.__spec__ = spec
        if has_file:
            main.__file__ = path


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Process per job, at most ``parallel`` at once; BLAS threads = cores / parallel."""

    registry_name = "local"

    def __init__(self, parallel: int = 1, start_method: str = "forkserver") -> None:
        """With a cold kernel cache, says once (on stderr) that the workers' first import
        compiles the engine's kernels: here, before the sweep's first line and progress
        bar, as the workers' import would compile them while the bar stood still."""
        from neon.backends.kernel_cache import announce

        announce("neon-search")
        super().__init__(parallel)
        self.ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self.ctx.set_forkserver_preload(_PRELOAD)
        self.queue: Any = None
        self.procs: dict[str, Any] = {}
        self._done: set[str] = set()
        self.gpu_slots = GPUSlots()
        self.spare: tuple[Any, Any] | None = None  # (process, pipe end) waiting for a job
        self.links: dict[str, Any] = {}  # job -> its pipe end, open while the job is ours
        self._exiting: list[Any] = []

    def start(self) -> None:
        if self.queue is None:
            self.queue = self.ctx.Queue()
        if self.spare is None:
            self.spare = self._fork()

    def _fork(self) -> tuple[Any, Any]:
        from search.worker import process_main

        receiver, sender = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=process_main, args=(receiver, self.queue),
                                name="neon-search-worker", daemon=True)
        with _main_module_hidden():
            proc.start()
        receiver.close()
        return proc, sender

    def submit(self, job: Job) -> None:
        self.start()
        job.spec.setdefault("threads", self.threads_per_job())
        self.gpu_slots.assign(job)
        proc, sender = self.spare
        self.spare = None
        job.submitted_at = time.time()
        sender.send(job.spec)
        self.jobs[job.key] = job
        self.procs[job.key] = proc
        self.links[job.key] = sender  # closing it ends the process (worker._exit_when_closed)
        self.spare = self._fork()  # the next job's process starts while this one runs

    def _drain(self, timeout: float) -> list[dict[str, Any]]:
        messages = []
        try:
            messages.append(self.queue.get(timeout=timeout) if timeout > 0
                            else self.queue.get_nowait())
            while True:
                messages.append(self.queue.get_nowait())
        except queue_mod.Empty:
            pass
        return messages

    def poll(self, timeout: float) -> list[Event]:
        if self.queue is None or not self.jobs:
            if timeout > 0:
                time.sleep(min(timeout, 0.05))
            return []
        events = [self._event(m) for m in self._drain(timeout)]
        dead = [k for k, p in self.procs.items() if not p.is_alive() and k not in self._done]
        if dead:
            # a result may still be in the pipe of a process that just exited
            events += [self._event(m) for m in self._drain(0.2)]
            for key in dead:
                if key not in self._done:
                    code = self.procs[key].exitcode
                    events.append(Event("died", key, {"exitcode": code}))
                    self._forget(key)
        return [e for e in events if e is not None]

    def _event(self, message: dict[str, Any]) -> Event | None:
        key = message.get("key", "")
        if key not in self.jobs:
            return None  # a late message of a cancelled job
        if message.get("type") == "done":
            self._done.add(key)
            self._forget(key)
            return Event("done", key, message)
        return Event("epoch", key, message)

    def _forget(self, key: str) -> None:
        """Stop tracking a finished job; its process (exiting now) is reaped later."""
        self.jobs.pop(key, None)
        self.gpu_slots.release(key)
        link = self.links.pop(key, None)
        if link is not None:
            link.close()
        proc = self.procs.pop(key, None)
        if proc is not None:
            self._exiting.append(proc)
        self._exiting = [p for p in self._exiting if p.is_alive()]  # is_alive reaps the dead

    def cancel(self, key: str) -> None:
        proc = self.procs.get(key)
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        self._done.add(key)
        self._forget(key)

    def shutdown(self) -> None:
        for key in list(self.procs):
            self.cancel(key)
        if self.spare is not None:
            proc, sender = self.spare
            with contextlib.suppress(OSError):
                sender.send(None)
                sender.close()
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
            self.spare = None
        for proc in self._exiting:
            proc.join(timeout=2)
        self._exiting = []
        if self.queue is not None:
            self.queue.close()
            self.queue.cancel_join_thread()
            self.queue = None
