"""Client-side tile authentication against a checkpoint (simulated logs + a real server)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.remote import LogClient, LogRefusedError
from sigledger.client.tiles import BadTileError, DiskTileCache, TileAuth, TileSource
from sigledger.client.trust import VerifiedLog
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint, sign_checkpoint
from sigledger.ledger.errors import LogMisbehaviorError, VerificationError
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import LogProcess, signed
from tests.memtree import MemoryTree
from tests.simulator import SimulatedLog


def _tree(n: int) -> MemoryTree:
    return MemoryTree(merkle.leaf_hash(str(i).encode()) for i in range(n))


BIG = _tree(65536 + 700)


def tiles_of(size: int) -> SimulatedLog:
    """An honest log serving the hash tiles of BIG at ``size`` (404 beyond it)."""
    log = SimulatedLog.of_tree(BIG)
    log.publish(size)
    return log


async def prove(
    log: SimulatedLog, old: int, cache: Path | None = None, root: bytes | None = None
) -> list[bytes]:
    """The consistency proof ``old`` -> the published size, from tiles authenticated by
    TileAuth against the published checkpoint (or one signed over another ``root``)."""
    cp, note = log.checkpoint(log.size), log.note
    if root is not None:
        cp = Checkpoint(cp.origin, cp.size, root)
        note = sign_checkpoint(cp, log.key)
    disk = DiskTileCache(cache, cp.origin) if cache is not None else None
    auth = TileAuth(log, cp, note, disk=disk)
    await auth.start()
    return await auth.prove_consistency(old)


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 600, 65536, 65536 + 700])
async def test_consistency_proofs_from_tiles(size: int) -> None:
    rng = random.Random(size)
    for old in {0, 1, size // 2, size - 1, size, *rng.sample(range(size + 1), min(size, 5))}:
        proof = await prove(tiles_of(size), old)
        assert proof == BIG.prove_consistency(old, size)


async def test_every_corrupted_tile_is_caught(tmp_path: Path) -> None:
    size = 65536 + 700
    # The tiles a consistency proof from 300 needs: level-0, level-1 and level-2 tiles.
    probe = tiles_of(size)
    await prove(probe, 300)
    assert {tiles.parse_tile_path(p).level for p in probe.fetched} == {0, 1, 2}
    for path in probe.fetched:
        fake = tiles_of(size)
        fake.corrupt(path)
        with pytest.raises(BadTileError) as err:
            await prove(fake, 300, tmp_path / "cache")
        assert path in fake.fetched  # not served from the cache: nothing bad was cached
        evidence = err.value.finding.evidence
        assert evidence["reason"] in ("edge_tiles_do_not_hash_to_root", "does_not_match_checkpoint")
        assert evidence["checkpoint"] == fake.note.decode()
        if "tile" in evidence:
            assert evidence["tile"] == path
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    # nothing unverified was cached: a clean reader with the same cache works
    clean = tiles_of(size)
    assert await prove(clean, 300, tmp_path / "cache") == BIG.prove_consistency(300, size)


async def test_cache_holds_full_tiles_only_and_is_reused(tmp_path: Path) -> None:
    size = 65536 + 700
    first = tiles_of(size)
    await prove(first, 300, tmp_path)
    cached = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert cached
    assert all(".p" not in str(p.relative_to(tmp_path)) for p in cached)
    second = tiles_of(size)
    await prove(second, 300, tmp_path)
    assert len(second.fetched) < len(first.fetched)
    assert all(".p/" in p for p in second.fetched)  # only partial (edge) tiles again
    # a damaged cache file is caught, not trusted: it is fetched again and replaced,
    # and the log is not blamed for it
    victim = cached[0]
    good = victim.read_bytes()
    victim.write_bytes(bytes([good[0] ^ 1]) + good[1:])
    third = tiles_of(size)
    assert await prove(third, 300, tmp_path) == BIG.prove_consistency(300, size)
    assert str(victim.relative_to(tmp_path)).split("/", 1)[1] in third.fetched
    assert victim.read_bytes() == good


async def test_wrong_root_is_caught() -> None:
    with pytest.raises(VerificationError, match="do not hash to the root"):
        await prove(tiles_of(600), 10, root=BIG.root(599))


def test_tile_width() -> None:
    assert tiles.tile_width(0, 0, 0) == 0
    assert tiles.tile_width(0, 0, 1) == 1
    assert tiles.tile_width(0, 1, 600) == 256
    assert tiles.tile_width(0, 2, 600) == 600 - 512
    assert tiles.tile_width(0, 3, 600) == 0
    assert tiles.tile_width(1, 0, 600) == 2
    assert tiles.tile_width(1, 0, 65536) == 256
    assert tiles.tile_width(2, 0, 65536) == 1
    # the right-edge tiles are exactly the partial ones
    for size in (1, 255, 256, 257, 65536 + 700):
        for ref in tiles.tiles_for_size(size):
            assert tiles.tile_width(ref.level, ref.n, size) == ref.width < 256


async def test_tile_source_contract() -> None:
    """Both TileSources (the HTTP client, the simulated log itself) answer the bytes served
    at a path, refuse what is not served with a 404, and authenticate alike."""
    log = SimulatedLog()
    log.append(*(f"entry {i}".encode() for i in range(600)))
    log.publish()
    await log.start()
    try:
        async with LogClient(log.url) as client:
            sources: list[TileSource] = [client, log]
            refusals: set[type[Exception]] = set()
            for source in sources:
                assert source.url == log.url
                for path in ("tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/000"):
                    assert await source.tile(path) == log.honest(path), (source, path)
                with pytest.raises(LogRefusedError) as err:
                    await source.tile("tile/0/003")
                refusals.add(type(err.value))
                auth = TileAuth(source, log.checkpoint(), log.note)
                await auth.start()
                assert await auth.prove_consistency(300) == log.tree.prove_consistency(300)
                assert await auth.entry(513) == b"entry 513"
            assert len(refusals) == 1  # the same error from both
    finally:
        await log.stop()


async def test_verified_log_over_tiles_only(tmp_path: Path) -> None:
    alice = Signer.generate("alice")
    a = LogProcess(tmp_path / "a").start()
    try:
        key = Verifier.from_vkey(a.vkey)
        store = FileCheckpointStore(tmp_path / "state")
        async with LogClient(a.url) as c:
            await c.add([signed(alice, version=f"{i}.0") for i in range(300)])
        async with VerifiedLog(a.url, key, store, use_tiles=True, tile_cache=tmp_path / "t") as v:
            assert (await v.checkpoint()).size == 300
        async with LogClient(a.url) as c:
            await c.add([signed(alice, version=f"{i}.1") for i in range(300)])
        async with VerifiedLog(a.url, key, store, use_tiles=True, tile_cache=tmp_path / "t") as v:
            assert (await v.checkpoint()).size == 600
        assert list((tmp_path / "t").rglob("tile/0/001"))  # the full tile proved 300 -> 600
        # a fork with the same key is caught from tiles alone
        (tmp_path / "b").mkdir()
        shutil.copy(tmp_path / "a" / "log.key", tmp_path / "b" / "log.key")
        b = LogProcess(tmp_path / "b").start()
        try:
            async with LogClient(b.url) as c:
                await c.add([signed(alice, "forked", f"{i}.0") for i in range(400)])
            async with VerifiedLog(b.url, key, store, use_tiles=True) as v:
                with pytest.raises(VerificationError, match="older than checkpoint 600"):
                    await v.checkpoint()
            async with LogClient(b.url) as c:
                await c.add([signed(alice, "forked", f"{i}.1") for i in range(400)])
            async with VerifiedLog(b.url, key, store, use_tiles=True) as v:
                with pytest.raises(LogMisbehaviorError):
                    await v.checkpoint()
        finally:
            b.kill()
    finally:
        a.kill()
