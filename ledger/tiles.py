"""C2SP tlog-tiles: tile paths, tile math and entry bundles (pure, no I/O).

Paths (c2sp.org/tlog-tiles, relative to the log prefix, no leading slash)::

    tile/<L>/<N>[.p/<W>]        W hashes of tree level 8*L (32*W bytes)
    tile/entries/<N>[.p/<W>]    entry bundle of W entries

``<L>`` is decimal 0-63 without leading zeros; ``<W>`` is 1-255 without leading
zeros and present only for partial tiles (a full tile has 256 hashes or
entries); ``<N>`` is written in 3-digit groups, most significant first, every
group but the last prefixed with ``x``: 1234067 -> ``x001/x234/067``.
:func:`parse_tile_path` accepts only that canonical form and indexes below
2**64. A :class:`TileRef` with ``level == -1`` names an entry bundle.

Tile ``(L, N)`` holds hashes ``N*256 ... N*256+W-1`` of tree level ``8*L``; each
is the root of a perfect subtree of ``256**L`` leaves, so a perfect node at
level ``8*L + r`` (``0 <= r < 8``) is the fold of ``2**r`` consecutive hashes
of one tile (:func:`tile_for_node`, :func:`hash_from_tile`).

Entry bundle body: for each entry ``u16be(len(entry)) || entry``; no count,
no trailer. Entry ``i`` of bundle ``N`` is log entry ``N*256 + i``. Bundles are
never empty (a zero-width tile is never served).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sigledger.ledger import merkle
from sigledger.ledger.encoding import UINT64_LIMIT
from sigledger.ledger.errors import FormatError
from sigledger.ledger.merkle import HASH_SIZE

__all__ = [
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileRef",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entry_bundle_for",
    "format_index",
    "format_tile_path",
    "hash_from_tile",
    "parse_tile_path",
    "tile_for_node",
    "tile_width",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 256
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF


# The longest canonical path is "tile/entries/" + 7 groups + ".p/255" (52
# characters); anything much longer is rejected before the regex and int().
_MAX_PATH_LEN = 64
# [0-9], not \d: \d also matches non-ASCII digits such as U+FF10.
_PATH_RE = re.compile(
    r"tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/){0,6}[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?"
)


@dataclass(frozen=True, slots=True)
class TileRef:
    """A hash tile ``(level, n, width)``, or an entry bundle when ``level == -1``.

    ``ValueError`` unless ``-1 <= level <= 63``, ``0 <= n < 2**64`` and
    ``1 <= width <= 256`` (256 = full).
    """

    level: int
    n: int
    width: int

    def __post_init__(self) -> None:
        if not -1 <= self.level <= MAX_LEVEL:
            raise ValueError(f"tile level {self.level} is not in [-1, {MAX_LEVEL}]")
        if not 0 <= self.n < UINT64_LIMIT:
            raise ValueError(f"tile index {self.n} is outside the uint64 range")
        if not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"tile width {self.width} is not in [1, {TILE_WIDTH}]")

    @property
    def is_entries(self) -> bool:
        """True for an entry bundle (``tile/entries/...``)."""
        return self.level == -1

    @property
    def path(self) -> str:
        """The canonical path, e.g. ``tile/0/x001/234.p/5``."""
        return format_tile_path(self)


def format_index(n: int) -> str:
    """The tlog-tiles ``<N>`` path element: 1234067 -> ``x001/x234/067``."""
    if not 0 <= n < UINT64_LIMIT:
        raise ValueError(f"tile index {n} is outside the uint64 range")
    s = f"{n % 1000:03d}"
    n //= 1000
    while n:
        s = f"x{n % 1000:03d}/{s}"
        n //= 1000
    return s


def format_tile_path(tile: TileRef) -> str:
    """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (no leading slash)."""
    level = "entries" if tile.level == -1 else str(tile.level)
    suffix = "" if tile.width == TILE_WIDTH else f".p/{tile.width}"
    return f"tile/{level}/{format_index(tile.n)}{suffix}"


def parse_tile_path(path: str) -> TileRef:
    """Parse a canonical tile or entry-bundle path; ``FormatError`` for anything else.

    Exactly ``tile/...`` (no leading slash, no query), ASCII digits only, no
    leading zeros in ``<L>`` or ``<W>``, no superfluous ``x000/`` group,
    ``<W>`` in 1-255, ``<L>`` in 0-63 and ``<N>`` below 2**64.
    """
    if len(path) > _MAX_PATH_LEN:
        raise FormatError("tile path is too long")
    m = _PATH_RE.fullmatch(path)
    if m is None:
        raise FormatError(f"not a tile path: {path!r}")
    level_s, index_s, width_s = m.groups()
    level = -1 if level_s == "entries" else int(level_s)
    if level > MAX_LEVEL:
        raise FormatError(f"tile level {level} is above {MAX_LEVEL}")
    if index_s.startswith("x000/"):
        raise FormatError(f"tile index in {path!r} has a leading zero group")
    n = int(index_s.replace("x", "").replace("/", ""))
    if n >= UINT64_LIMIT:
        raise FormatError(f"tile index in {path!r} overflows uint64")
    width = TILE_WIDTH
    if width_s is not None:
        width = int(width_s)
        if width >= TILE_WIDTH:
            raise FormatError(f"partial tile width {width} is not in [1, {TILE_WIDTH - 1}]")
    return TileRef(level, n, width)


def tile_width(level: int, n: int, size: int) -> int:
    """How many hashes tile ``(level, n)`` holds at tree ``size`` (0 to 256).

    For entry bundles use level 0: bundle ``n`` holds as many entries as tile ``(0, n)``
    holds leaf hashes.
    """
    return max(0, min(TILE_WIDTH, (size >> (TILE_HEIGHT * level)) - n * TILE_WIDTH))


def tile_for_node(level: int, index: int) -> tuple[TileRef, int, int]:
    """Where perfect node ``(level, index)`` lives: ``(tile, offset, count)``.

    The node is the fold of hashes ``offset .. offset+count-1`` of ``tile``
    (a tile at tree level ``8 * (level // 8)``); ``count`` is ``2**(level % 8)``
    and ``tile.width`` is the smallest width that holds them
    (``offset + count``). The node must be complete in any tree size the tile
    is fetched for.
    """
    if level < 0 or index < 0 or index << level >= UINT64_LIMIT:
        raise ValueError(f"invalid node ({level}, {index})")
    tile_level, rest = divmod(level, TILE_HEIGHT)
    first = index << rest
    count = 1 << rest
    n, offset = divmod(first, TILE_WIDTH)
    return TileRef(tile_level, n, offset + count), offset, count


def hash_from_tile(data: bytes, offset: int, count: int) -> bytes:
    """Fold hashes ``offset .. offset+count-1`` of tile ``data`` into one perfect-subtree hash.

    ``count`` must be a power of two (1-256) and the range must lie inside
    one tile (``ValueError``); ``FormatError`` if ``data`` is not a whole
    number of hashes, longer than a full tile or too short.
    """
    if count < 1 or count & (count - 1) or count > TILE_WIDTH:
        raise ValueError(f"hash count {count} is not a power of two in [1, {TILE_WIDTH}]")
    if offset < 0 or offset % count or offset + count > TILE_WIDTH:
        raise ValueError(f"hashes [{offset}, {offset + count}) are not one subtree of a tile")
    if len(data) % HASH_SIZE or len(data) > TILE_WIDTH * HASH_SIZE:
        raise FormatError(f"tile data of {len(data)} bytes is not 1 to {TILE_WIDTH} hashes")
    end = (offset + count) * HASH_SIZE
    if len(data) < end:
        raise FormatError(
            f"tile of {len(data) // HASH_SIZE} hashes has no hash {offset + count - 1}"
        )
    return merkle.tree_hash(
        [data[i : i + HASH_SIZE] for i in range(offset * HASH_SIZE, end, HASH_SIZE)]
    )


def tiles_for_size(size: int) -> list[TileRef]:
    """The partial tiles at tree ``size``, lowest level first.

    For each level ``l`` with ``size >> 8l > 0`` whose width
    ``(size >> 8l) % 256`` is non-zero, the tile
    ``((size >> 8l) // 256, width)``. Every perfect subtree of the tree's
    decomposition (the set bits of ``size``) lies in one of them, so these are
    exactly the tiles needed to recompute the root (tlog-tiles: clients fetch
    only partial tiles a verified checkpoint requires).
    """
    if not 0 <= size < UINT64_LIMIT:
        raise ValueError(f"tree size {size} is outside the uint64 range")
    tiles: list[TileRef] = []
    level = 0
    s = size
    while s:
        n, width = divmod(s, TILE_WIDTH)
        if width:
            tiles.append(TileRef(level, n, width))
        s >>= TILE_HEIGHT
        level += 1
    return tiles


def entry_bundle_for(index: int, size: int) -> TileRef:
    """The entry bundle holding entry ``index`` as published at tree ``size``."""
    if not 0 <= index < size or size >= UINT64_LIMIT:
        raise ValueError(f"entry {index} is not in a tree of size {size}")
    n = index // TILE_WIDTH
    return TileRef(-1, n, min(size - n * TILE_WIDTH, TILE_WIDTH))


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """``u16be(len) || entry`` for each entry; 1-256 entries of at most 65535 bytes."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise ValueError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {len(entries)}")
    parts: list[bytes] = []
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise ValueError(f"entry of {len(entry)} bytes exceeds {MAX_ENTRY_SIZE}")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle into its entries.

    ``FormatError`` if the body is empty, ends inside a length or an entry,
    or holds more than 256 entries.
    """
    if not data:
        raise FormatError("entry bundle is empty")
    entries: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if len(entries) == TILE_WIDTH:
            raise FormatError(f"entry bundle holds more than {TILE_WIDTH} entries")
        if pos + 2 > end:
            raise FormatError("entry bundle ends inside a length prefix")
        start = pos + 2
        stop = start + (data[pos] << 8 | data[pos + 1])
        if stop > end:
            raise FormatError("entry bundle ends inside an entry")
        entries.append(data[start:stop])
        pos = stop
    return entries
