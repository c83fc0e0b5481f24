"""SQLite plumbing shared by every store: one writer per file, WAL, durable commits.

* :func:`acquire_lock` takes an exclusive ``flock`` on ``<db>.lock``; the kernel drops
  it when the holder exits, also on ``kill -9``, so a second process gets
  :class:`StorageLockedError` instead of a corrupt interleaving.
* :func:`open_database` locks, connects in autocommit mode (transactions are explicit),
  turns on WAL and applies the schema script.
* :func:`transaction` is ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from sigledger.ledger.errors import ConfigError, LedgerError


class StorageError(LedgerError):
    """The database is unusable (corrupt, wrong schema, or I/O failure)."""

    hint = "Check the data directory and the server log; restore from a backup if needed."


class StorageLockedError(StorageError, ConfigError):
    """Another process already runs this log."""

    hint = (
        "Only one server may write a log. Stop the other process (or use another "
        "--data directory) and start again."
    )


async def open_database(
    path: Path, schema: str, who: str, *, synchronous: str = "FULL"
) -> tuple[int, aiosqlite.Connection]:
    """Lock ``path`` for this process, connect (WAL, ``synchronous``), apply ``schema``.

    Returns the lock descriptor and the connection; on failure both are closed
    (StorageLockedError when ``who`` else holds the lock, StorageError otherwise).
    """
    lock_fd = acquire_lock(path, who)
    try:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={synchronous}")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.executescript(schema)
        except BaseException:
            await db.close()
            raise
    except sqlite3.Error as exc:
        os.close(lock_fd)
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    except BaseException:
        os.close(lock_fd)
        raise
    return lock_fd, db


def acquire_lock(db_path: Path, who: str = "sigledger process") -> int:
    """Take the exclusive single-writer lock ``<db>.lock``; StorageLockedError if held.

    Returns the descriptor; closing it (or the process dying) releases the lock.
    """
    lock_path = db_path.with_name(db_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageLockedError(
            f"{db_path} is in use by another {who} (lock {lock_path} is held)"
        ) from None
    return fd


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")
