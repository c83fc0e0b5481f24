"""SQLite plumbing shared by every store: one writer per file, WAL, durable commits.

* :func:`acquire_lock` takes an exclusive ``flock`` on ``<db>.lock``; the kernel drops
  it when the holder exits, also on ``kill -9``, so a second process gets
  :class:`StorageLockedError` (or the caller's own error) instead of a corrupt
  interleaving.
* :func:`open_database` locks, connects in autocommit mode (transactions are explicit),
  turns on WAL, applies the schema script and runs the caller's ``setup`` (migrations,
  :func:`check_schema_version`); on any failure it closes what it opened. The
  :class:`Database` it returns closes the connection, then lets the lock go.
* :func:`check_schema_version` reads ``meta.schema_version``: absent -> written,
  a known older version -> its migration and the new version in one transaction,
  anything else -> an error. Every store keeps a ``meta(key TEXT PRIMARY KEY, value TEXT)``
  table for this; migrations ask :func:`table_columns` what an older schema lacks.
* :func:`transaction` is ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error;
  ``failed`` maps SQLite errors to the store's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from sigledger.ledger.errors import ConfigError, LedgerError

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


class StorageError(LedgerError):
    """The database is unusable (corrupt, wrong schema, or I/O failure)."""

    hint = "Check the data directory and the server log; restore from a backup if needed."


class StorageConflictError(StorageError):
    """A write contradicts what is stored (a second root for one tree size, a reused
    entry index): the caller's mistake, and nothing of the write was kept."""


class StorageLockedError(StorageError, ConfigError):
    """Another process already runs this log."""

    hint = (
        "Only one server may write a log. Stop the other process (or use another "
        "--data directory) and start again."
    )


@dataclass(eq=False, slots=True)
class Database:
    """An open, locked SQLite database: ``conn`` writes; :meth:`close` ends both."""

    path: Path
    conn: aiosqlite.Connection
    lock_fd: int

    async def close(self) -> None:
        try:
            await self.conn.close()
        finally:
            os.close(self.lock_fd)


async def open_database(
    path: Path,
    schema: str,
    who: str,
    *,
    synchronous: str = "FULL",
    page_size: int | None = None,
    setup: Migration | None = None,
    locked: Exception | None = None,
    failed: Callable[[str], Exception] | None = None,
) -> Database:
    """Lock ``path`` for this process, connect (WAL, ``synchronous``), apply ``schema``.

    ``page_size`` applies to a new file only (SQLite keeps an existing file's).

    ``setup`` then runs on the connection (migrations, the schema version check).
    On failure the connection and the lock are closed.
    Raises ``locked`` (default StorageLockedError naming ``who``) when the lock is held,
    ``failed(detail)`` (default StorageError) when the file or SQLite fails, and
    whatever ``setup`` raises.
    """

    def fail(detail: object) -> Exception:
        if failed is not None:
            return failed(str(detail))
        return StorageError(f"cannot open database {path}: {detail}")

    try:
        lock_fd = acquire_lock(path, who, locked=locked)
    except OSError as exc:
        raise fail(exc) from exc
    try:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            if page_size is not None:
                await db.execute(f"PRAGMA page_size={int(page_size)}")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={synchronous}")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.executescript(schema)
            if setup is not None:
                await setup(db)
        except BaseException:
            await db.close()
            raise
    except sqlite3.Error as exc:
        os.close(lock_fd)
        raise fail(exc) from exc
    except BaseException:
        os.close(lock_fd)
        raise
    return Database(path, db, lock_fd)


def acquire_lock(
    db_path: Path, who: str = "sigledger process", *, locked: Exception | None = None
) -> int:
    """Take the exclusive single-writer lock ``<db>.lock``; ``locked`` if it is held.

    ``locked`` defaults to a StorageLockedError naming ``who``. Returns the
    descriptor; closing it (or the process dying) releases the lock.
    """
    lock_path = db_path.with_name(db_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if locked is not None:
            raise locked from None
        raise StorageLockedError(
            f"{db_path} is in use by another {who} (lock {lock_path} is held)"
        ) from None
    return fd


async def check_schema_version(
    db: aiosqlite.Connection,
    expected: str,
    name: str,
    *,
    migrations: Mapping[str, Migration | None] | None = None,
    error: type[LedgerError] = StorageError,
) -> None:
    """Make ``meta.schema_version`` ``expected``, or raise ``error`` naming ``name``.

    A database without a version gets ``expected`` (a new one: the schema script
    has just created it). A version in ``migrations`` is upgraded: its migration
    (None: nothing beyond what already ran) and the new version commit together.
    """
    async with db.execute("SELECT value FROM meta WHERE key = 'schema_version'") as cur:
        row = await cur.fetchone()
    version = None if row is None else str(row[0])
    if version == expected:
        return
    if version is not None and (migrations is None or version not in migrations):
        raise error(f"{name} has schema version {version}, expected {expected}")
    async with transaction(db):
        if version is not None and migrations is not None:
            migrate = migrations[version]
            if migrate is not None:
                await migrate(db)
        await db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (expected,)
        )


async def table_columns(db: aiosqlite.Connection, table: str) -> set[str]:
    """The column names of ``table`` (migrations add the ones an older schema lacks)."""
    async with db.execute("SELECT name FROM pragma_table_info(?)", (table,)) as cur:
        return {str(row[0]) for row in await cur.fetchall()}


@asynccontextmanager
async def transaction(
    db: aiosqlite.Connection, failed: Callable[[sqlite3.Error], BaseException] | None = None
) -> AsyncIterator[aiosqlite.Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises.

    A SQLite error (from the block or the commit) goes through ``failed``, when given:
    what it returns is raised in its place (returning the error itself re-raises it).
    """
    try:
        await db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            await db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT may already have ended the transaction: the first error wins.
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        if failed is None:
            raise
        mapped = failed(exc)
        if mapped is exc:
            raise
        raise mapped from exc
