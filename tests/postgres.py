"""A real PostgreSQL server for the tests, started from the local server binaries.

``postgres_server`` (session scope) runs ``initdb`` and ``pg_ctl start`` on a free
loopback port, with the cluster, its socket and its log in a temporary directory,
``fsync=on`` as in production, a role ``sigledger`` and trust authentication on
loopback; it stops the server (``pg_ctl stop -m fast``) at the end of the session.
``postgres_url`` gives each test a fresh database (``CREATE DATABASE t_<n>``) owned
by that role.

As root, ``initdb`` refuses to run: the server then runs as the ``postgres`` user
(``runuser``), and the directory is handed to that user. The binaries are found
in Debian's ``/usr/lib/postgresql/<version>/bin``, through ``pg_config --bindir``,
or on PATH. Without them the tests skip with that reason, except under CI (the
``CI`` environment variable), where they must run and fail instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import missing_tool
from tests.index import free_port

ROLE = "sigledger"


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``psql``, newest version first."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(v) if (v := Path(p).parent.name).isdigit() else 0,
        reverse=True,
    )
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).resolve().parent))
    for folder in candidates:
        if folder and all((Path(folder) / t).exists() for t in ("initdb", "pg_ctl", "psql")):
            return Path(folder)
    return None


class PostgresServer:
    """One throwaway PostgreSQL cluster (see the module docstring)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="sigledger-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        self._names = itertools.count()

    def _run(self, *cmd: str, server_user: bool = True) -> str:
        argv = [str(self.bindir / cmd[0]), *cmd[1:]]
        if server_user and self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}\n{tail}")
        return done.stdout

    def start(self) -> PostgresServer:
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=on -c max_connections=200"
        )
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options,
        )  # fmt: skip
        self.sql(f"CREATE ROLE {ROLE} LOGIN")
        return self

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session ends; the same port and data."""
        log = str(self.root / "server.log")  # else the server keeps our output pipe open
        self._run("pg_ctl", "restart", "-m", "fast", "-w", "-D", str(self.data), "-l", log)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser; its output (unaligned, tuples only)."""
        return self._run(
            "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(self.port), "-U", "postgres", "-d", database, "-c", statement,
            server_user=False,
        )  # fmt: skip

    def url(self, database: str, user: str = ROLE) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database owned by the test role; its URL."""
        name = f"t_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        missing_tool(
            "PostgreSQL server binaries (initdb, pg_ctl, psql) not found; install postgresql"
        )
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    return postgres_server.create_database()
