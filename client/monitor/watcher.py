"""Follow logs, re-verify everything they serve, keep an index, raise alarms.

``sigledger monitor`` follows one or more logs through the tlog-tiles read API
only (``/checkpoint``, ``/tile/...``; never ``/lookup`` or ``/proof``). For
every new checkpoint of a log it

1. computes the consistency proof from the previous verified checkpoint out of
   tiles authenticated against the newer of the two
   (:class:`sigledger.client.tiles.TileAuth`);
2. accepts it as the client does (:class:`sigledger.client.trust.CheckpointAcceptor`):
   the log signature, consistency with the previous verified checkpoint and,
   when the policy names witnesses, the cosignature quorum; the monitor's state
   is the acceptor's :class:`~sigledger.client.trust.CheckpointStore`;
3. fetches the entry bundles of the new range with their level-0 tiles,
   re-hashes every entry and compares it with the authenticated tile, decodes
   it (:func:`sigledger.ledger.entry.decode_entry`) and re-verifies the publisher
   signature (:mod:`sigledger.client.monitor.audit`);
4. adds every entry to its own index and checks it against the whole history:
   one signer attesting two hashes for one file, different signers attesting
   different hashes, new signers and new versions of watched projects.

It is incremental and resumable: the state (``--state``, SQLite in WAL mode)
holds per log the last verified checkpoint and how far the index goes, and is
committed every few thousand entries, so an interrupted catch-up resumes where
it stopped.

**Alarms** are JSON lines on stdout (and POSTed to ``--webhook``), one object
each, schema version 1::

    {"version": 1, "type": "<type>", "log": "<origin>", "time": "<RFC 3339 UTC>",
     "message": "<one line for people>", "evidence": {...}}

Every ``evidence`` holds ``log_key`` (the log's verifier key) and
``log_url``, plus what a third party needs to check the claim without trusting
the monitor, usually the signed ``checkpoint`` note and RFC 6962 proofs, and a
``how_to_check`` sentence. Byte strings are standard base64. Types:

``inconsistent_checkpoints``
    Two checkpoints signed by the log that cannot both be true:
    ``checkpoints`` (both notes, older first) and ``consistency_proof`` (the
    hashes computed from the log's tiles; empty for equal sizes).
``bad_tile``
    A hash tile that does not match the signed checkpoint: ``reason``
    (``does_not_match_checkpoint``: ``tile``, ``tile_data``, ``node``,
    ``expected_hash`` with its ``inclusion_proof`` in a tree of
    ``proof_tree_size`` nodes; ``edge_tiles_do_not_hash_to_root``: ``tiles``;
    ``wrong_length``).
``bad_entry``
    ``reason`` is ``leaf_hash_mismatch`` (``entry`` does not hash to
    ``leaf_hash``, which ``inclusion_proof`` places at ``index``),
    ``does_not_decode`` or ``bad_signature`` (the entry *is* in the signed tree,
    proven by ``inclusion_proof``, but the log must have refused it),
    ``bundle_malformed`` or ``bundle_does_not_match_checkpoint``
    (``bundle_data``).
``signer_equivocation`` / ``identity_equivocation`` / ``conflicting_signers``
    One signer / one signer under two spellings of the filename / different
    signers attesting different hashes for one file -- compared by file
    identity (:func:`sigledger.ledger.entry.file_identity`), so ``Foo-1.0.tar.gz`` and
    ``foo-1.0.0.tar.gz`` are one file: ``project``, ``version``, ``filename``,
    ``identity``, ``entries``, both, each with ``index``, ``entry`` and
    ``inclusion_proof`` against ``checkpoint``. ``identity_equivocation`` is
    possible only in a log written before the identity rule, or by a log that
    ignores it.
``conflicting_observations``
    As ``conflicting_signers`` when at least one of the two entries is an
    observation (``kind`` in each entry says which): an index served one
    observer other bytes for a file than another observer or the publisher
    logged -- a targeted attack or a changed file. Both statements are in
    ``entries``, each with its inclusion proof.
``rebuild``
    For a watched project: a wheel logged again with another build tag (a
    different file by the rules, but the same wheel name, version and tags):
    ``entries``, both.
``new_signer`` / ``new_release``
    For a watched project: a signer that never signed it before / a version
    never seen before: ``entry`` (``index``, ``entry``, ``inclusion_proof``);
    ``new_signer`` also ``previous_signers`` and ``trusted_by_policy``.
``stale_log``
    The checkpoint note has not changed (neither grown nor been re-signed or
    re-cosigned) for longer than ``stale_after_seconds``: ``checkpoint``,
    ``note_unchanged_since``, ``size_unchanged_since``, ``checked_at`` and the
    verified witness ``cosignature_times``.

``inconsistent_checkpoints``, ``signer_equivocation`` and
``identity_equivocation`` (the log broke its binding rule) and ``bad_entry``
with ``does_not_decode`` or ``bad_signature`` are evidence of log misbehavior
(:attr:`Alarm.misbehavior`).

Every alarm is raised once: the state remembers its key. A condition that
persists (a fork, a bad tile above the entries, a stale log) stops or repeats
nothing silently: later passes say "still ..." on stderr, and ``--once`` exits
(:func:`exit_status`) 4 when an alarm, new or persisting, is evidence of
misbehavior, 1 for any other alarm or verification failure, 3 when a log could
not be reached, else 0.

A log may be followed at several URLs (mirrors: the same origin and key); each
URL's checkpoint must be consistent with the newest verified from any of them,
so a split view between mirrors is an ``inconsistent_checkpoints`` alarm.

The state database (``--state``) is also an index for people: the view
``entry_index`` lists ``(log, idx, project, version, filename, sha256, signer,
time_ms)``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import json
import multiprocessing
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import aiohttp
import aiosqlite

from sigledger.client.install.policy import Policy
from sigledger.client.monitor import audit as follow
from sigledger.client.monitor.audit import EntryInfo
from sigledger.client.remote import LogClient, LogRefusedError
from sigledger.client.tiles import BadTileError, Finding, TileAuth
from sigledger.client.trust import CheckpointAcceptor
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import parse_checkpoint
from sigledger.ledger.entry import decode_entry, file_identity
from sigledger.ledger.errors import (
    ConfigError,
    FormatError,
    LedgerError,
    LogMisbehaviorError,
    NetworkError,
    VerificationError,
)
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Verifier, parse_note, verify_cosignature
from sigledger.ledger.service.httpclient import HttpClient
from sigledger.ledger.service.retry import Backoff, retrying
from sigledger.ledger.service.sqlite import (
    Database,
    check_schema_version,
    open_database,
    table_columns,
    transaction,
)
from sigledger.ledger.tiles import TILE_WIDTH

__all__ = [
    "ALARM_TYPES",
    "POOL_THRESHOLD",
    "Alarm",
    "AlarmSink",
    "CycleReport",
    "LogWatcher",
    "Monitor",
    "MonitorState",
    "MonitorTarget",
    "exit_status",
    "worker_pool",
]

ALARM_VERSION = 1
ALARM_TYPES = (
    "inconsistent_checkpoints",
    "bad_tile",
    "bad_entry",
    "signer_equivocation",
    "identity_equivocation",
    "conflicting_signers",
    "conflicting_observations",
    "rebuild",
    "new_signer",
    "new_release",
    "stale_log",
)
_MISBEHAVIOR_ENTRY_REASONS = ("does_not_decode", "bad_signature")

COMMIT_EVERY = 8192  # entries per state transaction during a catch-up
POOL_THRESHOLD = 16384  # entries to catch up before worker processes pay for themselves
DEFAULT_STALE_AFTER = 86400.0


def _entry_kind(evidence: dict[str, Any]) -> str:
    """``signature`` or ``observation``: the kind of the entry in ``evidence``."""
    try:
        return decode_entry(base64.b64decode(evidence["entry"])).signed.kind
    except (KeyError, ValueError, FormatError):
        return "signature"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\n")
    return h.hexdigest()[:32]


# --- alarms ---------------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    """One alarm (schema version 1, see the module docstring)."""

    type: str
    log: str
    message: str
    evidence: dict[str, Any]
    key: str  # identifies the condition, so it is raised once
    time_ms: int = field(default_factory=_now_ms)

    def __post_init__(self) -> None:
        if self.type not in ALARM_TYPES:
            raise AssertionError(f"bad math in Alarm: unknown alarm type {self.type!r}")

    @property
    def misbehavior(self) -> bool:
        """True when the evidence shows the *log* broke its promises."""
        if self.type in (
            "inconsistent_checkpoints",
            "signer_equivocation",
            "identity_equivocation",
        ):
            return True
        return self.type == "bad_entry" and (
            self.evidence.get("reason") in _MISBEHAVIOR_ENTRY_REASONS
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": ALARM_VERSION,
            "type": self.type,
            "log": self.log,
            "time": _iso(self.time_ms),
            "message": self.message,
            "evidence": self.evidence,
        }


class AlarmSink(HttpClient):
    """Writes alarms as JSON lines and POSTs them to a webhook (bounded, never fatal)."""

    user_agent = "sigledger-monitor/0.1"

    def __init__(
        self,
        webhook: str | None = None,
        *,
        out: TextIO | None = None,
        say: Callable[[str], None] | None = None,
        timeout: float = 5.0,
        attempts: int = 3,
    ) -> None:
        super().__init__(timeout)
        self.webhook = webhook
        self.out = out
        self.say = say or (lambda msg: print(msg, file=sys.stderr))
        self.timeout = timeout
        self.attempts = attempts
        self.emitted = 0

    async def start(self) -> None:
        """Open a session only when there is a webhook to post to."""
        if self.webhook:
            await super().start()

    async def emit(self, alarm: Alarm) -> None:
        doc = alarm.to_json()
        out = self.out or sys.stdout
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        out.flush()
        self.emitted += 1
        if self._session is not None and self.webhook:
            await self._post(doc)

    async def _post(self, doc: dict[str, Any]) -> None:
        session, webhook = self.session, self.webhook
        assert webhook

        async def attempt() -> int:
            async with session.post(webhook, json=doc) as resp:
                await resp.read()
                return resp.status

        try:
            status = await retrying(
                attempt,
                Backoff(self.attempts, first=0.25),
                again=_webhook_again,
                transient=(aiohttp.ClientError, TimeoutError),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = f"{exc.__class__.__name__}: {exc}"
        else:
            if status < 300:
                return
            problem = f"HTTP {status}"
        self.say(f"warning: webhook {webhook} did not take a {doc['type']} alarm ({problem})")


def _webhook_again(status: int, wait: float) -> float | None:
    """Taken (2xx) and refused (4xx but 429) are final; anything else is tried again."""
    if status < 300 or (400 <= status < 500 and status != 429):
        return None
    return wait


# --- state ----------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE,
    vkey TEXT NOT NULL,
    url TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    root BLOB,
    note BLOB,
    indexed INTEGER NOT NULL DEFAULT 0,
    note_changed_ms INTEGER,
    size_changed_ms INTEGER,
    checked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS signers (id INTEGER PRIMARY KEY, vkey TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS entries (
    log INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    project INTEGER NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    signer INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    identity TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (log, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_file ON entries (log, filename);
CREATE INDEX IF NOT EXISTS entries_project ON entries (log, project, version);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY,
    log INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    alarm TEXT NOT NULL
);
CREATE VIEW IF NOT EXISTS entry_index AS
    SELECT l.origin AS log, e.idx, p.name AS project, e.version, e.filename, e.sha256,
           s.vkey AS signer, e.time_ms
    FROM entries AS e JOIN logs AS l ON l.id = e.log JOIN projects AS p ON p.id = e.project
    JOIN signers AS s ON s.id = e.signer;
"""
_SCHEMA_VERSION = "2"
# Created after a schema 1 state has gained the column.
_LATE_INDEXES = "CREATE INDEX IF NOT EXISTS entries_identity ON entries (log, identity);"


@dataclass
class LogRecord:
    """One followed log as the state holds it. ``note`` is None until first verified."""

    id: int
    origin: str
    vkey: str
    url: str
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    note: bytes | None = None
    indexed: int = 0  # entries [0, indexed) are verified and in the index
    note_changed_ms: int | None = None
    size_changed_ms: int | None = None
    checked_ms: int | None = None


Prior = tuple[int, bytes, str, str]  # (index, sha256, signer vkey, filename) of an indexed entry


async def _migrate_identity(db: aiosqlite.Connection) -> None:
    """Schema 1 -> 2: the file identity of every indexed entry, from its filename."""
    if "identity" not in await table_columns(db, "entries"):
        await db.execute("ALTER TABLE entries ADD COLUMN identity TEXT NOT NULL DEFAULT ''")
    async with db.execute("SELECT log, idx, filename FROM entries") as cur:
        rows = [(file_identity(str(f)).key, int(log), int(i)) for log, i, f in await cur.fetchall()]
    await db.executemany("UPDATE entries SET identity = ? WHERE log = ? AND idx = ?", rows)


class MonitorState:
    """The monitor's SQLite database. Open with :meth:`open`; one process at a time."""

    def __init__(self, database: Database) -> None:
        self.path = database.path
        self._database = database
        self._db = database.conn
        self._projects: dict[str, int] = {}
        self._signers: dict[str, int] = {}
        self._signer_vkeys: dict[int, str] = {}
        self._records: dict[str, LogRecord] = {}  # by origin, as last handed out by log()
        # One connection serves every followed log: transactions take turns, and run to
        # the end even when the pass that started them is cancelled (see _write).
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, path: Path | str) -> MonitorState:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the monitor state {path}: {exc}") from None

        async def setup(db: aiosqlite.Connection) -> None:
            await check_schema_version(
                db,
                _SCHEMA_VERSION,
                f"the monitor state {path}",
                migrations={"1": _migrate_identity},
                error=ConfigError,
            )
            await db.executescript(_LATE_INDEXES)

        database = await open_database(
            path,
            _SCHEMA,
            "monitor",
            synchronous="NORMAL",
            setup=setup,
            locked=ConfigError(
                f"another monitor is using the state {path}; give each monitor its own --state"
            ),
            failed=lambda detail: ConfigError(f"cannot use the monitor state {path}: {detail}"),
        )
        state = cls(database)
        try:
            await state._load()
        except BaseException as exc:
            await state.close()
            if isinstance(exc, sqlite3.Error):
                raise ConfigError(f"cannot use the monitor state {path}: {exc}") from None
            raise
        return state

    async def _load(self) -> None:
        async with self._db.execute("SELECT id, name FROM projects") as cur:
            self._projects = {str(name): int(i) for i, name in await cur.fetchall()}
        async with self._db.execute("SELECT id, vkey FROM signers") as cur:
            self._signers = {str(vkey): int(i) for i, vkey in await cur.fetchall()}
        self._signer_vkeys = {i: v for v, i in self._signers.items()}

    async def close(self) -> None:
        try:
            if self._writes:
                await asyncio.gather(*self._writes, return_exceptions=True)
        finally:
            await self._database.close()

    async def _write(self, work: Awaitable[None]) -> None:
        """Run ``work`` (one transaction) to completion even if the caller is cancelled."""
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        await asyncio.shield(task)

    async def log(self, origin: str, vkey: str, url: str) -> LogRecord:
        """The record of ``origin``, created on first use. A different key is refused."""
        async with self._db.execute(
            "SELECT id, vkey, size, root, note, indexed, note_changed_ms, size_changed_ms,"
            " checked_ms FROM logs WHERE origin = ?",
            (origin,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            async with self._lock:
                cur2 = await self._db.execute(
                    "INSERT INTO logs (origin, vkey, url, root) VALUES (?, ?, ?, ?)",
                    (origin, vkey, url, merkle.EMPTY_ROOT),
                )
            assert cur2.lastrowid is not None
            rec = LogRecord(int(cur2.lastrowid), origin, vkey, url)
            self._records[origin] = rec
            return rec
        if row[1] != vkey:
            raise ConfigError(
                f"the monitor state {self.path} follows {origin} under the key {row[1]}, "
                f"not {vkey}; use another --state for a log with another key"
            )
        if url:
            async with self._lock:
                await self._db.execute("UPDATE logs SET url = ? WHERE id = ?", (url, row[0]))
        rec = LogRecord(
            int(row[0]),
            origin,
            vkey,
            url,
            int(row[2]),
            bytes(row[3]) if row[3] is not None else merkle.EMPTY_ROOT,
            bytes(row[4]) if row[4] is not None else None,
            int(row[5]),
            row[6],
            row[7],
            row[8],
        )
        self._records[origin] = rec
        return rec

    # The CheckpointStore of the monitor (sigledger.client.trust): the trusted note of a log
    # lives in its record (see log()); put() stages it there, and the next save(rec)
    # writes it in one transaction with the times that go with it.

    def get(self, origin: str) -> bytes | None:
        """The last verified checkpoint note of ``origin`` (None before the first)."""
        rec = self._records.get(origin)
        return rec.note if rec is not None else None

    def put(self, origin: str, note: bytes) -> None:
        """Make ``note`` (accepted by the checkpoint acceptor) the record's checkpoint."""
        rec = self._records.get(origin)
        if rec is None:
            raise ConfigError(f"the monitor state has no record of {origin}; call log() first")
        cp = parse_checkpoint(parse_note(note).text)
        rec.size, rec.root, rec.note = cp.size, cp.root, note

    def _head_params(self, rec: LogRecord) -> tuple[Any, ...]:
        return (
            rec.size,
            rec.root,
            rec.note,
            rec.indexed,
            rec.note_changed_ms,
            rec.size_changed_ms,
            rec.checked_ms,
            rec.id,
        )

    _SAVE_HEAD = (
        "UPDATE logs SET size = ?, root = ?, note = ?, indexed = ?, note_changed_ms = ?,"
        " size_changed_ms = ?, checked_ms = ? WHERE id = ?"
    )

    async def save(self, rec: LogRecord, alarms: Iterable[Alarm] = ()) -> None:
        """Store ``rec`` (and remember ``alarms`` as raised) in one transaction."""
        await self._write(
            self._transaction([(self._SAVE_HEAD, [self._head_params(rec)])], rec.id, list(alarms))
        )

    async def add_entries(
        self, rec: LogRecord, rows: Sequence[tuple[int, EntryInfo]], alarms: Iterable[Alarm] = ()
    ) -> None:
        """Index ``rows`` and store ``rec`` (its ``indexed`` advanced) in one transaction."""
        await self._write(self._add_entries(rec, rows, list(alarms)))

    async def _add_entries(
        self, rec: LogRecord, rows: Sequence[tuple[int, EntryInfo]], alarms: list[Alarm]
    ) -> None:
        new_projects: list[tuple[int, str]] = []
        new_signers: list[tuple[int, str]] = []
        params = []
        for idx, (project, version, filename, sha256, signer, time_ms, identity) in rows:
            pid = self._projects.get(project)
            if pid is None:
                pid = self._projects[project] = len(self._projects) + 1
                new_projects.append((pid, project))
            sid = self._signers.get(signer)
            if sid is None:
                sid = self._signers[signer] = len(self._signers) + 1
                self._signer_vkeys[sid] = signer
                new_signers.append((sid, signer))
            params.append((rec.id, idx, pid, version, filename, sha256, sid, time_ms, identity))
        try:
            await self._transaction(
                [
                    ("INSERT INTO projects (id, name) VALUES (?, ?)", new_projects),
                    ("INSERT INTO signers (id, vkey) VALUES (?, ?)", new_signers),
                    (
                        "INSERT INTO entries (log, idx, project, version, filename, sha256,"
                        " signer, time_ms, identity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        params,
                    ),
                    (self._SAVE_HEAD, [self._head_params(rec)]),
                ],
                rec.id,
                alarms,
            )
        except BaseException:
            for _pid, name in new_projects:
                del self._projects[name]
            for sid, vkey in new_signers:
                del self._signers[vkey]
                del self._signer_vkeys[sid]
            raise

    async def _transaction(
        self,
        statements: Sequence[tuple[str, Sequence[Sequence[Any]]]],
        log_id: int,
        alarms: Iterable[Alarm],
    ) -> None:
        alarm_rows = [
            (log_id, a.key, a.type, a.time_ms, json.dumps(a.to_json(), separators=(",", ":")))
            for a in alarms
        ]
        async with self._lock, transaction(self._db, self._write_failed) as db:
            for sql, params in statements:
                if params:
                    await db.executemany(sql, params)
            if alarm_rows:
                await db.executemany(
                    "INSERT OR IGNORE INTO alarms (log, key, type, time_ms, alarm)"
                    " VALUES (?, ?, ?, ?, ?)",
                    alarm_rows,
                )

    def _write_failed(self, exc: sqlite3.Error) -> ConfigError:
        return ConfigError(f"cannot write the monitor state {self.path}: {exc}")

    async def alarm_known(self, key: str) -> bool:
        async with self._db.execute("SELECT 1 FROM alarms WHERE key = ?", (key,)) as cur:
            return await cur.fetchone() is not None

    async def prior_entries(self, log_id: int, identities: Iterable[str]) -> dict[str, list[Prior]]:
        """Indexed entries of these file identities (any spelling of each file)."""
        wanted = sorted(set(identities))
        out: dict[str, list[Prior]] = {}
        if not wanted:
            return out
        async with self._db.execute(
            # The identities drive the join (CROSS JOIN fixes the order): without
            # statistics SQLite would rather scan every entry of the log.
            "SELECT e.identity, e.idx, e.sha256, e.signer, e.filename FROM json_each(?) AS k"
            " CROSS JOIN entries AS e INDEXED BY entries_identity"
            " WHERE e.log = ? AND e.identity = k.value",
            (json.dumps(wanted), log_id),
        ) as cur:
            for identity, idx, sha, sid, filename in await cur.fetchall():
                out.setdefault(str(identity), []).append(
                    (int(idx), bytes(sha), self._signer_vkeys[int(sid)], str(filename))
                )
        for priors in out.values():
            priors.sort()
        return out

    async def release_files(self, log_id: int, project: str, version: str) -> list[tuple[int, str]]:
        """(index, filename) of the indexed entries of one release."""
        pid = self._projects.get(project)
        if pid is None:
            return []
        async with self._db.execute(
            "SELECT idx, filename FROM entries WHERE log = ? AND project = ? AND version = ?",
            (log_id, pid, version),
        ) as cur:
            return [(int(i), str(f)) for i, f in await cur.fetchall()]

    async def project_history(self, log_id: int, project: str) -> tuple[set[str], set[str]]:
        """(versions, signer vkeys) indexed so far for ``project``."""
        pid = self._projects.get(project)
        if pid is None:
            return set(), set()
        async with self._db.execute(
            "SELECT DISTINCT version, signer FROM entries WHERE log = ? AND project = ?",
            (log_id, pid),
        ) as cur:
            rows = await cur.fetchall()
        return {str(r[0]) for r in rows}, {self._signer_vkeys[int(r[1])] for r in rows}

    async def count_entries(self, log_id: int) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM entries WHERE log = ?", (log_id,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0


# --- following one log ----------------------------------------------------------


@dataclass(frozen=True)
class MonitorTarget:
    """A log to follow: where, its key and origin, the witnesses its checkpoints need."""

    url: str
    verifier: Verifier
    origin: str
    witnesses: tuple[Verifier, ...] = ()
    witness_quorum: int = 0


@dataclass
class CycleReport:
    """What one pass over one log found."""

    origin: str
    alarms: list[Alarm] = field(default_factory=list)
    known: list[Alarm] = field(default_factory=list)  # raised before and still true
    error: LedgerError | None = None
    tree_size: int | None = None
    new_entries: int = 0

    @property
    def misbehavior(self) -> bool:
        return any(a.misbehavior for a in [*self.alarms, *self.known])


class _StopFollowingError(Exception):
    """Stop this log's cycle: an alarm says its history cannot be followed further."""


class LogWatcher:
    """Follows one log (see :class:`Monitor`), at one URL or several (mirrors).

    Mirrors are URLs serving the same log (same origin and key): every checkpoint
    from each must be consistent with the newest one verified from any, so a split
    view between them raises ``inconsistent_checkpoints``.
    """

    def __init__(
        self,
        targets: Sequence[MonitorTarget],
        state: MonitorState,
        sink: AlarmSink,
        *,
        watch: frozenset[str],
        policy: Policy | None,
        stale_after: float,
        executor: Callable[[int], concurrent.futures.Executor | None],
        say: Callable[[str], None],
    ) -> None:
        if not targets or len({(t.origin, t.verifier.vkey) for t in targets}) != 1:
            raise ConfigError("the URLs of one log must share its origin and key")
        self.targets = tuple(targets)
        self.target = targets[0]  # the URL being checked
        self.state = state
        self.sink = sink
        self.watch = watch
        self.policy = policy
        self.stale_after = stale_after
        self._executor = executor
        self.say = say
        self._history: dict[str, tuple[set[str], set[str]]] = {}
        self._acceptors = tuple(
            CheckpointAcceptor(
                t.verifier,
                state,
                t.origin,
                witnesses=t.witnesses,
                witness_quorum=t.witness_quorum,
            )
            for t in self.targets
        )

    @property
    def origin(self) -> str:
        return self.target.origin

    def _evidence(self, evidence: dict[str, Any]) -> dict[str, Any]:
        return {"log_key": self.target.verifier.vkey, "log_url": self.target.url, **evidence}

    def _alarm(self, type_: str, message: str, evidence: dict[str, Any], key: str) -> Alarm:
        return Alarm(type_, self.origin, message, self._evidence(evidence), f"{type_}:{key}")

    async def _raise(self, report: CycleReport, alarms: Sequence[Alarm]) -> list[Alarm]:
        """Emit the alarms not raised before; returns them."""
        fresh = []
        for alarm in alarms:
            if await self.state.alarm_known(alarm.key):
                report.known.append(alarm)
                continue
            await self.sink.emit(alarm)
            report.alarms.append(alarm)
            fresh.append(alarm)
        return fresh

    async def _raise_once(self, report: CycleReport, rec: LogRecord, alarm: Alarm) -> None:
        fresh = await self._raise(report, [alarm])
        if fresh:
            await self.state.save(rec, fresh)

    def _finding_alarm(self, finding: Finding) -> Alarm:
        ev = finding.evidence
        # Not the bundle's path: a partial bundle is fetched again, under another
        # width, until it is full, and must not raise the same alarm again.
        key = _digest(
            str(finding.index),
            str(ev.get("reason")),
            str(ev.get("tile", "")),
            str(ev.get("tile_data", ev.get("entry", ev.get("bundle_data", "")))),
            json.dumps(ev.get("tiles", [])),
        )
        return self._alarm(finding.type, finding.message, ev, key)

    async def cycle(self) -> CycleReport:
        """One pass: every URL of the log in turn, then the staleness check."""
        report = CycleReport(self.origin)
        first = self.targets[0]
        rec = await self.state.log(first.origin, first.verifier.vkey, first.url)
        checked = False
        for target in self.targets:
            self.target = target
            error: LedgerError | None = None
            try:
                async with LogClient(target.url) as client:
                    await self._cycle(client, rec, report)
                checked = True
            except _StopFollowingError:
                checked = False
                break
            except BadTileError as exc:
                await self._raise_once(report, rec, self._finding_alarm(exc.finding))
                error = exc
            except LogRefusedError as exc:
                error = VerificationError(
                    f"{target.url} refused to serve data its checkpoint commits to: {exc}"
                )
            except LedgerError as exc:
                error = exc
            if error is not None:
                self.say(f"{self.origin}: {target.url}: error: {error}")
                report.error = report.error or error
                self._history.clear()  # it may hold rows whose transaction failed
        self.target = first
        if checked:
            await self._check_stale(report, rec)
        report.tree_size = rec.size if rec.note is not None else None
        return report

    async def _cycle(self, client: LogClient, rec: LogRecord, report: CycleReport) -> None:
        note = await client.checkpoint()
        acceptor = self._acceptors[self.targets.index(self.target)]
        candidate = acceptor.check(note, self.target.url)
        cp = candidate.checkpoint
        auth: TileAuth | None = None
        proof: list[bytes] = []
        if candidate.relation in ("first", "newer"):
            # The new checkpoint's tiles must hash to its root before it anchors anything.
            auth = TileAuth(client, cp, note)
            await auth.start()
        if candidate.consistency is not None:
            older, newer = candidate.consistency
            if auth is None or auth.cp != newer.checkpoint:
                # An older checkpoint (a lagging mirror or cache): prove it a prefix
                # from tiles authenticated against the verified one.
                auth = TileAuth(client, newer.checkpoint, newer.note)
                await auth.start()
            proof = await auth.prove_consistency(older.checkpoint.size)
        try:
            accepted = acceptor.accept(candidate, proof)
        except LogMisbehaviorError as exc:
            await self._inconsistent(report, rec, exc)
            raise  # not reached: _inconsistent stops following this log
        now = _now_ms()
        if accepted.relation in ("first", "newer"):
            rec.note_changed_ms = rec.size_changed_ms = now
            rec.checked_ms = now
        elif accepted.stored:
            # Re-signed or re-cosigned: the same tree, a fresher note.
            rec.note_changed_ms = now
            rec.checked_ms = now
        if accepted.relation == "older":
            self.say(
                f"{self.origin}: {self.target.url} serves checkpoint {cp.size}, older than "
                f"the verified {rec.size} (consistent: a lagging mirror or cache)"
            )
        else:
            await self.state.save(rec)
        if rec.indexed < rec.size and cp.size >= rec.size:
            if auth is None or auth.size != rec.size:
                trusted = acceptor.trusted()
                assert trusted is not None
                auth = TileAuth(client, trusted.checkpoint, trusted.note)
                await auth.start()
            await self._follow_entries(auth, rec, report)

    async def _inconsistent(
        self, report: CycleReport, rec: LogRecord, exc: LogMisbehaviorError
    ) -> None:
        """Raise the ``inconsistent_checkpoints`` alarm once, and stop following the log."""
        first, second = (n.encode() for n in exc.evidence["checkpoints"])
        alarm = self._alarm(
            "inconsistent_checkpoints",
            str(exc),
            exc.evidence,
            _digest(*sorted((first, second))),
        )
        await self._raise_once(report, rec, alarm)
        raise _StopFollowingError

    async def _check_stale(self, report: CycleReport, rec: LogRecord) -> None:
        now = _now_ms()
        since = rec.note_changed_ms
        if since is None or now - since <= self.stale_after * 1000:
            return
        assert rec.note is not None
        cosigned = []
        with contextlib.suppress(FormatError):
            note = parse_note(rec.note)
            for w in self.target.witnesses:
                if w.alg != ALG_COSIGNATURE_V1:
                    continue
                for sig in note.signatures:
                    t = verify_cosignature(w, note.text, sig)
                    if t is not None:
                        cosigned.append({"witness": w.vkey, "time": _iso(t * 1000)})
        alarm = self._alarm(
            "stale_log",
            f"the checkpoint of {self.origin} (tree size {rec.size}) has not changed for "
            f"{(now - since) / 1000:.0f} s (limit {self.stale_after:.0f} s)",
            {
                "checkpoint": rec.note.decode(),
                "tree_size": rec.size,
                "note_unchanged_since": _iso(since),
                "size_unchanged_since": _iso(rec.size_changed_ms),
                "checked_at": _iso(now),
                "stale_after_seconds": self.stale_after,
                "cosignature_times": cosigned,
                "how_to_check": "the checkpoint verifies with log_key; the monitor first saw "
                "this exact note at note_unchanged_since and still got it at checked_at; "
                "witness cosignature times, where present, bound its age independently",
            },
            _digest(rec.note, str(since)),
        )
        await self._raise_once(report, rec, alarm)

    # -- entries -------------------------------------------------------------------

    async def _follow_entries(self, auth: TileAuth, rec: LogRecord, report: CycleReport) -> None:
        start, end = rec.indexed, rec.size
        executor = self._executor(end - start)
        rows: list[tuple[int, EntryInfo]] = []
        datas: dict[int, bytes] = {}
        alarms: list[Alarm] = []
        last_say = time.monotonic()
        async for res in follow.verify_range(auth, start, end, executor=executor):
            alarms.extend(self._finding_alarm(f) for f in res.findings)
            base = res.n * TILE_WIDTH
            for i, info in enumerate(res.infos):
                if info is not None:
                    idx = res.first + i
                    rows.append((idx, info))
                    if res.entries:
                        datas[idx] = res.entries[idx - base]
            if len(rows) >= COMMIT_EVERY or res.end == end:
                alarms.extend(await self._check_rows(auth, rec, rows, datas))
                rec.indexed = res.end
                fresh = await self._raise(report, alarms)
                await self.state.add_entries(rec, rows, fresh)
                report.new_entries += len(rows)
                rows, datas, alarms = [], {}, []
                if time.monotonic() - last_say > 5:
                    last_say = time.monotonic()
                    self.say(f"{self.origin}: verified {rec.indexed:,} of {end:,} entries")

    async def _check_rows(
        self,
        auth: TileAuth,
        rec: LogRecord,
        rows: Sequence[tuple[int, EntryInfo]],
        datas: dict[int, bytes],
    ) -> list[Alarm]:
        """Check new rows against the history (and each other); return their alarms."""
        priors = await self.state.prior_entries(rec.id, (info[6] for _, info in rows))
        alarms: list[Alarm] = []
        for idx, info in rows:
            project, _version, filename, sha256, signer, _time_ms, identity = info
            before = priors.setdefault(identity, [])
            same = next((p for p in before if p[2] == signer and p[1] != sha256), None)
            other = next((p for p in before if p[2] != signer and p[1] != sha256), None)
            before.append((idx, sha256, signer, filename))
            if same is not None or other is not None:
                alarms.append(await self._conflict(auth, info, idx, datas, same or other))
            if project in self.watch:
                alarms.extend(await self._watched(auth, rec, info, idx, datas))
                alarms.extend(await self._rebuilds(auth, rec, info, idx, datas))
        return alarms

    async def _rebuilds(
        self, auth: TileAuth, rec: LogRecord, info: EntryInfo, idx: int, datas: dict[int, bytes]
    ) -> list[Alarm]:
        """A watched wheel logged again with another build tag: a rebuild, worth a look."""
        ident = file_identity(info[2])
        if not ident.build:
            return []
        out = []
        for p_idx, p_filename in await self.state.release_files(rec.id, info[0], info[1]):
            if p_idx != idx and ident.rebuilds(file_identity(p_filename)):
                entries = [await self._entry(auth, i, datas) for i in (p_idx, idx)]
                out.append(
                    self._alarm(
                        "rebuild",
                        f"{info[2]} (entry {idx}) rebuilds {p_filename} (entry {p_idx}) "
                        f"with build tag {ident.build!r}",
                        {
                            "checkpoint": auth.note_text,
                            "tree_size": auth.size,
                            "project": info[0],
                            "version": info[1],
                            "filename": info[2],
                            "entries": entries,
                        },
                        f"{p_idx}:{idx}",
                    )
                )
                break
        return out

    async def _entry(self, auth: TileAuth, idx: int, datas: dict[int, bytes]) -> dict[str, Any]:
        return await auth.entry_evidence(idx, datas.get(idx))

    async def _conflict(
        self,
        auth: TileAuth,
        info: EntryInfo,
        idx: int,
        datas: dict[int, bytes],
        prior: Prior | None,
    ) -> Alarm:
        assert prior is not None
        project, version, filename, sha256, signer, _, identity = info
        p_idx, p_sha, p_signer, p_filename = prior
        equivocation = p_signer == signer
        entries = []
        kinds = []
        for i, sha, who in ((p_idx, p_sha, p_signer), (idx, sha256, signer)):
            ev = await self._entry(auth, i, datas)
            kinds.append(_entry_kind(ev))
            entries.append({**ev, "kind": kinds[-1], "signer": who, "sha256": sha.hex()})
        observed = "observation" in kinds
        if equivocation and observed and p_filename == filename:
            type_ = "signer_equivocation"
            message = (
                f"observer {signer} logged two different hashes for {filename} "
                f"(entries {p_idx} and {idx}); the log broke its binding rule"
            )
        elif equivocation and p_filename != filename:
            type_ = "identity_equivocation"
            message = (
                f"{signer} attested two different hashes for one file spelled {p_filename} "
                f"and {filename} (entries {p_idx} and {idx}); the log broke its binding rule"
            )
        elif equivocation:
            type_ = "signer_equivocation"
            message = (
                f"{signer} attested two different hashes for {filename} "
                f"(entries {p_idx} and {idx}); the log broke its binding rule"
            )
        elif observed:
            type_ = "conflicting_observations"
            message = (
                f"{kinds[0]} by {p_signer} and {kinds[1]} by {signer} give different hashes "
                f"for {filename} (entries {p_idx} and {idx}): an index served different bytes "
                "for one file"
            )
        else:
            type_ = "conflicting_signers"
            message = (
                f"{p_signer} and {signer} attest different hashes for {filename} "
                f"(entries {p_idx} and {idx})"
            )
        return self._alarm(
            type_,
            message,
            {
                "checkpoint": auth.note_text,
                "tree_size": auth.size,
                "project": project,
                "version": version,
                "filename": filename,
                "identity": identity,
                "entries": entries,
                "how_to_check": follow.HOW_TO_CHECK_ENTRY
                + " for each of entries with leaf_hash = SHA-256(0x00 || entry); "
                "sigledger.ledger.entry.decode_entry shows filenames with the same "
                "sigledger.ledger.entry.file_identity "
                + ("and signer " if equivocation else "from different signers ")
                + "with different sha256, and verify() holds for both (SignedStatement "
                "for a signature, SignedObservation for an observation: see kind)",
            },
            f"{p_idx}:{idx}",
        )

    async def _watched(
        self, auth: TileAuth, rec: LogRecord, info: EntryInfo, idx: int, datas: dict[int, bytes]
    ) -> list[Alarm]:
        project, version, filename, sha256, signer, _, _ = info
        history = self._history.get(project)
        if history is None:
            history = self._history[project] = await self.state.project_history(rec.id, project)
        versions, signers = history
        alarms: list[Alarm] = []
        if version in versions and signer in signers:
            return alarms
        entry = await self._entry(auth, idx, datas)
        # an observer key observed the file; it did not sign a release
        signed = "observed" if _entry_kind(entry) == "observation" else "signed"
        if version not in versions:
            alarms.append(
                self._alarm(
                    "new_release",
                    f"new release {project} {version} ({filename}, entry {idx})"
                    f" {signed} by {signer}",
                    {
                        "checkpoint": auth.note_text,
                        "tree_size": auth.size,
                        "project": project,
                        "version": version,
                        "filename": filename,
                        "sha256": sha256.hex(),
                        "signer": signer,
                        "entry": entry,
                        "how_to_check": follow.HOW_TO_CHECK_ENTRY
                        + " for entry; decode_entry(entry) names this project and version",
                    },
                    f"{project}:{version}",
                )
            )
        if signer not in signers:
            rule = self.policy.rule_for(project) if self.policy is not None else None
            trusted = None if rule is None or rule.any_signer else signer in rule.trusted_keys
            alarms.append(
                self._alarm(
                    "new_signer",
                    f"{signer} {signed} {project} for the first time ({filename}, entry {idx})"
                    + (" and the policy does not trust it" if trusted is False else ""),
                    {
                        "checkpoint": auth.note_text,
                        "tree_size": auth.size,
                        "project": project,
                        "signer": signer,
                        "previous_signers": sorted(signers),
                        "trusted_by_policy": trusted,
                        "entry": entry,
                        "how_to_check": follow.HOW_TO_CHECK_ENTRY
                        + " for entry; decode_entry(entry) is signed by signer",
                    },
                    f"{project}:{signer}",
                )
            )
        versions.add(version)
        signers.add(signer)
        return alarms


# --- the monitor ----------------------------------------------------------------


def worker_pool(workers: int) -> concurrent.futures.Executor:
    """Worker processes for :func:`sigledger.client.monitor.audit.check_bundle`.

    Spawned, never forked: this process runs threads (aiosqlite). Spawned
    workers are this process's own children, so their CPU time is accounted to
    it (``wait4``, ``RUSAGE_CHILDREN``) once the pool shuts down.
    """
    ctx = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


class Monitor:
    """Follow ``targets``; use as ``async with Monitor(...) as m: await m.run_once()``."""

    def __init__(
        self,
        targets: Sequence[MonitorTarget],
        state_path: Path,
        *,
        watch: Iterable[str] = (),
        policy: Policy | None = None,
        webhook: str | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
        workers: int = 0,
        out: TextIO | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not targets:
            raise ConfigError("no log to monitor: give --log URL --log-key VKEY or a policy")
        self.groups: dict[str, list[MonitorTarget]] = {}
        for t in targets:
            group = self.groups.setdefault(t.origin, [])
            if group and group[0].verifier.vkey != t.verifier.vkey:
                raise ConfigError(f"two keys given for the log {t.origin}")
            if t.url not in {g.url for g in group}:
                group.append(t)
        self.targets = tuple(targets)
        self.state_path = state_path
        self.watch = frozenset(watch)
        self.policy = policy
        self.stale_after = stale_after
        self.workers = workers
        self.say = say or (lambda msg: print(msg, file=sys.stderr))
        self.sink = AlarmSink(webhook, out=out, say=self.say)
        self._state: MonitorState | None = None
        self._pool: concurrent.futures.Executor | None = None
        self._watchers: list[LogWatcher] = []

    async def __aenter__(self) -> Monitor:
        self._state = await MonitorState.open(self.state_path)
        try:
            await self.sink.__aenter__()
        except BaseException:
            await self._state.close()
            raise
        self._watchers = [
            LogWatcher(
                group,
                self._state,
                self.sink,
                watch=self.watch,
                policy=self.policy,
                stale_after=self.stale_after,
                executor=self._executor,
                say=self.say,
            )
            for group in self.groups.values()
        ]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.sink.__aexit__(t, e, tb)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._state is not None:
                await self._state.close()

    def _executor(self, entries: int) -> concurrent.futures.Executor | None:
        if self.workers < 2 or entries < POOL_THRESHOLD:
            return None
        if self._pool is None:
            self._pool = worker_pool(self.workers)
        return self._pool

    async def run_once(self) -> list[CycleReport]:
        """One pass over every log (concurrently); each report says what it found."""
        reports = list(await asyncio.gather(*(w.cycle() for w in self._watchers)))
        for r in reports:
            for alarm in r.known:
                self.say(f"{r.origin}: still {alarm.type} (raised before): {alarm.message}")
            if r.error is None and r.tree_size is not None:
                self.say(
                    f"{r.origin}: verified tree size {r.tree_size:,} "
                    f"(+{r.new_entries:,} entries, {len(r.alarms)} alarms)"
                )
        return reports

    async def run_forever(self, interval: float, stop: asyncio.Event) -> None:
        """Run passes every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            cycle = asyncio.ensure_future(self.run_once())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({cycle, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not cycle.done():
                cycle.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cycle
            stopper.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def exit_status(reports: Sequence[CycleReport]) -> int:
    """4 misbehavior, 1 any other alarm or failure, 3 network failure only, else 0."""
    if any(r.misbehavior for r in reports):
        return 4
    if any(r.alarms or r.known for r in reports) or any(
        r.error is not None and not isinstance(r.error, NetworkError) for r in reports
    ):
        return 1
    if any(isinstance(r.error, NetworkError) for r in reports):
        return 3
    return 0
