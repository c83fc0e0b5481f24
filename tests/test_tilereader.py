"""Client-side tile authentication against a checkpoint (fake tile server + real server)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from sigledger.client.checkpoints import CheckpointStore
from sigledger.client.remote import LogClient
from sigledger.client.tiles import TileReader
from sigledger.client.trust import VerifiedLog
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.errors import LogMisbehaviorError, VerificationError
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import LogProcess, signed
from tests.memtree import MemoryTree


class FakeTiles(LogClient):
    """Serves the hash tiles of an in-memory tree; can corrupt one tile."""

    def __init__(self, tree: MemoryTree, size: int) -> None:
        super().__init__("http://127.0.0.1:9")
        self.tree, self.size = tree, size
        self.fetched: list[str] = []
        self.corrupt: str | None = None

    async def tile(self, path: str) -> bytes:
        self.fetched.append(path)
        ref = tiles.parse_tile_path(path)
        available = min(256, (self.size >> (8 * ref.level)) - ref.n * 256)
        assert ref.width <= available, f"client asked for {path} beyond size {self.size}"
        data = b"".join(self.tree.node(8 * ref.level, ref.n * 256 + i) for i in range(ref.width))
        if path == self.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        return data


def _tree(n: int) -> MemoryTree:
    return MemoryTree(merkle.leaf_hash(str(i).encode()) for i in range(n))


BIG = _tree(65536 + 700)


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 600, 65536, 65536 + 700])
async def test_consistency_proofs_from_tiles(size: int) -> None:
    cp = Checkpoint("example.org/log", size, BIG.root(size))
    rng = random.Random(size)
    for old in {0, 1, size // 2, size - 1, size, *rng.sample(range(size + 1), min(size, 5))}:
        reader = TileReader(FakeTiles(BIG, size), "example.org/log")
        proof = await reader.prove_consistency(old, cp)
        assert proof == BIG.prove_consistency(old, size)


async def test_every_corrupted_tile_is_caught(tmp_path: Path) -> None:
    size = 65536 + 700
    cp = Checkpoint("example.org/log", size, BIG.root(size))
    # The tiles a consistency proof from 300 needs: level-0, level-1 and level-2 tiles.
    probe = FakeTiles(BIG, size)
    await TileReader(probe, "example.org/log").prove_consistency(300, cp)
    assert {tiles.parse_tile_path(p).level for p in probe.fetched} == {0, 1, 2}
    for path in probe.fetched:
        fake = FakeTiles(BIG, size)
        fake.corrupt = path
        reader = TileReader(fake, "example.org/log", tmp_path / "cache")
        with pytest.raises(VerificationError):
            await reader.prove_consistency(300, cp)
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    # nothing unverified was cached: a clean reader with the same cache works
    clean = FakeTiles(BIG, size)
    assert await TileReader(clean, "example.org/log", tmp_path / "cache").prove_consistency(
        300, cp
    ) == BIG.prove_consistency(300, size)


async def test_cache_holds_full_tiles_only_and_is_reused(tmp_path: Path) -> None:
    size = 65536 + 700
    cp = Checkpoint("example.org/log", size, BIG.root(size))
    first = FakeTiles(BIG, size)
    await TileReader(first, "example.org/log", tmp_path).prove_consistency(300, cp)
    cached = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert cached
    assert all(".p" not in str(p.relative_to(tmp_path)) for p in cached)
    second = FakeTiles(BIG, size)
    await TileReader(second, "example.org/log", tmp_path).prove_consistency(300, cp)
    assert len(second.fetched) < len(first.fetched)
    assert all(".p/" in p for p in second.fetched)  # only partial (edge) tiles again
    # a corrupted cache file is caught, not trusted
    victim = cached[0]
    victim.write_bytes(bytes([victim.read_bytes()[0] ^ 1]) + victim.read_bytes()[1:])
    with pytest.raises(VerificationError):
        await TileReader(FakeTiles(BIG, size), "example.org/log", tmp_path).prove_consistency(
            300, cp
        )


async def test_wrong_root_is_caught() -> None:
    cp = Checkpoint("example.org/log", 600, BIG.root(599))
    with pytest.raises(VerificationError, match="do not hash to the root"):
        await TileReader(FakeTiles(BIG, 600), "example.org/log").prove_consistency(10, cp)


async def test_verified_log_over_tiles_only(tmp_path: Path) -> None:
    alice = Signer.generate("alice")
    a = LogProcess(tmp_path / "a").start()
    try:
        key = Verifier.from_vkey(a.vkey)
        store = CheckpointStore(tmp_path / "state")
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
