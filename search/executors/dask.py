"""Dask executor: jobs as tasks on a ``distributed`` cluster (or a LocalCluster it starts).

Jobs reach workers by name (``search.worker.dask_main`` and a JSON spec); per-epoch progress
comes back through a ``distributed.Queue``. A job that must stop (timeout, Ctrl-C) cannot be
interrupted inside a Python thread, so its worker process is restarted; a worker that dies
makes its task fail with ``KilledWorker``, which the controller retries once.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from search.executors.base import EXECUTORS, Event, Executor, Job

__all__ = ["DaskExecutor"]


@EXECUTORS.register("dask")
class DaskExecutor(Executor):
    """``address``: a running scheduler (``tcp://host:8786``); else ``local_workers``
    processes on this machine (default: ``parallel``)."""

    registry_name = "dask"

    def __init__(
        self,
        parallel: int = 1,
        address: str | None = None,
        local_workers: int | None = None,
    ) -> None:
        super().__init__(parallel)
        if local_workers is not None and local_workers < 1:
            raise ValueError(f"local_workers must be >= 1, got {local_workers}")
        self.address = address
        self.local_workers = local_workers
        self.client: Any = None
        self.cluster: Any = None
        self.futures: dict[str, Any] = {}
        self.queue: Any = None
        self.queue_name = f"neon-search-{uuid.uuid4().hex[:8]}"

    def describe(self) -> str:
        where = self.address or f"LocalCluster({self.local_workers or self.parallel} workers)"
        return f"dask {where} x{self.parallel}"

    def start(self) -> None:
        if self.client is not None:
            return
        import dask
        from distributed import Client, LocalCluster, Queue

        if self.address:
            self.client = Client(self.address, timeout=30)
        else:
            # a dead worker should fail its task at once: the controller decides on retries
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self.cluster = LocalCluster(
                    n_workers=self.local_workers or self.parallel, threads_per_worker=1,
                    processes=True, dashboard_address=None, silence_logs=logging.ERROR,
                )
            self.client = Client(self.cluster)
        self.queue = Queue(self.queue_name, client=self.client)

    def threads_per_job(self) -> int:
        if self.address:
            return 0  # the cluster's workers are configured by whoever started them
        return super().threads_per_job()

    def submit(self, job: Job) -> None:
        from search.worker import dask_main

        self.start()
        threads = self.threads_per_job()
        if threads:
            job.spec.setdefault("threads", threads)
        job.submitted_at = time.time()
        self.jobs[job.key] = job
        self.futures[job.key] = self.client.submit(
            dask_main, job.spec, self.queue_name, key=f"{job.key}-{uuid.uuid4().hex[:6]}",
            pure=False, retries=0,
        )

    def poll(self, timeout: float) -> list[Event]:
        from distributed import wait

        if not self.futures:
            time.sleep(min(timeout, 0.05))
            return []
        try:
            wait(list(self.futures.values()), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass
        except Exception:
            pass
        events = [Event("epoch", m["key"], m) for m in self._drain() if m["key"] in self.jobs]
        for key, fut in list(self.futures.items()):
            if fut.status == "finished":
                events.append(Event("done", key, fut.result()))
            elif fut.status in ("error", "lost", "cancelled"):
                exc = fut.exception() if fut.status == "error" else None
                events.append(Event("died", key, {"exitcode": None, "error": repr(exc)}))
            else:
                continue
            self.jobs.pop(key, None)
            self.futures.pop(key, None)
        return events

    def _drain(self) -> list[dict[str, Any]]:
        try:
            return list(self.queue.get(batch=True))
        except Exception:
            return []

    def cancel(self, key: str) -> None:
        fut = self.futures.pop(key, None)
        self.jobs.pop(key, None)
        if fut is None:
            return
        busy = [addr for addr, keys in self.client.processing().items() if fut.key in keys]
        fut.cancel()
        if busy:
            self.client.restart_workers(busy)

    def shutdown(self) -> None:
        for key in list(self.futures):
            self.cancel(key)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None
