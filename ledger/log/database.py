"""Which database holds a log: one URL, one factory.

:func:`open_storage` opens the :class:`~sigledger.ledger.log.store.LogStorage` a
URL names:

* ``sqlite:///var/lib/sigledger/log.db`` -- the embedded engine, one SQLite file
  (:mod:`sigledger.ledger.log.storage`). The path is the URL's, as in ``file:`` URLs:
  ``sqlite:///ABSOLUTE/PATH`` (``sqlite:////ABSOLUTE/PATH`` means the same), and
  ``sqlite:RELATIVE/PATH`` for a path relative to the working directory. The
  server's default is ``<data>/log.db``.
* ``postgresql://USER@HOST:PORT/DBNAME`` (or ``postgres://``) -- PostgreSQL
  (:mod:`sigledger.ledger.log.postgres`), with libpq's conventions: a password from
  ``PGPASSWORD`` or ``~/.pgpass`` rather than in the URL, query parameters such as
  ``?sslmode=require``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sigledger.ledger.errors import ConfigError
from sigledger.ledger.log.storage import Storage
from sigledger.ledger.log.store import LogStorage

__all__ = ["USAGE", "describe", "open_storage", "parse_database_url", "redact", "sqlite_url"]

_POSTGRES = ("postgresql://", "postgres://")
_SQLITE = "sqlite:"
USAGE = "sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or postgresql://USER@HOST:PORT/DBNAME"


def sqlite_url(path: Path | str) -> str:
    """The URL of the SQLite file ``path``."""
    path = str(path)
    return f"sqlite://{path}" if path.startswith("/") else f"sqlite:{path}"


def parse_database_url(url: str) -> tuple[str, str]:
    """(``"sqlite"``, file path) or (``"postgresql"``, the URL); ConfigError otherwise."""
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE) :]
        if path.startswith("//"):
            # An empty authority, then an absolute path ("sqlite:////x" too: "//x" is "/x").
            path = path[2:]
            path = "/" + path.lstrip("/") if path.startswith("/") else ""
        if path and path != "/":
            return "sqlite", path
    elif url.startswith(_POSTGRES) and url.split("://", 1)[1].strip("/"):
        return "postgresql", url
    raise ConfigError(f"database {describe(url)!r} is not a database URL: use {USAGE}")


def describe(url: str) -> str:
    """``url`` fit for messages: a password in it is masked."""
    return redact(url) if "://" in url else url


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))


async def open_storage(url: str, *, standby: bool = False) -> LogStorage:
    """Open (creating tables on first use) the log storage at ``url``.

    Raises ConfigError for a malformed URL, StorageLockedError when another process
    writes that log, StorageError when the database cannot be opened.
    With ``standby`` (PostgreSQL only), the writer lock is left to leader election
    (:mod:`sigledger.ledger.log.ha`).
    """
    engine, where = parse_database_url(url)
    if engine == "sqlite":
        if standby:
            raise ConfigError("ha (several servers on one log) needs a PostgreSQL database")
        return await Storage.open(Path(where))
    # Imported here, so that a log on SQLite never loads the PostgreSQL driver.
    from sigledger.ledger.log.postgres import PostgresStorage  # noqa: PLC0415

    return await PostgresStorage.open(where, standby=standby)
