"""Read a log's hash tiles and authenticate them against one signed checkpoint.

This is the one tile authenticator of the client: :class:`~sigledger.client.trust.VerifiedLog`
(consistency proofs for a tiles-only log), the monitor and ``fsck`` all use
:class:`TileAuth`. It needs nothing but the c2sp.org/tlog-tiles read API, so it
works with any tlog-tiles log, also one served from a plain CDN or bucket.
Where tiles come from is a :class:`TileSource` (the HTTP
:class:`~sigledger.client.remote.LogClient`, or an in-memory log in tests).

**Authentication** (the model is Go's ``tlog.TileHashReader``): at tree size
``s``, the right-edge tiles (``tiles_for_size(s)``) are authenticated together
by recomputing the checkpoint's root from them (:meth:`TileAuth.start`). Any
*full* tile ``(L, N)`` is authenticated by folding its 256 hashes and comparing
with hash ``N mod 256`` of its parent tile ``(L+1, N // 256)``, itself
authenticated the same way. Nothing is returned, kept or cached before it is
authenticated. Tile math (widths, edge tiles, node places) is
:mod:`sigledger.ledger.tiles`.

**Evidence.** A tile that fails is a :class:`BadTileError` carrying a
:class:`Finding` of type ``bad_tile`` whose evidence a third party can check
without trusting us; ``reason`` is one of

* ``wrong_length``: ``tile``, ``tile_data``, ``expected_length``;
* ``edge_tiles_do_not_hash_to_root``: ``tiles`` (``path``, ``data``), ``computed_root``;
* ``does_not_match_checkpoint``: ``tile``, ``tile_data``, ``node`` (``level``,
  ``index``), ``expected_hash`` and its ``inclusion_proof`` in a tree of
  ``proof_tree_size`` nodes (see below);

always with the signed ``checkpoint`` note and a ``how_to_check`` sentence.
Byte strings are standard base64.

**Caches.** Authenticated tiles of level 1 and up stay in memory (1/256 of the
level-0 tiles); a few level-0 tiles are kept in a small LRU. A
:class:`DiskTileCache` (``<dir>/<hex SHA-256 of origin>/tile/...``, the CLI's)
holds *full* tiles only, which never change: a full tile authenticated once
under a checkpoint stays valid under every later checkpoint consistent with it.
A cached tile is still checked against its parent before use; one that fails
(a damaged file) is dropped and fetched again, never reported against the log.

**Node inclusion proofs.** Evidence about a tile proves where an interior node
sits. Above tree level ``h`` the RFC 6962 tree of ``size`` leaves has exactly
the shape of the tree of ``m = ceil(size / 2**h)`` leaves whose leaves are the
level-``h`` nodes (the last one possibly the hash of a shorter remainder): every
split point of the bigger tree is a power of two of at least ``2**h``. So the
inclusion proof of perfect node ``(h, i)`` is ``PATH(i, m)`` over those nodes,
checked by ``merkle.check_inclusion(i, m, node_hash, proof, root)``
(:func:`prove_node_inclusion`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.encoding import b64encode as b64
from sigledger.ledger.errors import FormatError, VerificationError
from sigledger.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileRef, tile_width

__all__ = [
    "HASH_SIZE",
    "BadTileError",
    "DiskTileCache",
    "Finding",
    "TileAuth",
    "TileSource",
    "b64",
    "node_inclusion_nodes",
    "prove_node_inclusion",
]

HASH_SIZE = 32


class TileSource(Protocol):
    """Where tiles come from: ``tile(path)`` answers the bytes served at a canonical
    tlog-tiles path (``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/...``), unchecked.
    ``url`` names the source in messages and evidence."""

    @property
    def url(self) -> str: ...

    async def tile(self, path: str) -> bytes: ...


# --- node inclusion proofs (pure) ---------------------------------------------


def _virtual_ranges(level: int, index: int, size: int) -> tuple[int, list[tuple[int, int]]]:
    if level < 0 or index < 0 or (index + 1) << level > size:
        raise ValueError(f"node ({level}, {index}) is not complete in a tree of size {size}")
    m = (size + (1 << level) - 1) >> level
    ranges = []
    for vl, vi in merkle.inclusion_nodes(index, m):
        lo = vi << (vl + level)
        ranges.append((lo, min((vi + 1) << (vl + level), size)))
    return m, ranges


def node_inclusion_nodes(level: int, index: int, size: int) -> list[merkle.Node]:
    """Every perfect node :func:`prove_node_inclusion` asks ``get_node`` for."""
    _, ranges = _virtual_ranges(level, index, size)
    return [node for lo, hi in ranges for node in merkle.subtree_nodes(lo, hi)]


def prove_node_inclusion(
    level: int, index: int, size: int, get_node: merkle.GetNode
) -> tuple[int, list[bytes]]:
    """``(m, proof)``: perfect node ``(level, index)`` is leaf ``index`` of an ``m``-leaf tree.

    ``merkle.check_inclusion(index, m, node_hash, proof, root)`` then checks
    that the node is in the tree of ``size`` leaves with that root (see the
    module docstring). ``level == 0`` gives the ordinary leaf inclusion proof.
    """
    m, _ = _virtual_ranges(level, index, size)

    def virtual_node(vl: int, vi: int) -> bytes:
        lo = vi << (vl + level)
        hi = min((vi + 1) << (vl + level), size)
        return merkle.fold_nodes([get_node(*node) for node in merkle.subtree_nodes(lo, hi)])

    return m, merkle.prove_inclusion(index, m, virtual_node)


# --- evidence -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """Something wrong with the log, with evidence that stands on its own.

    ``type`` is an alarm type (``bad_tile``, ``bad_entry``); ``index`` the
    first log index concerned, if any.
    """

    type: str
    message: str
    evidence: dict[str, Any]
    index: int | None = None


class BadTileError(VerificationError):
    """A hash tile the log serves disagrees with its signed checkpoint."""

    hint = (
        "The log serves tiles that do not match its own signed checkpoint. Keep the "
        "evidence and report it to the log operator."
    )

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


# --- the on-disk cache ----------------------------------------------------------


class DiskTileCache:
    """Full hash tiles of one log on disk, written only after authentication.

    A cache that cannot be read or written only costs a refetch.
    """

    def __init__(self, cache_dir: Path, origin: str) -> None:
        self.dir = cache_dir / hashlib.sha256(origin.encode()).hexdigest()

    def get(self, ref: TileRef) -> bytes | None:
        if ref.width != TILE_WIDTH or ref.is_entries:
            return None
        try:
            data = (self.dir / ref.path).read_bytes()
        except OSError:
            return None
        return data if len(data) == TILE_WIDTH * HASH_SIZE else None

    def put(self, ref: TileRef, data: bytes) -> None:
        if ref.width != TILE_WIDTH or ref.is_entries:
            return  # partial tiles change as the log grows
        path = self.dir / ref.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError:
            pass

    def drop(self, ref: TileRef) -> None:
        with contextlib.suppress(OSError):
            (self.dir / ref.path).unlink()


# --- the authenticator ----------------------------------------------------------


class TileAuth:
    """The hash tiles of one log, authenticated against one signed checkpoint.

    Call :meth:`start` first: it authenticates the right-edge tiles (raises
    :class:`BadTileError` if they do not hash to the root). ``note`` is the
    signed checkpoint note, quoted in evidence.
    """

    def __init__(
        self,
        source: TileSource,
        cp: Checkpoint,
        note: bytes,
        *,
        disk: DiskTileCache | None = None,
        level0_cache: int = 64,
    ) -> None:
        self.source = source
        self.cp = cp
        self.note = note
        self.size = cp.size
        self.disk = disk
        self.anchored = False
        self.fetched = 0  # hash tiles fetched from the source
        self._edge: dict[tuple[int, int], bytes] = {}
        self._good: dict[tuple[int, int], bytes] = {}
        self._level0: OrderedDict[int, bytes] = OrderedDict()
        self._level0_max = level0_cache
        self._bad: dict[tuple[int, int], BadTileError] = {}
        self._loading: dict[tuple[int, int], asyncio.Task[bytes]] = {}

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def note_text(self) -> str:
        return self.note.decode("utf-8")

    def is_edge(self, level: int, n: int) -> bool:
        return tile_width(level, n, self.size) < TILE_WIDTH

    async def fetch(self, ref: TileRef) -> bytes:
        """Fetch a tile or bundle by path (unauthenticated); hash tiles must have 32*W bytes."""
        data = await self.source.tile(ref.path)
        if not ref.is_entries:
            self.fetched += 1
            if len(data) != ref.width * HASH_SIZE:
                raise BadTileError(
                    Finding(
                        "bad_tile",
                        f"{ref.path} from {self.url} has {len(data)} bytes, "
                        f"expected {ref.width * HASH_SIZE}",
                        {
                            "reason": "wrong_length",
                            "checkpoint": self.note_text,
                            "tile": ref.path,
                            "tile_data": b64(data),
                            "expected_length": ref.width * HASH_SIZE,
                        },
                    )
                )
        return data

    async def start(self) -> None:
        """Fetch the right-edge tiles and check that they hash to the checkpoint's root."""
        refs = tiles.tiles_for_size(self.size)
        datas = await asyncio.gather(*(self.fetch(ref) for ref in refs))
        edge = {(ref.level, ref.n): data for ref, data in zip(refs, datas, strict=True)}

        def get_node(level: int, index: int) -> bytes:
            ref, off, count = tiles.tile_for_node(level, index)
            return tiles.hash_from_tile(edge[(ref.level, ref.n)], off, count)

        root = merkle.root_from(self.size, get_node)
        if root != self.cp.root:
            raise BadTileError(
                Finding(
                    "bad_tile",
                    f"the right-edge tiles from {self.url} do not hash to the root "
                    f"of checkpoint {self.size}",
                    {
                        "reason": "edge_tiles_do_not_hash_to_root",
                        "checkpoint": self.note_text,
                        "tiles": [
                            {"path": ref.path, "data": b64(data)}
                            for ref, data in zip(refs, datas, strict=True)
                        ],
                        "computed_root": b64(root),
                        "how_to_check": "verify checkpoint with log_key; the root recomputed "
                        "from these tiles (c2sp.org/tlog-tiles: the perfect subtrees of the "
                        "tree size, folded right to left) differs from the checkpoint's root",
                    },
                )
            )
        self._edge = edge
        self.anchored = True

    def _cached(self, key: tuple[int, int]) -> bytes | None:
        got = self._edge.get(key) or self._good.get(key)
        if got is None and key[0] == 0:
            got = self._level0.get(key[1])
            if got is not None:
                self._level0.move_to_end(key[1])
        return got

    async def tile(self, level: int, n: int) -> bytes:
        """The authenticated bytes of tile ``(level, n)`` at this tree size.

        Raises :class:`BadTileError` if it (or a tile above it) fails
        authentication, ``ValueError`` if no such tile exists at this size.
        """
        if not self.anchored:
            raise RuntimeError("TileAuth.start() was not called or failed")
        key = (level, n)
        got = self._cached(key)
        if got is not None:
            return got
        if key in self._bad:
            raise self._bad[key]
        if tile_width(level, n, self.size) == 0:
            raise ValueError(f"tile {level}/{n} does not exist at tree size {self.size}")
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(level, n))
            self._loading[key] = task
            task.add_done_callback(lambda _t: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, level: int, n: int) -> bytes:
        # Not an edge tile (those are loaded by start()), so it is full at this size.
        ref = TileRef(level, n, TILE_WIDTH)
        disk = self.disk
        data = disk.get(ref) if disk is not None else None
        if (
            disk is not None
            and data is not None
            and tiles.hash_from_tile(data, 0, TILE_WIDTH) != await self.expected_hash(level, n)
        ):
            disk.drop(ref)  # damaged on disk, not the log's doing
            data = None
        if data is None:
            data = await self.fetch(ref)
            problem = await self.check_full_tile(level, n, data)
            if problem is not None:
                self._bad[(level, n)] = problem
                raise problem
            if disk is not None:
                disk.put(ref, data)
        if level == 0:
            self._level0[n] = data
            while len(self._level0) > self._level0_max:
                self._level0.popitem(last=False)
        else:
            self._good[(level, n)] = data
        return data

    async def expected_hash(self, level: int, n: int) -> bytes:
        """What full tile ``(level, n)`` must fold to: its slot in the authenticated parent."""
        parent = await self.tile(level + 1, n // TILE_WIDTH)
        slot = n % TILE_WIDTH
        return parent[slot * HASH_SIZE : (slot + 1) * HASH_SIZE]

    async def check_full_tile(self, level: int, n: int, data: bytes) -> BadTileError | None:
        """None if full tile ``(level, n)`` with ``data`` matches its parent, else the problem."""
        expected = await self.expected_hash(level, n)
        if tiles.hash_from_tile(data, 0, TILE_WIDTH) == expected:
            return None
        node_level = TILE_HEIGHT * (level + 1)
        m, proof = await self.prove_node(node_level, n)
        ref = TileRef(level, n, TILE_WIDTH)
        return BadTileError(
            Finding(
                "bad_tile",
                f"{ref.path} from {self.url} does not match the hash its signed "
                f"checkpoint {self.size} commits to",
                {
                    "reason": "does_not_match_checkpoint",
                    "checkpoint": self.note_text,
                    "tile": ref.path,
                    "tile_data": b64(data),
                    "node": {"level": node_level, "index": n},
                    "expected_hash": b64(expected),
                    "proof_tree_size": m,
                    "inclusion_proof": [b64(h) for h in proof],
                    "how_to_check": "verify checkpoint with log_key; "
                    "merkle.check_inclusion(node.index, proof_tree_size, expected_hash, "
                    "inclusion_proof, root) proves expected_hash is the node covering this "
                    "tile (above a tree level the RFC 6962 tree is the tree of the nodes at "
                    "that level); the 256 hashes of tile_data fold (RFC 6962 node hashes) to "
                    "a different hash",
                },
                index=n << node_level,
            )
        )

    async def getter(
        self, nodes: Iterable[merkle.Node], level0: dict[int, bytes] | None = None
    ) -> merkle.GetNode:
        """A ``get_node`` over authenticated tiles for these perfect nodes.

        ``level0`` supplies level-0 tiles already authenticated another way
        (hashes recomputed from entries), by tile number.
        """
        places = {node: tiles.tile_for_node(*node) for node in nodes}
        keys = {(ref.level, ref.n) for ref, _, _ in places.values()}
        keys = {k for k in keys if not (level0 and k[0] == 0 and k[1] in level0)}
        order = sorted(keys, key=lambda k: -k[0])  # parents first: fewer duplicate fetches
        datas = await asyncio.gather(*(self.tile(*k) for k in order))
        got = dict(zip(order, datas, strict=True))
        if level0:
            got.update({(0, n): data for n, data in level0.items()})

        def get(level: int, index: int) -> bytes:
            ref, off, count = places.get((level, index)) or tiles.tile_for_node(level, index)
            return tiles.hash_from_tile(got[(ref.level, ref.n)], off, count)

        return get

    async def prove_node(
        self, level: int, index: int, level0: dict[int, bytes] | None = None
    ) -> tuple[int, list[bytes]]:
        """:func:`prove_node_inclusion` from authenticated tiles."""
        get = await self.getter(node_inclusion_nodes(level, index, self.size), level0)
        return prove_node_inclusion(level, index, self.size, get)

    async def prove_inclusion(
        self, index: int, level0: dict[int, bytes] | None = None
    ) -> list[bytes]:
        """The RFC 6962 inclusion proof of leaf ``index`` from authenticated tiles."""
        get = await self.getter(merkle.inclusion_nodes(index, self.size), level0)
        return merkle.prove_inclusion(index, self.size, get)

    async def prove_consistency(self, old_size: int) -> list[bytes]:
        """The RFC 6962 consistency proof from ``old_size`` to this checkpoint."""
        get = await self.getter(merkle.consistency_nodes(old_size, self.size))
        return merkle.prove_consistency(old_size, self.size, get)

    async def entry(self, index: int) -> bytes:
        """Entry ``index``, its leaf hash checked against the authenticated level-0 tile.

        Raises VerificationError if the log serves other bytes.
        """
        ref = tiles.entry_bundle_for(index, self.size)
        data = await self.fetch(ref)
        tile = await self.tile(0, ref.n)
        try:
            entries = tiles.decode_entry_bundle(data)
        except FormatError as exc:
            raise VerificationError(f"entry bundle {ref.n} is malformed: {exc}") from None
        slot = index % TILE_WIDTH
        if (
            len(entries) != ref.width
            or merkle.leaf_hash(entries[slot]) != tile[slot * HASH_SIZE : (slot + 1) * HASH_SIZE]
        ):
            raise VerificationError(f"the log serves other bytes for entry {index}")
        return entries[slot]

    async def entry_evidence(self, index: int, data: bytes | None = None) -> dict[str, Any]:
        """``{"index", "entry", "inclusion_proof"}`` for an entry (fetched if not given)."""
        if data is None:
            data = await self.entry(index)
        proof = await self.prove_inclusion(index)
        return {"index": index, "entry": b64(data), "inclusion_proof": [b64(h) for h in proof]}
