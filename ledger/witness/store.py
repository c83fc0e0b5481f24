"""Durable state of a witness in one SQLite file (the witness's only SQL).

Layout (schema version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)     witness vkey, schema version
    checkpoints(origin TEXT PRIMARY KEY,       the latest checkpoint cosigned per log:
                size, root BLOB, note BLOB,    its size and root, the note as served
                updated INTEGER)               (log signatures + our cosignature), ms
    evidence(id INTEGER PRIMARY KEY,           correctly signed checkpoints refused as
             origin, reason, text_sha256,      inconsistent with the state: what the
             stored_size, stored_root,         witness had, the request, when, how often;
             stored_note, request, priority,   one row per (origin, reason, checkpoint
             first_seen, last_seen, count)     text); bounded, lowest priority and
                                               oldest rows are dropped first

Contracts:

* :meth:`WitnessStore.compare_and_swap` is one SQL statement in autocommit
  mode: it moves an origin from ``(old_size[, old_root])`` to the new head or
  changes nothing, atomically, and the change is durable when it returns
  (WAL with ``synchronous=FULL``). Two requests racing from the same old size
  cannot both win, and a slow request can never roll the state back.
* Only one process may open the state: :meth:`WitnessStore.open` takes an
  exclusive ``flock`` on ``<db>.lock`` (released by the kernel when the holder
  dies, also on ``kill -9``).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from sigledger.ledger.service.sqlite import (
    Database,
    StorageError,
    check_schema_version,
    open_database,
    transaction,
)

__all__ = [
    "SCHEMA_VERSION",
    "Evidence",
    "WitnessHead",
    "WitnessStore",
]

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note BLOB NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    stored_size INTEGER NOT NULL,
    stored_root BLOB NOT NULL,
    stored_note BLOB,
    request BLOB NOT NULL,
    priority INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    UNIQUE (origin, reason, text_sha256)
);
"""

_UPDATE = (
    "UPDATE checkpoints SET size = ?, root = ?, note = ?, updated = ?"
    " WHERE origin = ? AND size = ? AND (? IS NULL OR root = ?)"
)
# First checkpoint for an origin (old size 0): insert, or replace a stored
# size-0 head (the empty tree has one root, so there is nothing to compare).
_INSERT_FROM_ZERO = (
    "INSERT INTO checkpoints (origin, size, root, note, updated) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,"
    " note = excluded.note, updated = excluded.updated WHERE checkpoints.size = 0"
)


@dataclass(frozen=True, slots=True)
class WitnessHead:
    """The latest checkpoint a witness cosigned for one origin."""

    origin: str
    size: int
    root: bytes
    note: bytes
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """A correctly signed checkpoint the witness refused as inconsistent."""

    origin: str
    reason: str
    stored_size: int
    stored_root: bytes
    stored_note: bytes | None
    request: bytes
    first_seen_ms: int
    last_seen_ms: int
    count: int


class WitnessStore:
    """A witness's SQLite database. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, database: Database) -> None:
        self.path = database.path
        self._database = database
        self._db = database.conn
        # Multi-statement writes (evidence) must not interleave on the connection.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> WitnessStore:
        """Open (creating if needed) the database at ``path`` and lock it.

        Raises StorageLockedError if another process holds it, StorageError if
        it cannot be opened or has another schema version.
        """
        path = Path(path)

        async def setup(db: aiosqlite.Connection) -> None:
            await check_schema_version(db, SCHEMA_VERSION, str(path))

        return cls(await open_database(path, _SCHEMA, "sigledger witness", setup=setup))

    async def close(self) -> None:
        await self._database.close()

    # -- metadata -----------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = await self._fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def set_meta(self, values: dict[str, str]) -> None:
        """Insert or replace metadata values, in one transaction."""
        async with self._write_lock, transaction(self._db, _write_failed) as db:
            await db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items())
            )

    # -- checkpoints --------------------------------------------------------------

    async def get(self, origin: str) -> tuple[int, bytes] | None:
        """The (size, root) last cosigned for ``origin``, or None if never."""
        row = await self._fetchone("SELECT size, root FROM checkpoints WHERE origin = ?", (origin,))
        return None if row is None else (int(row[0]), bytes(row[1]))

    async def get_head(self, origin: str) -> WitnessHead | None:
        """The full stored head for ``origin`` (with the note as served), or None."""
        row = await self._fetchone(
            "SELECT origin, size, root, note, updated FROM checkpoints WHERE origin = ?",
            (origin,),
        )
        return None if row is None else _head(row)

    async def heads(self) -> list[WitnessHead]:
        """Every stored head, by origin."""
        rows = await self._fetchall(
            "SELECT origin, size, root, note, updated FROM checkpoints ORDER BY origin", ()
        )
        return [_head(r) for r in rows]

    async def compare_and_swap(
        self,
        origin: str,
        old_size: int,
        new_size: int,
        new_root: bytes,
        note: bytes,
        *,
        old_root: bytes | None = None,
        now_ms: int | None = None,
    ) -> bool:
        """Move ``origin`` from ``old_size`` to ``(new_size, new_root)``, atomically.

        Succeeds iff the stored size is ``old_size`` (and, when given, the
        stored root is ``old_root``), or ``old_size`` is 0 and nothing is
        stored. Returns whether it changed the state; on True the change is
        durable. ``new_size`` must not be below ``old_size``: the state
        never moves backwards.
        """
        if not 0 <= old_size <= new_size:
            raise ValueError(f"refusing to move a witness from size {old_size} to {new_size}")
        if len(new_root) != 32:
            raise ValueError("root hash must be 32 bytes")
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        params: tuple[object, ...]
        if old_size == 0:
            sql = _INSERT_FROM_ZERO
            params = (origin, new_size, bytes(new_root), bytes(note), now_ms)
        else:
            sql = _UPDATE
            params = (
                new_size,
                bytes(new_root),
                bytes(note),
                now_ms,
                origin,
                old_size,
                old_root,
                old_root,
            )
        # One statement in autocommit mode is one transaction: it commits (and
        # with synchronous=FULL reaches the disk) before execute() returns.
        try:
            async with self._write_lock:
                cur = await self._db.execute(sql, params)
                changed = cur.rowcount
                await cur.close()
        except sqlite3.Error as exc:
            raise StorageError(f"database write failed: {exc}") from exc
        return changed == 1

    # -- evidence -----------------------------------------------------------------

    async def record_evidence(
        self,
        origin: str,
        reason: str,
        checkpoint_text: str,
        stored: WitnessHead | None,
        request: bytes,
        *,
        priority: int,
        max_rows: int,
        now_ms: int | None = None,
    ) -> None:
        """Keep a refused, correctly signed checkpoint as evidence.

        One row per (origin, reason, checkpoint text): a resubmission only
        bumps ``count`` and ``last_seen``, so repeating one request cannot
        flood the table. Beyond ``max_rows`` rows, those with the lowest
        ``priority`` go first, oldest first; so a flood of ambiguous rows
        (a bad proof may be the client's fault) cannot push out conclusive
        ones (two roots for one size).
        """
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        digest = hashlib.sha256(checkpoint_text.encode("utf-8")).digest()
        async with self._write_lock, transaction(self._db, _write_failed) as db:
            await db.execute(
                "INSERT INTO evidence (origin, reason, text_sha256, stored_size,"
                " stored_root, stored_note, request, priority, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (origin, reason, text_sha256) DO UPDATE"
                " SET count = count + 1, last_seen = excluded.last_seen",
                (
                    origin,
                    reason,
                    digest,
                    stored.size if stored else 0,
                    stored.root if stored else b"",
                    stored.note if stored else None,
                    bytes(request),
                    priority,
                    now_ms,
                    now_ms,
                ),
            )
            await db.execute(
                "DELETE FROM evidence WHERE id IN (SELECT id FROM evidence"
                " ORDER BY priority ASC, id ASC"
                " LIMIT max(0, (SELECT count(*) FROM evidence) - ?))",
                (max(0, max_rows),),
            )

    async def evidence(self, limit: int = 100) -> list[Evidence]:
        """The most recently first-seen evidence rows, newest first."""
        rows = await self._fetchall(
            "SELECT origin, reason, stored_size, stored_root, stored_note, request,"
            " first_seen, last_seen, count FROM evidence ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            Evidence(
                str(r[0]),
                str(r[1]),
                int(r[2]),
                bytes(r[3]),
                None if r[4] is None else bytes(r[4]),
                bytes(r[5]),
                int(r[6]),
                int(r[7]),
                int(r[8]),
            )
            for r in rows
        ]

    # -- helpers ------------------------------------------------------------------

    async def check(self) -> None:
        """Raise StorageError unless the database answers a query."""
        await self._fetchone("SELECT 1", ())

    async def _fetchone(self, sql: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _fetchall(self, sql: str, params: tuple[object, ...]) -> list[sqlite3.Row]:
        try:
            async with self._db.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StorageError(f"database read failed: {exc}") from exc


def _head(row: sqlite3.Row) -> WitnessHead:
    """A head from ``origin, size, root, note, updated``."""
    return WitnessHead(str(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]), int(row[4]))


def _write_failed(exc: sqlite3.Error) -> StorageError:
    return StorageError(f"database write failed: {exc}")
