"""Read a whole tlog-tiles log through its read API and verify every byte of it.

This is the engine under ``sigledger monitor`` and ``sigledger fsck``. It uses
only ``GET /checkpoint``, ``GET /tile/<L>/<N>[.p/<W>]`` and
``GET /tile/entries/<N>[.p/<W>]`` (c2sp.org/tlog-tiles@v0.1.0), so it works
against any tlog-tiles log, also one served by a CDN.

**Tiles** (:class:`TileAuth`) are authenticated top-down against one signed
checkpoint, as Go's ``tlog.TileHashReader`` does: the right-edge tiles of the
tree size together by recomputing the checkpoint's root from them; every full
tile by folding its 256 hashes and comparing with the matching hash of its
(authenticated) parent tile. A tile that fails is reported as a
:class:`BadTileError` carrying self-contained evidence (``bad_tile``).

**Entries** (:func:`verify_range`) are fetched bundle by bundle with their
level-0 tile. Every entry is re-hashed (``SHA-256(0x00 || entry)``) and
compared with its authenticated level-0 tile hash, decoded with
:func:`sigledger.ledger.entry.decode_entry` and its publisher signature re-verified. When
the level-0 tile itself fails against its parent, the bundle's leaf hashes are
folded and compared with the parent hash instead, so the entries are still
authenticated. Every failure becomes a :class:`Finding` with evidence a third
party can check without trusting us: the signed checkpoint note, the bytes
concerned and RFC 6962 inclusion proofs computed from authenticated tiles.

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
import concurrent.futures
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from sigledger.client.remote import LogClient
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.encoding import b64encode as b64
from sigledger.ledger.entry import decode_entry
from sigledger.ledger.errors import FormatError, VerificationError
from sigledger.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileRef, tile_width

__all__ = [
    "AuditReport",
    "BadTileError",
    "BundleResult",
    "EntryInfo",
    "Finding",
    "TileAuth",
    "audit_log",
    "check_bundle",
    "node_inclusion_nodes",
    "prove_node_inclusion",
    "verify_range",
]

HASH_SIZE = 32

EntryInfo: TypeAlias = tuple[str, str, str, bytes, str, int, str]
"""What the index keeps of a verified entry: ``(project, version, filename,
sha256, signer verifier key, time_ms, file identity key)``. The identity is
computed where the entry is decoded (a worker process), not in the event loop."""

CheckedBundle: TypeAlias = tuple[bytes, list[EntryInfo | None], dict[int, tuple[str, str]]]
""":func:`check_bundle`'s answer: leaf hashes, per-entry info, per-entry failures."""

HOW_TO_CHECK_ENTRY = (
    "verify checkpoint with log_key (c2sp.org/tlog-checkpoint); then "
    "merkle.check_inclusion(index, tree_size, leaf_hash, inclusion_proof, root) "
    "(RFC 9162 2.1.3.2) shows leaf_hash is leaf `index` of the signed tree"
)


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


# --- findings -------------------------------------------------------------------


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


# --- tiles ----------------------------------------------------------------------


class TileAuth:
    """The hash tiles of one log, authenticated against one signed checkpoint.

    Call :meth:`start` first: it authenticates the right-edge tiles (raises
    :class:`BadTileError` if they do not hash to the root). Tiles of level 1 and
    up are kept in memory once authenticated (1/256 of the level-0 tiles); a few
    level-0 tiles are kept in a small LRU cache.
    """

    def __init__(
        self, client: LogClient, cp: Checkpoint, note: bytes, *, level0_cache: int = 64
    ) -> None:
        self.client = client
        self.cp = cp
        self.note = note
        self.size = cp.size
        self.anchored = False
        self.fetched = 0  # hash tiles fetched
        self._edge: dict[tuple[int, int], bytes] = {}
        self._good: dict[tuple[int, int], bytes] = {}
        self._level0: OrderedDict[int, bytes] = OrderedDict()
        self._level0_max = level0_cache
        self._bad: dict[tuple[int, int], BadTileError] = {}
        self._loading: dict[tuple[int, int], asyncio.Task[bytes]] = {}

    @property
    def note_text(self) -> str:
        return self.note.decode("utf-8")

    def is_edge(self, level: int, n: int) -> bool:
        return tile_width(level, n, self.size) < TILE_WIDTH

    async def fetch(self, ref: TileRef) -> bytes:
        """Fetch a tile or bundle by path (unauthenticated); hash tiles must have 32*W bytes."""
        data = await self.client.tile(ref.path)
        if not ref.is_entries:
            self.fetched += 1
            if len(data) != ref.width * HASH_SIZE:
                raise BadTileError(
                    Finding(
                        "bad_tile",
                        f"{ref.path} from {self.client.url} has {len(data)} bytes, "
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
                    f"the right-edge tiles from {self.client.url} do not hash to the root "
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
        data = await self.fetch(TileRef(level, n, TILE_WIDTH))
        problem = await self.check_full_tile(level, n, data)
        if problem is not None:
            self._bad[(level, n)] = problem
            raise problem
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
                f"{ref.path} from {self.client.url} does not match the hash its signed "
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
        n = index // TILE_WIDTH
        width = tile_width(0, n, self.size)
        data = await self.fetch(TileRef(-1, n, width))
        tile = await self.tile(0, n)
        try:
            entries = tiles.decode_entry_bundle(data)
        except FormatError as exc:
            raise VerificationError(f"entry bundle {n} is malformed: {exc}") from None
        slot = index % TILE_WIDTH
        if (
            len(entries) != width
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


# --- entries --------------------------------------------------------------------


def check_bundle(data: bytes, skip: int) -> CheckedBundle:
    """Re-hash, decode and signature-check an entry bundle.

    Returns the concatenated leaf hashes of every entry, then for the entries
    from position ``skip`` on their :data:`EntryInfo` (None if bad) and, by
    position, ``(reason, detail)`` of each bad one (``does_not_decode``,
    ``bad_signature``). Raises FormatError for a malformed bundle. A pure
    function of its arguments, so it can run in a worker process.
    """
    entries = tiles.decode_entry_bundle(data)
    sha = hashlib.sha256
    leaves = b"".join([sha(b"\x00" + e).digest() for e in entries])
    infos: list[EntryInfo | None] = []
    bad: dict[int, tuple[str, str]] = {}
    for pos in range(skip, len(entries)):
        try:
            entry = decode_entry(entries[pos])
        except FormatError as exc:
            infos.append(None)
            bad[pos] = ("does_not_decode", str(exc))
            continue
        signed = entry.signed
        if not signed.verify():
            infos.append(None)
            bad[pos] = ("bad_signature", "the publisher signature does not verify")
            continue
        st = signed.statement
        infos.append(
            (
                st.project,
                st.version,
                st.filename,
                st.sha256,
                signed.signer_vkey(),
                entry.time_ms,
                st.identity.key,
            )
        )
    return leaves, infos, bad


@dataclass(slots=True)
class BundleResult:
    """One entry bundle, checked. ``infos[i]`` is entry ``first + i`` (None if bad)."""

    n: int
    first: int
    end: int
    entries: list[bytes]
    leaves: bytes
    infos: list[EntryInfo | None]
    findings: list[Finding] = field(default_factory=list)


async def verify_range(
    auth: TileAuth,
    start: int,
    end: int,
    *,
    executor: concurrent.futures.Executor | None = None,
    window: int = 8,
    strict: bool = True,
) -> AsyncIterator[BundleResult]:
    """Fetch and verify entries ``[start, end)`` against ``auth``'s checkpoint, in order.

    Yields one :class:`BundleResult` per bundle, in index order. With
    ``auth.anchored`` False (its edge tiles failed), entries are still
    re-hashed, decoded and signature-checked but not compared with tiles.
    ``executor`` runs :func:`check_bundle` (threads or processes); without it,
    it runs in the event loop. ``strict`` (the monitor) raises :class:`BadTileError`
    when a tile above a bundle fails; otherwise (an audit) that becomes a finding and
    the bundle's entries are still checked, though not against tiles.
    """
    if not 0 <= start <= end <= auth.size:
        raise ValueError(f"entries [{start}, {end}) are not in a tree of size {auth.size}")
    loop = asyncio.get_running_loop()
    first_bundle, last_bundle = start // TILE_WIDTH, (end + TILE_WIDTH - 1) // TILE_WIDTH

    async def run_check(data: bytes, skip: int) -> CheckedBundle:
        if executor is None:
            return check_bundle(data, skip)
        return await loop.run_in_executor(executor, check_bundle, data, skip)

    async def one(n: int) -> BundleResult:
        return await _verify_bundle(auth, n, start, end, run_check, strict)

    pending: OrderedDict[int, asyncio.Task[BundleResult]] = OrderedDict()
    next_n = first_bundle
    try:
        while pending or next_n < last_bundle:
            while next_n < last_bundle and len(pending) < window:
                pending[next_n] = asyncio.ensure_future(one(next_n))
                next_n += 1
            _, task = pending.popitem(last=False)
            yield await task
    finally:
        for task in pending.values():
            task.cancel()
        if pending:
            await asyncio.gather(*pending.values(), return_exceptions=True)


async def _verify_bundle(
    auth: TileAuth,
    n: int,
    start: int,
    end: int,
    run_check: Callable[[bytes, int], Any],
    strict: bool,
) -> BundleResult:
    size = auth.size
    width = tile_width(0, n, size)
    base = n * TILE_WIDTH
    first = max(start, base)
    stop = min(end, base + width)
    bundle_ref = TileRef(-1, n, width)
    edge = auth.is_edge(0, n)
    findings: list[Finding] = []
    anchored = auth.anchored

    tile: bytes | None = None
    tile_problem: BadTileError | None = None
    tile_fetch: asyncio.Future[bytes] | None = None
    if anchored:
        if edge:
            tile = await auth.tile(0, n)
        else:
            tile_fetch = asyncio.ensure_future(auth.fetch(TileRef(0, n, TILE_WIDTH)))
    try:
        data = await auth.fetch(bundle_ref)
        if tile_fetch is not None:
            try:
                tile = await tile_fetch
            except BadTileError as exc:  # e.g. a level-0 tile of the wrong length
                tile_problem = exc
    finally:
        if tile_fetch is not None and not tile_fetch.done():
            tile_fetch.cancel()
    none: list[EntryInfo | None] = [None] * (stop - first)

    def bundle_finding(reason: str, message: str) -> Finding:
        evidence: dict[str, Any] = {
            "reason": reason,
            "checkpoint": auth.note_text,
            "tree_size": size,
            "bundle": bundle_ref.path,
            "bundle_data": b64(data),
            "detail": message,
        }
        return Finding("bad_entry", message, evidence, index=base)

    try:
        leaves, infos, bad = await run_check(data, first - base)
        entries = tiles.decode_entry_bundle(data)
        if len(entries) != width:
            raise FormatError(f"it holds {len(entries)} entries, not {width}")
    except FormatError as exc:
        message = f"{bundle_ref.path} from {auth.client.url} is malformed: {exc}"
        return BundleResult(
            n, first, stop, [], b"", none, [bundle_finding("bundle_malformed", message)]
        )

    # Which level-0 hashes are authentic: the tile's, or (when the tile fails against
    # its parent) the entries' own, if they fold to the parent's hash.
    level0: dict[int, bytes] | None = None
    mismatched: list[int] = []
    try:
        if anchored:
            problem = tile_problem
            if tile is not None and not edge:
                problem = await auth.check_full_tile(0, n, tile)
            if problem is None:
                assert tile is not None
                mismatched = [
                    i
                    for i in range(width)
                    if leaves[i * HASH_SIZE : (i + 1) * HASH_SIZE]
                    != tile[i * HASH_SIZE : (i + 1) * HASH_SIZE]
                ]
            else:
                findings.append(problem.finding)
                expected = await auth.expected_hash(0, n)
                if tiles.hash_from_tile(leaves, 0, TILE_WIDTH) != expected:
                    message = (
                        f"{bundle_ref.path} and tile/0/{tiles.format_index(n)} from "
                        f"{auth.client.url} both disagree with checkpoint {size}"
                    )
                    findings.append(bundle_finding("bundle_does_not_match_checkpoint", message))
                    return BundleResult(n, first, stop, entries, leaves, none, findings)
                tile = leaves
                level0 = {n: leaves}
    except BadTileError as exc:
        # A tile above this one failed: nothing vouches for this bundle's hashes.
        if strict:
            raise
        findings.append(exc.finding)
        anchored = False
        mismatched = []

    async def proof_of(index: int) -> list[str] | None:
        if not anchored:
            return None
        try:
            return [b64(h) for h in await auth.prove_inclusion(index, level0)]
        except BadTileError as exc:
            if strict:
                raise
            findings.append(exc.finding)
            return None

    infos = list(infos)
    for i in mismatched:
        index = base + i
        assert tile is not None
        findings.append(
            Finding(
                "bad_entry",
                f"entry {index} from {auth.client.url} does not hash to the leaf hash its "
                f"signed checkpoint {size} commits to",
                {
                    "reason": "leaf_hash_mismatch",
                    "checkpoint": auth.note_text,
                    "tree_size": size,
                    "index": index,
                    "entry": b64(entries[i]),
                    "leaf_hash": b64(tile[i * HASH_SIZE : (i + 1) * HASH_SIZE]),
                    "inclusion_proof": await proof_of(index),
                    "bundle": bundle_ref.path,
                    "how_to_check": HOW_TO_CHECK_ENTRY + "; SHA-256(0x00 || entry) differs "
                    "from leaf_hash, so the log serves bytes it never committed to",
                },
                index=index,
            )
        )
        if index >= first:
            infos[index - first] = None
    for pos, (reason, detail) in sorted(bad.items()):
        index = base + pos
        if not first <= index < stop or pos in mismatched:
            continue
        what = "does not decode" if reason == "does_not_decode" else "has a bad signature"
        findings.append(
            Finding(
                "bad_entry",
                f"entry {index} of checkpoint {size} {what}: {detail}",
                {
                    "reason": reason,
                    "checkpoint": auth.note_text,
                    "tree_size": size,
                    "index": index,
                    "entry": b64(entries[pos]),
                    "leaf_hash": b64(leaves[pos * HASH_SIZE : (pos + 1) * HASH_SIZE]),
                    "inclusion_proof": await proof_of(index),
                    "detail": detail,
                    "bundle": bundle_ref.path,
                    "how_to_check": HOW_TO_CHECK_ENTRY
                    + "; leaf_hash is SHA-256(0x00 || entry), and "
                    + "sigledger.ledger.entry.decode_entry"
                    + (
                        "(entry) fails"
                        if reason == "does_not_decode"
                        else "(entry) succeeds but SignedStatement.verify() is False"
                    )
                    + ": the log committed to an entry it must have refused",
                },
                index=index,
            )
        )
    return BundleResult(
        n, first, stop, entries, leaves, infos[: stop - first], sorted_findings(findings)
    )


def sorted_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.index if f.index is not None else -1, f.type))


# --- a full audit ---------------------------------------------------------------


@dataclass
class AuditReport:
    """What :func:`audit_log` checked and found."""

    url: str
    checkpoint: Checkpoint
    note: bytes
    entries_checked: int = 0
    tiles_checked: int = 0
    tiles_unchecked: int = 0  # below a tile that failed, so nothing could vouch for them
    root_from_entries: bytes | None = None
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings


class _CompactRange:
    """The perfect subtrees of the leaves appended so far (RFC 6962), for their root."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, bytes]] = []  # (level, hash), strictly decreasing levels

    def push(self, level: int, h: bytes) -> None:
        nodes = self.nodes
        while nodes and nodes[-1][0] == level:
            h = merkle.node_hash(nodes.pop()[1], h)
            level += 1
        nodes.append((level, h))

    def root(self) -> bytes:
        return merkle.fold_nodes([h for _, h in self.nodes])


async def _equivocation(
    auth: TileAuth,
    signer: str,
    identity: str,
    prior: tuple[int, bytes, str],
    later: tuple[int, bytes, str],
    res: BundleResult,
) -> Finding:
    """A signer logged two hashes for one file identity: the log broke its binding rule."""
    kind = "signer_equivocation" if prior[2] == later[2] else "identity_equivocation"
    entries = []
    for idx, sha, filename in (prior, later):
        data = res.entries[idx - res.first] if res.first <= idx < res.end else None
        ev = await auth.entry_evidence(idx, data)
        entries.append({**ev, "signer": signer, "sha256": sha.hex(), "filename": filename})
    return Finding(
        kind,
        f"{signer} logged two different hashes for one file ({prior[2]}, entry {prior[0]}; "
        f"{later[2]}, entry {later[0]})",
        {"checkpoint": auth.note_text, "identity": identity, "entries": entries},
        later[0],
    )


async def audit_log(
    auth: TileAuth,
    *,
    executor: concurrent.futures.Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Check every hash tile and every entry of the log at ``auth``'s checkpoint.

    The right-edge tiles must hash to the root, every full tile at every level
    must match its parent, every entry must hash to its level-0 tile hash,
    decode and carry a valid publisher signature, and the root recomputed from
    all the entries must be the checkpoint's. ``progress`` is called with the
    number of entries checked so far. Network failures raise NetworkError.
    """
    started = time.monotonic()
    size = auth.size
    report = AuditReport(auth.client.url, auth.cp, auth.note)
    seen_tiles: set[str] = set()

    def add(finding: Finding) -> None:
        key = str(finding.evidence.get("tile", "")) or json.dumps(finding.evidence, sort_keys=True)
        if finding.type == "bad_tile":
            if key in seen_tiles:
                return
            seen_tiles.add(key)
        report.findings.append(finding)

    try:
        await auth.start()
    except BadTileError as exc:
        add(exc.finding)
    if auth.anchored:
        level = 1
        while size >> (TILE_HEIGHT * level):
            full = (size >> (TILE_HEIGHT * level)) // TILE_WIDTH
            for lo in range(0, full, 64):
                got = await asyncio.gather(
                    *(auth.tile(level, n) for n in range(lo, min(full, lo + 64))),
                    return_exceptions=True,
                )
                for result in got:
                    if isinstance(result, BadTileError):
                        if str(result.finding.evidence.get("tile", "")).startswith(
                            f"tile/{level}/"
                        ):
                            add(result.finding)
                        else:
                            report.tiles_unchecked += 1
                    elif isinstance(result, BaseException):
                        raise result
            level += 1

    compact = _CompactRange()
    complete = True
    # The binding rule, by file identity: (signer, identity) -> (first index, sha256, filename).
    bound: dict[tuple[str, str], tuple[int, bytes, str]] = {}
    async for res in verify_range(auth, 0, size, executor=executor, strict=False):
        for finding in res.findings:
            add(finding)
        for offset, info in enumerate(res.infos):
            if info is None:
                continue
            _p, _v, filename, sha, signer, _t, identity = info
            key = (signer, identity)
            prior = bound.setdefault(key, (res.first + offset, sha, filename))
            if prior[1] != sha:
                add(
                    await _equivocation(
                        auth, signer, key[1], prior, (res.first + offset, sha, filename), res
                    )
                )
        if len(res.leaves) != HASH_SIZE * tile_width(0, res.n, size):
            complete = False  # a malformed bundle: no root from entries
        elif complete:
            if len(res.leaves) == TILE_WIDTH * HASH_SIZE:
                compact.push(TILE_HEIGHT, tiles.hash_from_tile(res.leaves, 0, TILE_WIDTH))
            else:
                for i in range(0, len(res.leaves), HASH_SIZE):
                    compact.push(0, res.leaves[i : i + HASH_SIZE])
        report.entries_checked = res.end
        if progress is not None:
            progress(res.end)
    report.tiles_checked = auth.fetched
    if complete:
        report.root_from_entries = compact.root()
        explained = any(f.type == "bad_entry" for f in report.findings)
        if report.root_from_entries != auth.cp.root and not explained:
            add(
                Finding(
                    "bad_entry",
                    f"the {size} entries served by {auth.client.url} do not hash to the root "
                    "of its signed checkpoint",
                    {
                        "reason": "entries_do_not_hash_to_root",
                        "checkpoint": auth.note_text,
                        "computed_root": b64(report.root_from_entries),
                        "how_to_check": "hash every entry of every bundle (SHA-256(0x00 || "
                        "entry)) and compute the RFC 6962 root over them",
                    },
                )
            )
    report.seconds = time.monotonic() - started
    return report
