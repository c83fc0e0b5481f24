"""Sequencer + storage in-process, with injected storage failures."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.errors import BindingConflictError, OverloadedError, ShuttingDownError
from sigledger.ledger.log.sequencer import Sequencer, SequencerConfig
from sigledger.ledger.log.storage import Storage
from sigledger.ledger.log.store import Batch
from sigledger.ledger.note import Signer
from sigledger.ledger.service.config import ServerConfig
from sigledger.ledger.service.sqlite import (
    StorageConflictError,
    StorageError,
    StorageLockedError,
)
from tests.helpers import signed

LOG = Signer.from_seed("example.org/log", bytes(32))
ALICE = Signer.from_seed("alice", bytes([1]) * 32)


class FlakyStorage(Storage):
    """Fails the next commit: before writing ("not persisted") or after ("but persisted")."""

    fail: str | None = None

    async def commit_batch(self, batch: Batch) -> None:
        mode, self.fail = self.fail, None
        if mode == "before":
            raise StorageError("injected failure, not persisted")
        await super().commit_batch(batch)
        if mode == "after":
            raise StorageError("injected failure, but persisted")


async def _open(path: Path, cls: type[Storage] = Storage) -> Storage:
    store = await cls.open(path)
    if await store.get_meta("origin") is None:
        await store.initialize(
            {"origin": "example.org/log", "vkey": LOG.vkey}, merkle.EMPTY_ROOT, 0
        )
    return store


async def _sequencer(store: Storage, **cfg: Any) -> Sequencer:
    seq = Sequencer(
        store, LOG, "example.org/log", SequencerConfig(**{"batch_max_age": 0.005, **cfg})
    )
    await seq.start()
    return seq


async def _all_entries(store: Storage, size: int) -> list[bytes]:
    return await store.read_entries(0, size)


async def test_batches_concurrent_submissions(tmp_path: Path) -> None:
    store = await _open(tmp_path / "log.db")
    batches: list[int] = []
    seq = Sequencer(
        store,
        LOG,
        "example.org/log",
        SequencerConfig(batch_max_age=0.05),
        on_batch=lambda n, _s: batches.append(n),
    )
    await seq.start()
    try:
        results = await asyncio.gather(
            *(seq.submit([signed(ALICE, version=f"{i}.0")]) for i in range(50))
        )
        assert sorted(r[0].index for r in results) == list(range(50))
        assert len(batches) < 10  # grouped, not one commit per statement
        pub = seq.published
        assert pub is not None and pub.size == 50
        cp, _ = open_checkpoint(pub.note, LOG.verifier())
        entries = await _all_entries(store, 50)
        assert merkle.tree_hash([merkle.leaf_hash(e) for e in entries]) == cp.root
        for (r,) in results:
            merkle.check_inclusion(
                r.index, r.tree_size, merkle.leaf_hash(r.entry), list(r.hashes), cp.root
            )
    finally:
        await seq.stop()
        await store.close()


@pytest.mark.parametrize("mode", ["before", "after"])
async def test_storage_failure_then_recovery(tmp_path: Path, mode: str) -> None:
    store = await _open(tmp_path / "log.db", FlakyStorage)
    assert isinstance(store, FlakyStorage)
    seq = await _sequencer(store)
    try:
        (first,) = await seq.submit([signed(ALICE, version="1.0")])
        store.fail = mode
        with pytest.raises(OverloadedError, match="could not store"):
            await seq.submit([signed(ALICE, version="2.0")])
        # the sequencer reloaded from storage and carries on
        for _ in range(100):
            if seq.healthy:
                break
            await asyncio.sleep(0.01)
        assert seq.healthy
        (again,) = await seq.submit([signed(ALICE, version="2.0")])
        assert again.existing == (mode == "after")
        (third,) = await seq.submit([signed(ALICE, version="3.0")])
        pub = seq.published
        assert pub is not None
        expected = 3
        assert pub.size == expected
        assert third.index == 2
    finally:
        await seq.stop()
        await store.close()
    # a fresh process on the same file sees one consistent history
    store2 = await _open(tmp_path / "log.db")
    seq2 = await _sequencer(store2)
    try:
        pub2 = seq2.published
        assert pub2 is not None and pub2.size == 3
        entries = await _all_entries(store2, 3)
        assert merkle.tree_hash([merkle.leaf_hash(e) for e in entries]) == pub2.root
        assert first.index == 0
    finally:
        await seq2.stop()
        await store2.close()


async def test_commit_without_note_is_resigned_identically(tmp_path: Path) -> None:
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store)
    (r,) = await seq.submit([signed(ALICE)])
    # simulate a crash right after the commit: no note was ever stored for size 1
    seq._unsaved_notes = []
    seq._stopping = True
    seq._wake.set()
    assert seq._task is not None
    await seq._task
    await store.close()
    store2 = await _open(tmp_path / "log.db")
    head = await store2.latest_head()
    assert head is not None and head.size == 1 and head.note is None
    seq2 = await _sequencer(store2)
    try:
        pub = seq2.published
        assert pub is not None
        assert pub.note == r.checkpoint  # Ed25519 is deterministic: the same bytes
    finally:
        await seq2.stop()
        await store2.close()


async def test_two_roots_for_one_size_are_impossible(tmp_path: Path) -> None:
    store = await _open(tmp_path / "log.db")
    try:
        with pytest.raises(StorageConflictError):
            await store.commit_batch(Batch([], {}, 0, b"\x01" * 32, 0))
        head = await store.latest_head()
        assert head is not None and head.root == merkle.EMPTY_ROOT
    finally:
        await store.close()


async def test_second_writer_is_refused(tmp_path: Path) -> None:
    store = await _open(tmp_path / "log.db")
    try:
        with pytest.raises(StorageLockedError):
            await Storage.open(tmp_path / "log.db")
    finally:
        await store.close()
    again = await Storage.open(tmp_path / "log.db")
    await again.close()


async def test_corrupted_tiles_are_detected_on_start(tmp_path: Path) -> None:
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store)
    await seq.submit([signed(ALICE, version=f"{i}.0") for i in range(5)])
    await seq.stop()
    await store.close()
    # Level-0 tiles are the entries' leaf hashes: a changed entry changes them.
    db = sqlite3.connect(tmp_path / "log.db")
    (data,) = db.execute("SELECT data FROM entries WHERE idx = 3").fetchone()
    db.execute("UPDATE entries SET data = ? WHERE idx = 3", (data[:-1] + b"\0",))
    db.commit()
    db.close()
    store2 = await _open(tmp_path / "log.db")
    try:
        with pytest.raises(StorageError, match="different root"):
            await _sequencer(store2)
    finally:
        await store2.close()


async def test_conflicts_queue_limits_and_shutdown(tmp_path: Path) -> None:
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, queue_max=3)
    try:
        await seq.submit([signed(ALICE, content=b"a")])
        with pytest.raises(BindingConflictError) as err:
            await seq.submit([signed(ALICE, content=b"b")])
        assert err.value.existing[0][0] == 0
        with pytest.raises(OverloadedError, match="queue is full"):
            await seq.submit([signed(ALICE, version=f"{i}.0") for i in range(4)])
    finally:
        await seq.stop()
    with pytest.raises(ShuttingDownError):
        await seq.submit([signed(ALICE, version="9.0")])
    await store.close()


async def test_databases_without_the_published_column_are_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "log.db")
    db.executescript(
        "CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL,"
        " time_ms INTEGER NOT NULL, note BLOB);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    )
    db.execute("INSERT INTO checkpoints VALUES (0, ?, 0, ?)", (merkle.EMPTY_ROOT, b"note"))
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.commit()
    db.close()
    store = await Storage.open(tmp_path / "log.db")
    try:
        head = await store.latest_head(published=True)
        assert head is not None
        assert head.published
        assert head.note == b"note"
    finally:
        await store.close()


def test_sequencer_config_is_the_servers_settings_of_the_same_names() -> None:
    cfg = ServerConfig(
        batch_max_size=7,
        batch_max_age=0.5,
        queue_max=9,
        checkpoint_period=2.0,
        tile_cache=3,
        witness_refresh=11.0,
    )
    assert SequencerConfig.of(cfg) == SequencerConfig(7, 0.5, 9, 2.0, 3, 11.0)
    assert SequencerConfig.of(ServerConfig()) == SequencerConfig()
