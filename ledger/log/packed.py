"""Packed entries and key runs: the byte formats of the PostgreSQL engine's sealed part.

PostgreSQL spends about 28 bytes of tuple header and line pointer on every row and
about 30 on every index entry, so a row and three indexes per entry would cost more
than 150 bytes on top of the entry. Once a level-0 tile is full its 256 entries
never change, so the engine stores them **sealed**: one row per bundle of entries
and the lookup keys in sorted runs, several hundred bytes a row (postgres.py).

**Bundle** (the entries ``256 n .. 256 n + 255``)::

    offsets  257 x uint32 big-endian, absolute: entry i is data[offsets[i]:offsets[i+1]]
    entries  the leaf bytes, one after the other

so a reader can fetch one entry with two slices of the stored value (the offsets,
then the entry), and a whole bundle is one value.

**Key run**: items sorted bytewise, each 12 bytes::

    key    uint48 big-endian   a hash key, file key or signer id (indexed.py)
    index  uint48 big-endian   the entry's leaf index

Bytewise order is (key, index) order, so an item range is a key range and, within
one key, the entries in log order. A run row covers the items from its ``lo`` up to
the next row's ``lo``; the first row of each kind has ``lo`` = ``b""``.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Iterable, Sequence

from sigledger.ledger.errors import FormatError

__all__ = [
    "ITEM",
    "KEY_LIMIT",
    "RUN_FILL",
    "RUN_MAX",
    "item",
    "items_between",
    "merge_run",
    "pack_bundle",
    "pack_runs",
    "parse_item",
    "select_items",
    "unpack_bundle",
]

ITEM = 12
KEY_LIMIT = 1 << 48
# A run is split once it holds more than RUN_MAX items; fresh runs hold RUN_FILL.
# Small rows (at most 576 bytes of items) keep a seal's rewrite of the runs it lands
# in cheap, and leave room for PostgreSQL to update them in place (HOT).
RUN_MAX = 48
RUN_FILL = 32


def pack_bundle(leaves: Sequence[bytes]) -> bytes:
    """The bundle of ``leaves`` (any count; a sealed bundle holds 256)."""
    header = 4 * (len(leaves) + 1)
    offsets = [header]
    for leaf in leaves:
        offsets.append(offsets[-1] + len(leaf))
    if offsets[-1] >= 1 << 32:
        raise FormatError("a bundle of more than 4 GiB")
    return struct.pack(f">{len(offsets)}I", *offsets) + b"".join(leaves)


def unpack_bundle(data: bytes) -> list[bytes]:
    """The leaves of a bundle; FormatError for bytes that are not one."""
    if len(data) < 4:
        raise FormatError("a bundle of fewer than 4 bytes")
    (header,) = struct.unpack_from(">I", data)
    if header % 4 or not 4 <= header <= len(data):
        raise FormatError(f"a bundle whose offset table ends at {header} of {len(data)}")
    offsets = struct.unpack_from(f">{header // 4}I", data)
    if offsets[-1] != len(data) or any(a > b for a, b in itertools.pairwise(offsets)):
        raise FormatError("a bundle whose offsets are not increasing up to its length")
    return [data[a:b] for a, b in itertools.pairwise(offsets)]


def item(key: int, index: int) -> bytes:
    if not (0 <= key < KEY_LIMIT and 0 <= index < KEY_LIMIT):
        raise ValueError(f"key {key} or index {index} does not fit in 48 bits")
    return key.to_bytes(6, "big") + index.to_bytes(6, "big")


def parse_item(raw: bytes) -> tuple[int, int]:
    """(key, index) of one item."""
    return int.from_bytes(raw[:6], "big"), int.from_bytes(raw[6:12], "big")


def _split(items: bytes) -> list[bytes]:
    if len(items) % ITEM:
        raise FormatError(f"a key run of {len(items)} bytes (not whole {ITEM}-byte items)")
    return [items[i : i + ITEM] for i in range(0, len(items), ITEM)]


def items_between(runs: Iterable[bytes], low: bytes, high: bytes) -> list[tuple[int, int]]:
    """(key, index) of every item with low <= item <= high in ``runs``, in item order
    (runs given in ``lo`` order)."""
    out: list[tuple[int, int]] = []
    for run in runs:
        items = _split(run)
        for raw in items[bisect.bisect_left(items, low) : bisect.bisect_right(items, high)]:
            out.append(parse_item(raw))
    return out


def select_items(
    rows: Sequence[tuple[bytes, bytes]], ranges: Iterable[tuple[bytes, bytes]]
) -> list[tuple[int, int]]:
    """(key, index) of the items of the run ``rows`` ((lo, items), sorted by lo) that fall
    in one of the inclusive item ``ranges``; each item once, in item order."""
    los = [lo for lo, _ in rows]
    found: set[bytes] = set()
    for low, high in ranges:
        first = max(0, bisect.bisect_right(los, low) - 1)
        last = bisect.bisect_right(los, high)
        for _lo, run in rows[first:last]:
            items = _split(run)
            found.update(items[bisect.bisect_left(items, low) : bisect.bisect_right(items, high)])
    return [parse_item(raw) for raw in sorted(found)]


def merge_run(lo: bytes, run: bytes, new: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
    """The run row (``lo``, ``run``) with ``new`` items added, as rows (lo, items): one
    when it stays within RUN_MAX items, else pieces of at most RUN_FILL, the first
    keeping ``lo`` (the pieces together cover what the row covered)."""
    merged = sorted([*_split(run), *new])
    if len(merged) <= RUN_MAX:
        return [(lo, b"".join(merged))]
    count = -(-len(merged) // RUN_FILL)
    size = -(-len(merged) // count)
    pieces = [merged[i : i + size] for i in range(0, len(merged), size)]
    return [(lo if k == 0 else p[0], b"".join(p)) for k, p in enumerate(pieces)]


def pack_runs(items: Iterable[bytes], *, first: bool) -> list[tuple[bytes, bytes]]:
    """Sorted ``items`` as fresh rows of RUN_FILL; with ``first``, the first row is the
    kind's first (``lo`` = ``b""``)."""
    rows: list[tuple[bytes, bytes]] = []
    chunk: list[bytes] = []
    for raw in items:
        chunk.append(raw)
        if len(chunk) == RUN_FILL:
            rows.append((b"" if first and not rows else chunk[0], b"".join(chunk)))
            chunk = []
    if chunk or (first and not rows):
        rows.append((b"" if first and not rows else chunk[0], b"".join(chunk)))
    return rows
