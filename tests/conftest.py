from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import LogProcess
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures for every test)

# platformdirs' user data and state directories on Linux
USER_DIRECTORIES = ("XDG_DATA_HOME", "XDG_STATE_HOME")


@pytest.fixture(scope="session", autouse=True)
def no_real_user_directories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every default location (the services' data directory, the client's state)
    points into a temporary directory, for this process and its subprocesses:
    no test ever writes to the user's real data or state directories."""
    base = tmp_path_factory.mktemp("home")
    saved = {name: os.environ.get(name) for name in USER_DIRECTORIES}
    for name in USER_DIRECTORIES:
        os.environ[name] = str(base / name.lower())
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def log_server(tmp_path: Path) -> Iterator[LogProcess]:
    server = LogProcess(tmp_path / "log").start()
    try:
        yield server
    finally:
        server.kill()
