"""The shared SQLite plumbing: the single-writer lock, schema versions, transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from sigledger.client.monitor.watcher import MonitorState
from sigledger.ledger.errors import ConfigError
from sigledger.ledger.service.sqlite import (
    StorageError,
    StorageLockedError,
    check_schema_version,
    open_database,
    table_columns,
    transaction,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY);
"""


async def _version(db: aiosqlite.Connection) -> str | None:
    async with db.execute("SELECT value FROM meta WHERE key = 'schema_version'") as cur:
        row = await cur.fetchone()
    return None if row is None else str(row[0])


async def test_second_opener_gets_the_lock_error_its_caller_chose(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = await open_database(path, SCHEMA, "tester")
    assert (db.path, db.conn.in_transaction) == (path, False)
    try:
        with pytest.raises(StorageLockedError, match="in use by another tester"):
            await open_database(path, SCHEMA, "tester")
        with pytest.raises(ConfigError, match="^mine$") as info:
            await open_database(path, SCHEMA, "tester", locked=ConfigError("mine"))
        assert not isinstance(info.value, StorageError)
    finally:
        await db.close()
    # Released: a third opener gets in.
    await (await open_database(path, SCHEMA, "tester")).close()


async def test_failed_setup_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.db"

    async def broken(db: aiosqlite.Connection) -> None:
        await db.execute("SELECT * FROM missing")

    with pytest.raises(ConfigError, match="cannot use it: no such table"):
        await open_database(
            path,
            SCHEMA,
            "tester",
            setup=broken,
            failed=lambda d: ConfigError(f"cannot use it: {d}"),
        )
    with pytest.raises(StorageError, match="cannot open database"):
        await open_database(path, SCHEMA, "tester", setup=broken)
    await (await open_database(path, SCHEMA, "tester")).close()


async def test_schema_version_written_checked_and_migrated(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "x.db", isolation_level=None) as db:
        await db.executescript(SCHEMA)
        await check_schema_version(db, "1", "x")
        assert await _version(db) == "1"
        await check_schema_version(db, "1", "x")  # idempotent
        with pytest.raises(StorageError, match="^x has schema version 1, expected 3$"):
            await check_schema_version(db, "3", "x")
        with pytest.raises(ConfigError, match="the state has schema version 1, expected 3"):
            await check_schema_version(db, "3", "the state", error=ConfigError)

        async def migrate(conn: aiosqlite.Connection) -> None:
            await conn.execute("INSERT INTO t (k) VALUES (7)")

        await check_schema_version(db, "2", "x", migrations={"1": migrate})
        assert await _version(db) == "2"
        async with db.execute("SELECT k FROM t") as cur:
            assert [r[0] for r in await cur.fetchall()] == [7]

        async def failing(conn: aiosqlite.Connection) -> None:
            await conn.execute("INSERT INTO t (k) VALUES (8)")
            raise RuntimeError("half way")

        # A failed migration leaves neither its rows nor the new version behind.
        with pytest.raises(RuntimeError):
            await check_schema_version(db, "3", "x", migrations={"2": failing})
        assert await _version(db) == "2"
        async with db.execute("SELECT count(*) FROM t") as cur:
            assert (await cur.fetchone()) == (1,)


async def test_transaction_commits_rolls_back_and_maps_errors(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "x.db", isolation_level=None) as db:
        await db.executescript(SCHEMA)
        async with transaction(db):
            await db.execute("INSERT INTO t (k) VALUES (1)")
        with pytest.raises(RuntimeError):
            async with transaction(db):
                await db.execute("INSERT INTO t (k) VALUES (2)")
                raise RuntimeError("abort")
        with pytest.raises(StorageError, match="write failed: UNIQUE"):
            async with transaction(db, lambda e: StorageError(f"write failed: {e}")):
                await db.execute("INSERT INTO t (k) VALUES (3)")
                await db.execute("INSERT INTO t (k) VALUES (1)")
        # Returning the error itself re-raises it unchanged.
        with pytest.raises(sqlite3.IntegrityError):
            async with transaction(db, lambda e: e):
                await db.execute("INSERT INTO t (k) VALUES (1)")
        async with db.execute("SELECT k FROM t") as cur:
            assert [r[0] for r in await cur.fetchall()] == [1]
        assert not db.in_transaction


async def test_monitor_state_lock_version_and_schema_1_migration(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    state = await MonitorState.open(path)
    try:
        with pytest.raises(ConfigError, match="another monitor is using the state"):
            await MonitorState.open(path)
        rec = await state.log("example.org/log", "vkey", "http://log")
        info = ("demo", "1.0", "Demo-1.0.tar.gz", b"\x01" * 32, "signer", 5, "stale")
        await state.add_entries(rec, [(0, info)])
    finally:
        await state.close()
    # Schema 1 had no identities: migrated, the identity comes from the filename.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    state = await MonitorState.open(path)
    await state.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "2",
        )
        (identity,) = db.execute("SELECT identity FROM entries").fetchone()
        assert identity != "stale" and "demo" in identity
        db.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match=r"the monitor state .* has schema version 9, expected 2"):
        await MonitorState.open(path)
    # The failed open let the lock go.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    await (await MonitorState.open(path)).close()


async def test_table_columns(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "x.db", isolation_level=None) as db:
        await db.executescript(SCHEMA)
        assert await table_columns(db, "meta") == {"key", "value"}
        assert await table_columns(db, "missing") == set()
