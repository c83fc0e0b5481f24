"""Worker processes that validate and signature-check large ``/add`` bodies.

A :class:`concurrent.futures.ProcessPoolExecutor` is broken for good once one
of its workers dies (kill -9, the OOM killer): every later call fails. This
pool replaces a broken executor with a fresh one, retries the calls that were
in flight once on the new one, and keeps a watchdog that notices a dead worker
within about a second even while no request comes in, so ``/healthz`` tells
the truth. Calls that fail twice raise :class:`WorkersUnavailableError` (the
server answers 503 with ``Retry-After``).

Workers watch their parent and exit as soon as it is gone (the server killed
with SIGKILL cannot shut them down).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sigledger.ledger.errors import WorkersRestartingError

log = logging.getLogger("sigledger.workers")

T = TypeVar("T")


class WorkersUnavailableError(WorkersRestartingError):
    """No verification worker could take the call (the pool is being rebuilt)."""


def _watch_parent(parent: int) -> None:
    """In a worker: exit as soon as the server process is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _ping() -> int:
    return os.getpid()


class VerifyPool:
    """``workers`` spawned processes, rebuilt whenever one dies."""

    def __init__(self, workers: int, watch_interval: float = 1.0) -> None:
        self.workers = workers
        self.watch_interval = watch_interval
        self.restarts = 0
        self.available = True  # False from a detected death until a worker answers again
        self._executor = self._new_executor()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    def _new_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_watch_parent,
            initargs=(os.getpid(),),
        )

    def start(self) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name="sigledger-verify-watchdog")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker; once more on a fresh pool if a worker died."""
        loop = asyncio.get_running_loop()
        for _attempt in range(2):
            executor = self._executor
            try:
                result = await loop.run_in_executor(executor, fn, *args)
            except BrokenProcessPool:
                self._replace(executor)
                continue
            if executor is self._executor:
                self.available = True
            return result
        raise WorkersUnavailableError("the verification workers are restarting; retry shortly")

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        """Swap in a fresh executor, unless someone already replaced ``broken``."""
        if self._closed or broken is not self._executor:
            return
        self.restarts += 1
        self.available = False
        log.error(
            "a verification worker died; starting new workers",
            extra={"restarts": self.restarts},
        )
        self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    async def _watch(self) -> None:
        """Ping the pool: notices a dead worker between requests and warms a new pool."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            executor = self._executor
            try:
                await asyncio.wait_for(
                    loop.run_in_executor(executor, _ping), timeout=max(30.0, self.watch_interval)
                )
                self.available = True
            except BrokenProcessPool:
                self._replace(executor)
                continue
            except TimeoutError:
                # Busy workers, not dead ones: the executor breaks itself on a death.
                pass
            except RuntimeError:
                # Submitted to an executor that was just shut down; loop again.
                continue
            await asyncio.sleep(self.watch_interval)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self._executor.shutdown(wait=False, cancel_futures=True)
