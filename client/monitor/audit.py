"""Read a whole tlog-tiles log through its read API and verify every byte of it.

This is the engine under ``sigledger monitor`` and ``sigledger fsck``. It uses
only ``GET /checkpoint``, ``GET /tile/<L>/<N>[.p/<W>]`` and
``GET /tile/entries/<N>[.p/<W>]`` (c2sp.org/tlog-tiles@v0.1.0), so it works
against any tlog-tiles log, also one served by a CDN.

**Tiles** are authenticated by :class:`sigledger.client.tiles.TileAuth` (the
client's one tile authenticator); a tile that fails is a
:class:`~sigledger.client.tiles.BadTileError` carrying ``bad_tile`` evidence.

**Entries** (:func:`verify_range`) are fetched bundle by bundle with their
level-0 tile. Every entry is re-hashed (``SHA-256(0x00 || entry)``) and
compared with its authenticated level-0 tile hash, decoded with
:func:`sigledger.ledger.entry.decode_entry` and its publisher signature re-verified. When
the level-0 tile itself fails against its parent, the bundle's leaf hashes are
folded and compared with the parent hash instead, so the entries are still
authenticated. Every failure becomes a :class:`Finding` with evidence a third
party can check without trusting us: the signed checkpoint note, the bytes
concerned and RFC 6962 inclusion proofs computed from authenticated tiles.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from sigledger.client.tiles import (
    HASH_SIZE,
    BadTileError,
    Finding,
    TileAuth,
    b64,
)
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.entry import decode_entry
from sigledger.ledger.errors import FormatError
from sigledger.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileRef, tile_width

__all__ = [
    "AuditReport",
    "BundleResult",
    "EntryInfo",
    "audit_log",
    "check_bundle",
    "verify_range",
]

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
        message = f"{bundle_ref.path} from {auth.url} is malformed: {exc}"
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
                        f"{auth.url} both disagree with checkpoint {size}"
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

    async def entry_finding(
        pos: int, hashes: bytes, reason: str, message: str, why: str, detail: str | None = None
    ) -> Finding:
        """A bad_entry finding on the bundle's entry ``pos``, whose committed leaf
        hash is in ``hashes``; ``why`` ends the how_to_check recipe."""
        index = base + pos
        evidence: dict[str, Any] = {
            "reason": reason,
            "checkpoint": auth.note_text,
            "tree_size": size,
            "index": index,
            "entry": b64(entries[pos]),
            "leaf_hash": b64(hashes[pos * HASH_SIZE : (pos + 1) * HASH_SIZE]),
            "inclusion_proof": await proof_of(index),
        }
        if detail is not None:
            evidence["detail"] = detail
        evidence["bundle"] = bundle_ref.path
        evidence["how_to_check"] = HOW_TO_CHECK_ENTRY + why
        return Finding("bad_entry", message, evidence, index=index)

    infos = list(infos)
    for i in mismatched:
        index = base + i
        assert tile is not None
        message = (
            f"entry {index} from {auth.url} does not hash to the leaf hash its "
            f"signed checkpoint {size} commits to"
        )
        why = (
            "; SHA-256(0x00 || entry) differs from leaf_hash, "
            "so the log serves bytes it never committed to"
        )
        findings.append(await entry_finding(i, tile, "leaf_hash_mismatch", message, why))
        if index >= first:
            infos[index - first] = None
    for pos, (reason, detail) in sorted(bad.items()):
        index = base + pos
        if not first <= index < stop or pos in mismatched:
            continue
        undecodable = reason == "does_not_decode"
        what = "does not decode" if undecodable else "has a bad signature"
        outcome = (
            "(entry) fails"
            if undecodable
            else "(entry) succeeds but SignedStatement.verify() is False"
        )
        why = (
            "; leaf_hash is SHA-256(0x00 || entry), and sigledger.ledger.entry.decode_entry"
            f"{outcome}: the log committed to an entry it must have refused"
        )
        message = f"entry {index} of checkpoint {size} {what}: {detail}"
        findings.append(await entry_finding(pos, leaves, reason, message, why, detail))
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
    report = AuditReport(auth.url, auth.cp, auth.note)
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
                    f"the {size} entries served by {auth.url} do not hash to the root "
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
