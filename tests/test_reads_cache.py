"""The in-memory cache of full tiles and entry bundles behind ``GET /tile``: bounded,
byte-identical to storage, never holding a partial tile, never stale."""

from __future__ import annotations

import re

import pytest

from sigledger.client.remote import LogClient
from sigledger.ledger import merkle
from sigledger.ledger.log.reads import FullTiles
from sigledger.ledger.note import Signer
from sigledger.ledger.tiles import decode_entry_bundle
from tests.helpers import LogProcess, get, signed

TILE = 256 * 32


def test_full_tiles_are_bounded_by_bytes_and_drop_the_least_recent() -> None:
    cache = FullTiles(max_bytes=3 * TILE)
    for n in range(3):
        cache.put(f"tile/0/00{n}", bytes([n]) * TILE)
    assert cache.get("tile/0/000") == bytes([0]) * TILE  # now the most recent
    cache.put("tile/0/003", bytes([3]) * TILE)
    assert cache.bytes == 3 * TILE and len(cache) == 3
    assert cache.get("tile/0/001") is None  # the least recently served went first
    assert cache.get("tile/0/000") is not None and cache.get("tile/0/003") is not None
    assert (cache.hits, cache.misses) == (3, 1)


def test_full_tiles_refuse_partial_tiles_and_oversized_items() -> None:
    cache = FullTiles(max_bytes=TILE)
    with pytest.raises(ValueError, match="partial"):
        cache.put("tile/0/000.p/7", b"\0" * 7 * 32)
    with pytest.raises(ValueError, match="partial"):
        cache.put("tile/entries/000.p/7", b"\0" * 9)
    cache.put("tile/entries/000", b"\0" * (TILE + 1))  # larger than the whole cache
    assert len(cache) == 0 and cache.bytes == 0
    off = FullTiles(max_bytes=0)
    off.put("tile/0/000", b"\0" * TILE)
    assert off.get("tile/0/000") is None and off.bytes == 0


def _cache_figures(metrics: str) -> dict[str, float]:
    found = re.findall(
        r'^sigledger_read_cache\{measure="(\w+)"\} ([0-9.e+]+)$', metrics, re.MULTILINE
    )
    return {name: float(value) for name, value in found}


async def _tile(url: str, path: str) -> bytes:
    status, body, headers = await get(f"{url}/{path}")
    assert status == 200, (path, body)
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Type"] == "application/octet-stream"
    return body


async def test_tiles_from_memory_are_identical_and_partial_tiles_never_stale(
    log_server: LogProcess,
) -> None:
    url = log_server.url
    alice = Signer.generate("alice")
    async with LogClient(url) as log:
        await log.add([signed(alice, "pkg", f"1.{i}") for i in range(300)])
        # A partial tile and bundle of the second 256 entries, at size 300.
        partial = await _tile(url, "tile/0/001.p/44")
        partial_bundle = await _tile(url, "tile/entries/001.p/44")
        first = {p: await _tile(url, p) for p in ("tile/0/000", "tile/entries/000")}
        before = _cache_figures((await get(f"{url}/metrics"))[1].decode())
        again = {p: await _tile(url, p) for p in first}
        after = _cache_figures((await get(f"{url}/metrics"))[1].decode())
        assert again == first  # byte-identical from memory
        assert after["hits"] - before["hits"] == 2 and after["misses"] == before["misses"]
        leaves = [merkle.leaf_hash(e) for e in decode_entry_bundle(first["tile/entries/000"])]
        assert len(leaves) == 256 and first["tile/0/000"] == b"".join(leaves)

        # The partial tile grows into a full one: the full path serves all 256 hashes,
        # the partial path still its prefix.
        await log.add([signed(alice, "pkg", f"2.{i}") for i in range(250)])
        full = await _tile(url, "tile/0/001")
        full_bundle = await _tile(url, "tile/entries/001")
        assert len(full) == TILE and full[: 44 * 32] == partial
        assert len(decode_entry_bundle(full_bundle)) == 256
        assert decode_entry_bundle(full_bundle)[:44] == decode_entry_bundle(partial_bundle)
        assert await _tile(url, "tile/0/001.p/44") == partial
        assert await _tile(url, "tile/0/001") == full

    # Paths beyond the tree and non-canonical spellings are still refused.
    assert (await get(f"{url}/tile/0/003"))[0] == 404
    assert (await get(f"{url}/tile/0/0"))[0] == 404
