"""The services' event loop (ledger/service/runner.py)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from sigledger.ledger.service.runner import run_service


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_run_service_returns_what_the_service_returns() -> None:
    assert run_service(asyncio.sleep(0, result=42)) == 42


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not exist on Windows")
def test_services_run_on_uvloop_where_it_exists() -> None:
    # A dependency everywhere but Windows: the servers' reads depend on its speed.
    assert run_service(_loop_module()).startswith("uvloop")
