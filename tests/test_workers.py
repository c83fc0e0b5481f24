"""A dead verification worker is replaced: unit test of the pool, and kill -9 of a
real server's worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from sigledger.ledger.note import Signer
from sigledger.ledger.service.workers import VerifyPool
from sigledger.ledger.wire import JSON_TYPE, encode_add_request
from tests.helpers import LogProcess, get, post_add, signed, worker_pids

BOB = Signer.from_seed("bob", bytes([11]) * 32)


def _square(x: int) -> int:
    return x * x


async def test_pool_replaces_a_killed_worker() -> None:
    pool = VerifyPool(1, watch_interval=0.1)
    pool.start()
    try:
        assert await pool.run(_square, 7) == 49
        pid = await pool.run(os.getpid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pool.restarts == 0:
            assert time.monotonic() < deadline, "the watchdog never noticed the dead worker"
            await asyncio.sleep(0.05)
        assert await pool.run(_square, 8) == 64
        assert await pool.run(os.getpid) != pid
        deadline = time.monotonic() + 10
        while not pool.available:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert pool.restarts == 1
    finally:
        await pool.close()


async def test_calls_in_flight_when_a_worker_dies_are_retried() -> None:
    pool = VerifyPool(1, watch_interval=60)  # only the call path notices
    pool.start()
    try:
        pid = await pool.run(os.getpid)
        slow = asyncio.ensure_future(pool.run(time.sleep, 1.0))
        await asyncio.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        assert await slow is None  # ran again on the new pool
        assert pool.restarts == 1
    finally:
        await pool.close()


async def test_kill_9_of_a_server_worker(tmp_path: Path) -> None:
    log = LogProcess(
        tmp_path / "log",
        env={"SIGLEDGER_VERIFY_WORKERS": "1", "SIGLEDGER_CHECKPOINT_PERIOD": "0.2"},
    ).start()
    try:
        assert log.proc is not None

        async def add(version: str) -> tuple[int, dict[str, Any]]:
            statements = [signed(BOB, project=f"p{i}", version=version) for i in range(30)]
            assert len(encode_add_request(statements, JSON_TYPE)) >= 4096  # goes to the worker
            status, doc, _ = await post_add(log.url, statements)
            return status, doc

        status, _ = await add("1.0")
        assert status == 200
        (pid,) = worker_pids(log.proc.pid)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            status, doc = await add("2.0")
            if status == 200:
                break
            # while the pool is rebuilt: 503 with a reason, never 500
            assert status == 503 and doc["error"] == "workers_restarting", (status, doc)
            assert time.monotonic() - killed < 10
            await asyncio.sleep(0.2)
        assert time.monotonic() - killed < 10
        new = worker_pids(log.proc.pid)
        assert new and pid not in new
        _, metrics, _ = await get(log.url + "/metrics")
        assert b"sigledger_verify_worker_restarts 1.0" in metrics
        status, health, _ = await get(log.url + "/healthz")
        assert status == 200, health
        assert json.loads(health)["status"] == "ok"
    finally:
        log.kill()
