"""Read a log's hash tiles and authenticate them against a verified checkpoint.

This needs nothing but the c2sp.org/tlog-tiles read API, so it works with any
tlog-tiles log, also one served from a plain CDN or bucket.

Authentication (the model is Go's ``tlog.TileHashReader``): at tree size
``s``, the right-edge tiles (``tiles_for_size(s)``) are authenticated
together by recomputing the checkpoint's root from them. Any *full* tile
``(L, N)`` is authenticated by folding its 256 hashes and comparing with hash
``N mod 256`` of its parent tile ``(L+1, N // 256)``, itself authenticated the
same way. Nothing is returned, and nothing is written to the cache, before
it is authenticated.

The on-disk cache (``<cache>/<hex SHA-256 of origin>/tile/...``) holds only
full tiles, which never change: a full tile authenticated once under a
checkpoint stays valid under every later checkpoint consistent with it, and
the client accepts only consistent checkpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from sigledger.client.remote import LogClient
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.errors import VerificationError
from sigledger.ledger.tiles import TILE_WIDTH, TileRef, tile_width

_HASH = 32


class TileReader:
    def __init__(self, client: LogClient, origin: str, cache_dir: Path | None = None) -> None:
        self.client = client
        self.cache = cache_dir / hashlib.sha256(origin.encode()).hexdigest() if cache_dir else None
        self._verified: dict[TileRef, bytes] = {}  # authenticated this run

    def _cache_path(self, ref: TileRef) -> Path | None:
        return self.cache / ref.path if self.cache is not None else None

    def _load_cached(self, ref: TileRef) -> bytes | None:
        path = self._cache_path(ref)
        if path is None or ref.width != TILE_WIDTH:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return data if len(data) == TILE_WIDTH * _HASH else None

    def _save(self, ref: TileRef, data: bytes) -> None:
        self._verified[ref] = data
        path = self._cache_path(ref)
        if path is None or ref.width != TILE_WIDTH:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError:
            pass  # a cache that cannot be written only costs a refetch

    async def _fetch(self, ref: TileRef) -> bytes:
        data = await self.client.tile(ref.path)
        if len(data) != ref.width * _HASH:
            raise VerificationError(
                f"{ref.path} from {self.client.url} has {len(data)} bytes, "
                f"expected {ref.width * _HASH}"
            )
        return data

    async def tiles_for(
        self, cp: Checkpoint, refs: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Authenticated bytes of hash tiles (level, n) as of checkpoint ``cp``."""
        size = cp.size
        wanted = {(lv, n) for lv, n in refs}
        edge = {(t.level, t.n): t for t in tiles.tiles_for_size(size)}
        # Every tile needed: the wanted ones, their full-tile ancestors, and the edge.
        need: dict[tuple[int, int], TileRef] = dict(edge)
        for start in wanted:
            lv, n = start
            while True:
                width = tile_width(lv, n, size)
                if width == 0:
                    raise ValueError(f"tile {lv}/{n} does not exist at size {size}")
                need[(lv, n)] = TileRef(lv, n, width)
                if width < TILE_WIDTH or (lv, n) in edge:
                    break
                lv, n = lv + 1, n // TILE_WIDTH
        data: dict[tuple[int, int], bytes] = {}
        to_fetch = []
        for key, ref in need.items():
            got = self._verified.get(ref) or self._load_cached(ref)
            if got is not None:
                data[key] = got
            else:
                to_fetch.append((key, ref))
        fetched = await asyncio.gather(*(self._fetch(ref) for _, ref in to_fetch))
        unverified = dict(zip((k for k, _ in to_fetch), fetched, strict=True))
        data.update(unverified)
        self._authenticate(cp, edge, need, data)
        for key, ref in need.items():
            if key in unverified or ref not in self._verified:
                self._save(ref, data[key])
        return {key: data[key] for key in wanted}

    def _authenticate(
        self,
        cp: Checkpoint,
        edge: dict[tuple[int, int], TileRef],
        need: dict[tuple[int, int], TileRef],
        data: dict[tuple[int, int], bytes],
    ) -> None:
        def get_edge_node(level: int, index: int) -> bytes:
            ref, off, count = tiles.tile_for_node(level, index)
            return tiles.hash_from_tile(data[(ref.level, ref.n)], off, count)

        if merkle.root_from(cp.size, get_edge_node) != cp.root:
            raise VerificationError(
                f"the right-edge tiles from {self.client.url} do not hash to the root of "
                f"checkpoint {cp.size}"
            )
        # Full tiles, from the top down: each against its (authenticated) parent.
        for (lv, n), ref in sorted(need.items(), key=lambda kv: -kv[0][0]):
            if ref.width < TILE_WIDTH or (lv, n) in edge:
                continue
            parent = data[(lv + 1, n // TILE_WIDTH)]
            slot = n % TILE_WIDTH
            expected = parent[slot * _HASH : (slot + 1) * _HASH]
            if tiles.hash_from_tile(data[(lv, n)], 0, TILE_WIDTH) != expected:
                raise VerificationError(
                    f"{ref.path} from {self.client.url} does not match its parent tile"
                )

    async def getter(self, cp: Checkpoint, nodes: Iterable[tuple[int, int]]) -> merkle.GetNode:
        """A get_node over authenticated tiles for these perfect nodes (complete at cp)."""
        nodes = list(nodes)
        places = {node: tiles.tile_for_node(*node) for node in nodes}
        got = await self.tiles_for(cp, {(ref.level, ref.n) for ref, _, _ in places.values()})

        def get(level: int, index: int) -> bytes:
            ref, off, count = places.get((level, index)) or tiles.tile_for_node(level, index)
            return tiles.hash_from_tile(got[(ref.level, ref.n)], off, count)

        return get

    async def prove_consistency(self, old_size: int, cp: Checkpoint) -> list[bytes]:
        """The consistency proof from ``old_size`` to ``cp``, computed from tiles."""
        get = await self.getter(cp, merkle.consistency_nodes(old_size, cp.size))
        return merkle.prove_consistency(old_size, cp.size, get)
