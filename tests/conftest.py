from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import LogProcess
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures for every test)


@pytest.fixture
def log_server(tmp_path: Path) -> Iterator[LogProcess]:
    server = LogProcess(tmp_path / "log").start()
    try:
        yield server
    finally:
        server.kill()
