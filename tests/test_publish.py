"""Static publication (ledger/log/publish.py): files at the read API's paths,
written once, checkpoint last, caught up on start."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import pytest

from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from sigledger.ledger.log.publish import StaticPublisher, changed_tiles
from sigledger.ledger.log.sequencer import Sequencer, SequencerConfig
from sigledger.ledger.log.storage import Storage
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.config import load_config
from sigledger.ledger.service.sqlite import StorageError
from tests.helpers import ROOT, signed
from tests.memtree import MemoryTree

LOG = Signer.from_seed("example.org/log", bytes(32))
ALICE = Signer.from_seed("alice", bytes([1]) * 32)


async def _open(path: Path) -> Storage:
    store = await Storage.open(path)
    if await store.get_meta("origin") is None:
        await store.initialize(
            {"origin": "example.org/log", "vkey": LOG.vkey}, merkle.EMPTY_ROOT, 0
        )
    return store


async def _sequencer(store: Storage, out: Path | None) -> Sequencer:
    static = StaticPublisher(store, out) if out is not None else None
    seq = Sequencer(
        store, LOG, "example.org/log", SequencerConfig(batch_max_age=0.002), static=static
    )
    await seq.start()
    return seq


async def _add(seq: Sequencer, first: int, count: int, per_request: int = 7) -> None:
    await asyncio.gather(
        *(
            seq.submit(
                [
                    signed(ALICE, version=f"{i}.0")
                    for i in range(s, min(s + per_request, first + count))
                ]
            )
            for s in range(first, first + count, per_request)
        )
    )


def check_directory(out: Path, verifier_key: str | None = None) -> int:
    """Everything the checkpoint on disk needs is there and authenticates; its size."""
    note = (out / "checkpoint").read_bytes()
    cp, _ = open_checkpoint(note, Verifier.from_vkey(verifier_key or LOG.vkey))
    entries: list[bytes] = []
    for n in range((cp.size + 255) // 256):
        ref = tiles.TileRef(-1, n, min(256, cp.size - 256 * n))
        entries += tiles.decode_entry_bundle((out / ref.path).read_bytes())
    assert len(entries) == cp.size
    tree = MemoryTree(merkle.leaf_hash(e) for e in entries)
    assert tree.root() == cp.root
    # every hash tile of that size: the edge ones and every full one
    for ref in changed_tiles(0, cp.size):
        if ref.is_entries:
            continue
        body = (out / ref.path).read_bytes()
        assert len(body) == 32 * ref.width, ref.path
        for i in range(ref.width):
            assert body[32 * i : 32 * i + 32] == tree.node(8 * ref.level, ref.n * 256 + i)
    return cp.size


def test_publish_dir_setting(tmp_path: Path) -> None:
    assert load_config(environ={}).publish_dir == ""
    toml = tmp_path / "s.toml"
    toml.write_text('publish-dir = "/srv/a"\n')
    assert load_config(str(toml), environ={}).publish_dir == "/srv/a"
    env = {"SIGLEDGER_PUBLISH_DIR": "/srv/b"}
    assert load_config(str(toml), environ=env).publish_dir == "/srv/b"
    assert load_config(str(toml), {"publish_dir": "/srv/c"}, env).publish_dir == "/srv/c"
    assert "publish_dir" in (ROOT / "deploy" / "sigledger.toml").read_text()


def test_changed_tiles() -> None:
    paths = [r.path for r in changed_tiles(0, 3)]
    assert paths == ["tile/0/000.p/3", "tile/entries/000.p/3"]
    paths = [r.path for r in changed_tiles(255, 257)]
    assert paths == [
        "tile/0/000",
        "tile/entries/000",
        "tile/0/001.p/1",
        "tile/entries/001.p/1",
        "tile/1/000.p/1",
    ]
    assert list(changed_tiles(300, 300)) == []
    big = [r.path for r in changed_tiles(256**2 - 1, 256**2)]
    assert big == ["tile/0/255", "tile/entries/255", "tile/1/000", "tile/2/000.p/1"]
    with pytest.raises(ValueError):
        list(changed_tiles(5, 4))


async def test_publishes_every_checkpoint_files_first(tmp_path: Path) -> None:
    out = tmp_path / "public"
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, out)
    try:
        assert seq.static is not None
        await seq.static.flush()
        assert check_directory(out) == 0  # even the empty log has a checkpoint
        for start, count in ((0, 5), (5, 300), (305, 1)):
            await _add(seq, start, count)
            await seq.static.flush()
            assert check_directory(out) == start + count
        assert (out / "checkpoint").read_bytes() == seq.published.note  # type: ignore[union-attr]
        # partial tiles of earlier sizes are kept; full tiles have no width suffix
        assert (out / "tile/0/000").stat().st_size == 256 * 32
        assert (out / "tile/entries/000.p/5").exists()
        assert (out / "tile/0/001.p/50").exists()
        mode = stat.S_IMODE((out / "tile/0/000").stat().st_mode)
        assert mode == 0o644
        assert stat.S_IMODE((out / "tile/0").stat().st_mode) == 0o755
        assert seq.static.error is None
        assert not list(out.rglob("*.tmp"))
    finally:
        await seq.stop()
        await store.close()


async def test_catch_up_on_start(tmp_path: Path) -> None:
    """A log run without the option, then with it: everything appears on start."""
    out = tmp_path / "public"
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, None)
    await _add(seq, 0, 600, per_request=50)
    await seq.stop()
    seq = await _sequencer(store, out)
    try:
        assert seq.static is not None
        await seq.static.flush()
        assert check_directory(out) == 600
        written = seq.static.stats.files
        # full tiles 0, 1 plus edge tiles at level 0 and 1, bundles 0, 1 and the edge
        assert written == 7
    finally:
        await seq.stop()
    # a directory behind the database (the process died before its files)
    (out / "checkpoint").unlink()
    (out / "tile/0/002.p/88").unlink()
    seq = await _sequencer(store, out)
    try:
        assert seq.static is not None
        await seq.static.flush()
        assert check_directory(out) == 600
        assert seq.static.stats.files == 1  # only the missing one
        assert seq.static.stats.skipped == 6
    finally:
        await seq.stop()
        await store.close()


async def test_crash_between_tiles_and_checkpoint(tmp_path: Path) -> None:
    """Files of the next size already there (the crash came before the checkpoint):
    the old checkpoint stays valid, and the catch-up completes without rewriting."""
    out = tmp_path / "public"
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, out)
    assert seq.static is not None
    await _add(seq, 0, 10)
    await seq.static.flush()
    old_note = (out / "checkpoint").read_bytes()
    await seq.stop()
    # write the next size's tiles but not its checkpoint, as a crash would leave them
    seq = await _sequencer(store, None)
    await _add(seq, 10, 290)
    await seq.stop()
    partial = StaticPublisher(store, out)
    refs = list(changed_tiles(10, 300))
    files = await partial._contents(refs[:3])
    partial._write_files(files, set())
    assert (out / "checkpoint").read_bytes() == old_note
    assert check_directory(out) == 10  # still consistent
    seq = await _sequencer(store, out)
    try:
        assert seq.static is not None
        await seq.static.flush()
        assert check_directory(out) == 300
        assert seq.static.stats.skipped == 3
    finally:
        await seq.stop()
        await store.close()


async def test_refuses_to_overwrite_a_different_tile(tmp_path: Path) -> None:
    out = tmp_path / "public"
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, None)
    await _add(seq, 0, 256)
    await seq.stop()
    (out / "tile/0").mkdir(parents=True)
    (out / "tile/0/000").write_bytes(bytes(256 * 32))  # another tree's tile
    seq = await _sequencer(store, out)
    try:
        assert seq.static is not None
        await seq.static.flush()
        assert seq.static.error is not None and "already holds" in seq.static.error
        assert not (out / "checkpoint").exists()  # nothing names the foreign tile
        assert (out / "tile/0/000").read_bytes() == bytes(256 * 32)  # left for a person
        # the log itself keeps working; the directory just stops
        await _add(seq, 256, 3)
    finally:
        await seq.stop()
        await store.close()


async def test_refuses_a_directory_ahead_of_the_database(tmp_path: Path) -> None:
    out = tmp_path / "public"
    store = await _open(tmp_path / "a.db")
    seq = await _sequencer(store, out)
    await _add(seq, 0, 20)
    await seq.stop()
    await store.close()
    other = await _open(tmp_path / "b.db")  # e.g. an old backup: 5 entries
    seq = await _sequencer(other, out)
    try:
        await _add(seq, 0, 5)
        assert seq.static is not None
        await seq.static.flush()
        assert seq.static.error is not None and "names tree size 20" in seq.static.error
        assert check_directory(out) == 20
    finally:
        await seq.stop()
        await other.close()


class FailingReads(Storage):
    """Entry reads fail while ``failing`` is set (a storage hiccup)."""

    failing = False

    async def read_entries(self, start: int, end: int) -> list[bytes]:
        if self.failing:
            raise StorageError("injected read failure")
        return await super().read_entries(start, end)


async def test_retries_after_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "public"
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, None)
    await _add(seq, 0, 40)
    await seq.stop()
    await store.close()
    flaky = await FailingReads.open(tmp_path / "log.db")
    static = StaticPublisher(flaky, out, retry_after=0.05)
    seq = Sequencer(flaky, LOG, "example.org/log", SequencerConfig(), static=static)
    await seq.start()
    # The sequencer has loaded its tree (level-0 tiles are read from the entries);
    # the publisher's catch-up task has not run yet (no await since it was started).
    flaky.failing = True
    try:
        await static.flush()
        assert static.error is not None and "retrying" in static.error
        assert not (out / "checkpoint").exists()
        flaky.failing = False
        deadline = time.monotonic() + 10
        while static.error is not None or static.stats.size != 40:
            assert time.monotonic() < deadline, static.error
            await asyncio.sleep(0.02)
        assert check_directory(out) == 40
    finally:
        await seq.stop()
        await flaky.close()


async def test_never_steps_back(tmp_path: Path) -> None:
    out = tmp_path / "public"
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, out)
    try:
        await _add(seq, 0, 30)
        assert seq.static is not None
        await seq.static.flush()
        newer = (out / "checkpoint").read_bytes()
        # a second writer, still at an older checkpoint, must not win
        stale = StaticPublisher(store, out)
        note = sign_checkpoint(Checkpoint("example.org/log", 0, merkle.EMPTY_ROOT), LOG)
        stale._write_checkpoint(0, note)
        assert (out / "checkpoint").read_bytes() == newer
    finally:
        await seq.stop()
        await store.close()


async def test_cost_per_batch(tmp_path: Path) -> None:
    """A quick measurement: writing a batch's files takes milliseconds, in the
    background; receipts do not wait for it."""
    out = tmp_path / "public"
    store = await _open(tmp_path / "log.db")
    seq = await _sequencer(store, out)
    try:
        assert seq.static is not None
        await seq.static.flush()
        before = seq.static.stats.batches, seq.static.stats.seconds
        started = time.monotonic()
        for i in range(40):
            await _add(seq, 10 * i, 10, per_request=10)
        receipts_s = time.monotonic() - started
        await seq.static.flush()
        batches = seq.static.stats.batches - before[0]
        spent = seq.static.stats.seconds - before[1]
        print(
            f"static publication: {batches} checkpoints written for 40 batches, "
            f"{1000 * spent / max(1, batches):.1f} ms each; 40 receipts took "
            f"{1000 * receipts_s / 40:.1f} ms each"
        )
        assert check_directory(out) == 400
        assert 1 <= batches <= 40
    finally:
        await seq.stop()
        await store.close()
