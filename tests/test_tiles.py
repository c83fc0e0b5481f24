"""Tests for sigledger.ledger.tiles: tlog-tiles paths, tile math and entry bundles."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigledger.ledger import tiles
from sigledger.ledger.errors import FormatError
from sigledger.ledger.log.tiletree import TiledTree
from sigledger.ledger.merkle import fold_nodes, leaf_hash, tree_nodes
from sigledger.ledger.tiles import (
    MAX_LEVEL,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileRef,
    decode_entry_bundle,
    encode_entry_bundle,
    entry_bundle_for,
    format_index,
    format_tile_path,
    hash_from_tile,
    parse_tile_path,
    tile_for_node,
    tile_width,
    tiles_for_size,
)
from tests.memtree import MemoryTree

VECTORS = json.loads((Path(__file__).parent / "vectors" / "tiles.json").read_text())
UINT64_MAX = (1 << 64) - 1


def ref(t: list[int]) -> TileRef:
    return TileRef(*t)


def decimal_entry(i: int) -> bytes:
    return str(i).encode("ascii")


@pytest.fixture(scope="module")
def decimal_tree() -> MemoryTree:
    return MemoryTree(leaf_hash(decimal_entry(i)) for i in range(70_000))


def tile_data(tree: MemoryTree, tile: TileRef) -> bytes:
    """Tile contents from a tree: hashes at level 8L, N*256 .. N*256+W-1."""
    level = TILE_HEIGHT * tile.level
    first = tile.n * TILE_WIDTH
    return b"".join(tree.node(level, first + i) for i in range(tile.width))


def published(size: int) -> set[TileRef]:
    """Every hash tile a log serves at ``size``: all full tiles plus the partial ones."""
    out: set[TileRef] = set()
    level, count = 0, size
    while count:
        out.update(TileRef(level, n, TILE_WIDTH) for n in range(count // TILE_WIDTH))
        if count % TILE_WIDTH:
            out.add(TileRef(level, count // TILE_WIDTH, count % TILE_WIDTH))
        count >>= TILE_HEIGHT
        level += 1
    return out


# --- module hygiene --------------------------------------------------------


def test_module_is_pure() -> None:
    tree = ast.parse(Path(tiles.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "hashlib", "re", "collections", "dataclasses", "sigledger"}


def test_constants() -> None:
    assert (TILE_HEIGHT, TILE_WIDTH, MAX_LEVEL) == (8, 256, 63)


# --- published path vectors ------------------------------------------------

TESSERA = VECTORS["tessera_paths"]


@pytest.mark.parametrize("case", TESSERA["entry_bundles"], ids=lambda c: c["path"])
def test_tessera_entry_bundle_paths(case: dict[str, Any]) -> None:
    bundle = entry_bundle_for(case["index"], case["size"])
    assert bundle.is_entries
    assert bundle.path == case["path"]
    assert parse_tile_path(case["path"]) == bundle


@pytest.mark.parametrize("case", TESSERA["tiles"], ids=lambda c: c["path"])
def test_tessera_tile_paths(case: dict[str, Any]) -> None:
    tile = ref(case["tile"])
    assert not tile.is_entries
    assert format_tile_path(tile) == tile.path == case["path"]
    assert parse_tile_path(case["path"]) == tile


@pytest.mark.parametrize(
    "case",
    TESSERA["parse_valid"] + VECTORS["go_paths"]["valid"] + VECTORS["uint64_edges"]["valid"],
    ids=lambda c: c["path"],
)
def test_parse_valid_vectors(case: dict[str, Any]) -> None:
    tile = parse_tile_path(case["path"])
    assert tile == ref(case["tile"])
    assert tile.path == case["path"]


EXTRA_INVALID = [
    "",
    "tile",
    "tile/",
    "tile/0",
    "tile/0/",
    "/tile/0/000",
    "tile/0/000/",
    "tile//0/000",
    "./tile/0/000",
    "TILE/0/000",
    "tile/0/000 ",
    " tile/0/000",
    "tile/0/000\n",
    "tile/0/000?x=1",
    "tile/00/000",
    "tile/01/000",
    "tile/+1/000",
    "tile/1.0/000",
    "tile/0/0",
    "tile/0/00",
    "tile/0/0000",
    "tile/0/+01",
    "tile/0/ 01",
    "tile/0/0_1",
    "tile/0/００１",
    "tile/０/001",
    "tile/0/00١",
    "tile/0/x000/001",
    "tile/0/X001/000",
    "tile/0/x001/x000",
    "tile/0/x001x/000",
    "tile/0/000.p/0",
    "tile/0/000.p/00",
    "tile/0/000.p/01",
    "tile/0/000.p/256",
    "tile/0/000.p/1000",
    "tile/0/000.p/+5",
    "tile/0/000.p/5/",
    "tile/0/000.P/5",
    "tile/0/000.p.5",
    "tile/0/000p/5",
    "tile/entries/000.p/0",
    "tile/entries/000.p/256",
    "tile/entries/x000/000",
    "tile/entry/000",
    "tile/data/000",
    "tile/8/0/000",
    "tile/8/data/000",
    "tile/entries",
    "tile/entries/",
    "tile/64/000",
    "tile/99/000",
    "tile/100/000",
    "tile/0/x001/x002/x003/x004/x005/x006/x007/008",
    "tile/0/" + "x001/" * 40 + "000",
    "checkpoint",
]


@pytest.mark.parametrize(
    "path",
    TESSERA["parse_invalid"]
    + [c["path"] for c in VECTORS["go_paths"]["invalid"]]
    + [c["go_path"] for c in VECTORS["go_paths"]["valid"]]
    + VECTORS["uint64_edges"]["invalid"]
    + EXTRA_INVALID,
)
def test_parse_invalid(path: str) -> None:
    with pytest.raises(FormatError):
        parse_tile_path(path)


def test_index_encoding_vectors() -> None:
    for n, text in VECTORS["spec_paths"]["index_encoding"]:
        assert format_index(n) == text
        assert parse_tile_path(f"tile/0/{text}").n == n
    assert format_index(UINT64_MAX) == "x018/x446/x744/x073/x709/x551/615"
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError):
            format_index(bad)


def test_tile_ref_validation() -> None:
    for args in [(-2, 0, 1), (64, 0, 1), (0, -1, 1), (0, 1 << 64, 1), (0, 0, 0), (0, 0, 257)]:
        with pytest.raises(ValueError):
            TileRef(*args)
    t = TileRef(-1, 5, 3)
    assert t.is_entries
    assert t.path == "tile/entries/005.p/3"
    with pytest.raises(AttributeError):
        t.n = 6  # type: ignore[misc]


@settings(max_examples=500, deadline=None)
@given(
    level=st.integers(-1, MAX_LEVEL),
    n=st.integers(0, 5000) | st.integers(0, UINT64_MAX),
    width=st.integers(1, TILE_WIDTH),
)
def test_tile_path_round_trip(level: int, n: int, width: int) -> None:
    tile = TileRef(level, n, width)
    path = format_tile_path(tile)
    assert parse_tile_path(path) == tile
    assert path.startswith("tile/entries/" if level == -1 else f"tile/{level}/")
    index = format_index(n)
    assert parse_tile_path(f"tile/0/{index}") == TileRef(0, n, TILE_WIDTH)


PATH_ALPHABET = st.sampled_from([*"tile/entris0123456789x.p/-+ ０", "tile/", "x00", ".p/"])


@settings(max_examples=1000, deadline=None)
@given(text=st.text() | st.lists(PATH_ALPHABET, max_size=30).map("".join))
def test_parse_only_raises_format_error(text: str) -> None:
    for candidate in (text, "tile/" + text, "tile/0/" + text, "tile/entries/" + text):
        try:
            tile = parse_tile_path(candidate)
        except FormatError:
            continue
        # Whatever parses is canonical: it formats back to the same text.
        assert tile.path == candidate


# --- tile math -------------------------------------------------------------


def test_tile_for_node_examples() -> None:
    assert tile_for_node(0, 0) == (TileRef(0, 0, 1), 0, 1)
    assert tile_for_node(0, 300) == (TileRef(0, 1, 45), 44, 1)
    assert tile_for_node(7, 0) == (TileRef(0, 0, 128), 0, 128)
    assert tile_for_node(7, 1) == (TileRef(0, 0, 256), 128, 128)
    assert tile_for_node(7, 2) == (TileRef(0, 1, 128), 0, 128)
    assert tile_for_node(8, 0) == (TileRef(1, 0, 1), 0, 1)
    assert tile_for_node(9, 3) == (TileRef(1, 0, 8), 6, 2)
    assert tile_for_node(16, 2) == (TileRef(2, 0, 3), 2, 1)
    for args in [(-1, 0), (0, -1), (8 * 64, 0), (0, 1 << 64)]:
        with pytest.raises(ValueError):
            tile_for_node(*args)


def node_from_tiles(tree: MemoryTree, level: int, index: int) -> bytes:
    tile, offset, count = tile_for_node(level, index)
    assert offset + count == tile.width
    assert tile.level == level // 8
    assert count == 1 << (level % 8)
    return hash_from_tile(tile_data(tree, tile), offset, count)


def test_every_node_small_sizes(decimal_tree: MemoryTree) -> None:
    # Every perfect node completed by size 600, from a tile of minimum width.
    for level in range(10):
        for index in range(600 >> level):
            assert node_from_tiles(decimal_tree, level, index) == decimal_tree.node(level, index)


def test_nodes_at_70000_sparse(decimal_tree: MemoryTree) -> None:
    size = 70_000
    for level in range(17):
        count = size >> level
        step = 1 if level >= 8 else 97
        for index in [*range(0, count, step), count - 1]:
            assert node_from_tiles(decimal_tree, level, index) == decimal_tree.node(level, index)


def root_from_tiles(tree: MemoryTree, size: int) -> bytes:
    """The checkpoint root recomputed only from the tiles tiles_for_size names."""
    data = {(t.level, t.n): (t.width, tile_data(tree, t)) for t in tiles_for_size(size)}
    hashes = []
    for level, index in tree_nodes(size):
        tile, offset, count = tile_for_node(level, index)
        width, body = data[tile.level, tile.n]
        assert tile.width <= width
        hashes.append(hash_from_tile(body, offset, count))
    return fold_nodes(hashes)


def test_root_from_tiles_every_size(decimal_tree: MemoryTree) -> None:
    for size in range(0, 601):
        assert root_from_tiles(decimal_tree, size) == decimal_tree.root(size)


@pytest.mark.parametrize("size", [65535, 65536, 65537, 69_999, 70_000])
def test_root_from_tiles_large(size: int, decimal_tree: MemoryTree) -> None:
    assert root_from_tiles(decimal_tree, size) == decimal_tree.root(size)


def test_tiles_for_size_vectors() -> None:
    for case in VECTORS["spec_paths"]["tiles_for_size"]:
        assert [t.path for t in tiles_for_size(case["size"])] == case["tiles"]
    assert tiles_for_size(0) == []
    assert tiles_for_size(65536) == [TileRef(2, 0, 1)]
    assert tiles_for_size(UINT64_MAX)[-1] == TileRef(7, 0, 255)
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError):
            tiles_for_size(bad)


def _grown(old: int, new: int) -> list[TileRef]:
    """The tiles the log's tile tree rewrites when it grows from ``old`` to ``new``."""
    tree = TiledTree(0, {})
    tree.append([leaf_hash(i.to_bytes(8, "big")) for i in range(old)])
    changed = tree.append([leaf_hash(i.to_bytes(8, "big")) for i in range(old, new)])
    return sorted(
        (TileRef(level, n, len(data) // 32) for (level, n), data in changed.items()),
        key=lambda t: (t.level, t.n),
    )


def test_published_tiles_vectors() -> None:
    a, b = VECTORS["spec_paths"]["new_tiles"]
    assert [t.path for t in _grown(a["old"], a["new"])] == a["tiles"]
    got = _grown(b["old"], b["new"])
    for level, count in enumerate(b["full_tiles_at_level"]):
        full = [t for t in got if t.level == level and t.width == TILE_WIDTH]
        assert [t.n for t in full] == list(range(count))
    assert [t.path for t in got if t.width != TILE_WIDTH] == b["partial"]
    assert _grown(5, 5) == []
    assert _grown(256, 257) == [TileRef(0, 1, 1)]
    assert _grown(255, 256) == [TileRef(0, 0, 256), TileRef(1, 0, 1)]


@settings(max_examples=40, deadline=None)
@given(old=st.integers(0, 3000), grow=st.integers(0, 3000))
def test_published_tiles_are_exactly_the_new_ones(old: int, grow: int) -> None:
    new = old + grow
    assert set(_grown(old, new)) == published(new) - published(old)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 300_000) | st.integers(0, UINT64_MAX))
def test_tiles_for_size_property(size: int) -> None:
    got = tiles_for_size(size)
    assert all(t.width < TILE_WIDTH for t in got)
    assert [t.level for t in got] == sorted({t.level for t in got})
    if size < 300_000:
        assert set(got) == {t for t in published(size) if t.width != TILE_WIDTH}
    # Every node of the root's decomposition lies inside a listed tile.
    by_pos = {(t.level, t.n): t.width for t in got}
    for level, index in tree_nodes(size):
        tile, offset, count = tile_for_node(level, index)
        assert by_pos[tile.level, tile.n] >= offset + count


def test_hash_from_tile_errors(decimal_tree: MemoryTree) -> None:
    data = tile_data(decimal_tree, TileRef(0, 0, 8))
    assert hash_from_tile(data, 0, 8) == decimal_tree.node(3, 0)
    assert hash_from_tile(data, 4, 4) == decimal_tree.node(2, 1)
    assert hash_from_tile(data, 7, 1) == decimal_tree.node(0, 7)
    for offset, count in [(0, 3), (0, 0), (1, 2), (-1, 1), (0, 512), (256, 1)]:
        with pytest.raises(ValueError):
            hash_from_tile(data, offset, count)
    with pytest.raises(FormatError):
        hash_from_tile(data, 0, 16)
    with pytest.raises(FormatError):
        hash_from_tile(data[:-1], 0, 1)
    with pytest.raises(FormatError):
        hash_from_tile(b"", 0, 1)
    with pytest.raises(FormatError):
        hash_from_tile(bytes(32 * 257), 0, 1)


# --- the decimal tree at size 257 (SPECS §6.10) ----------------------------

DECIMAL = VECTORS["decimal_tree"]


def test_decimal_tree_tiles(decimal_tree: MemoryTree) -> None:
    size = DECIMAL["size"]
    hash_tiles = sorted(published(size), key=lambda t: (t.level, t.n))
    bundles = sorted({entry_bundle_for(i, size) for i in range(size)}, key=lambda t: t.n)
    assert [t.path for t in hash_tiles + bundles] == DECIMAL["served"]
    files = {t.path: tile_data(decimal_tree, t) for t in hash_tiles}
    assert hashlib.sha256(files["tile/0/000"]).hexdigest() == DECIMAL["tile_0_000_sha256"]
    assert files["tile/0/001.p/1"].hex() == DECIMAL["tile_0_001_p1"]
    assert files["tile/1/000.p/1"].hex() == DECIMAL["tile_1_000_p1"]
    # The level-1 hash is the root of the full level-0 tile.
    assert hash_from_tile(files["tile/0/000"], 0, 256) == files["tile/1/000.p/1"]
    assert root_from_tiles(decimal_tree, size).hex() == DECIMAL["root_257"]
    assert root_from_tiles(decimal_tree, 300).hex() == DECIMAL["root_300"]
    # Entry bundles: entries rehash to the level-0 tile.
    for bundle in bundles:
        first = bundle.n * TILE_WIDTH
        entries = [decimal_entry(i) for i in range(first, first + bundle.width)]
        body = encode_entry_bundle(entries)
        assert decode_entry_bundle(body) == entries
        level0 = tile_data(decimal_tree, TileRef(0, bundle.n, bundle.width))
        assert b"".join(leaf_hash(e) for e in entries) == level0


# --- entry bundles ---------------------------------------------------------


def test_entry_bundle_vector() -> None:
    body = encode_entry_bundle([b"0", b"1", b"2"])
    assert body.hex() == DECIMAL["bundle_0_1_2_hex"]
    assert decode_entry_bundle(body) == [b"0", b"1", b"2"]


def test_entry_bundle_limits() -> None:
    big = b"\xff" * 65535
    body = encode_entry_bundle([big, b""])
    assert body[:2] == b"\xff\xff"
    assert decode_entry_bundle(body) == [big, b""]
    full = encode_entry_bundle([b""] * 256)
    assert decode_entry_bundle(full) == [b""] * 256
    for bad in ([b"x" * 65536], [b""] * 257, []):
        with pytest.raises(ValueError):
            encode_entry_bundle(bad)
    for data in (
        b"",  # an empty bundle is never served
        b"\x00",  # dangling length byte
        b"\x00\x02a",  # truncated entry
        b"\x00\x01a\x00",  # dangling byte after an entry
        b"\xff\xff" + b"x" * 100,
        full + b"\x00\x00",  # 257 entries
    ):
        with pytest.raises(FormatError):
            decode_entry_bundle(data)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(st.binary(max_size=300), min_size=1, max_size=TILE_WIDTH))
def test_entry_bundle_round_trip(entries: list[bytes]) -> None:
    body = encode_entry_bundle(entries)
    assert len(body) == sum(2 + len(e) for e in entries)
    assert decode_entry_bundle(body) == entries


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=600))
def test_decode_only_raises_format_error(data: bytes) -> None:
    try:
        entries = decode_entry_bundle(data)
    except FormatError:
        return
    assert 1 <= len(entries) <= TILE_WIDTH
    assert encode_entry_bundle(entries) == data


def test_entry_bundle_for() -> None:
    assert entry_bundle_for(0, 1) == TileRef(-1, 0, 1)
    assert entry_bundle_for(255, 300) == TileRef(-1, 0, 256)
    assert entry_bundle_for(299, 300) == TileRef(-1, 1, 44)
    assert entry_bundle_for(UINT64_MAX - 1, UINT64_MAX).path.endswith(".p/255")
    for index, size in [(0, 0), (5, 5), (-1, 5), (0, 1 << 64)]:
        with pytest.raises(ValueError):
            entry_bundle_for(index, size)


@given(st.integers(0, 2**40), st.integers(0, 5))
def test_tile_width_agrees_with_the_partial_tiles(size: int, level: int) -> None:
    partial = {(t.level, t.n): t.width for t in tiles_for_size(size)}
    hashes = size >> (TILE_HEIGHT * level)
    for n in {0, hashes // TILE_WIDTH - 1, hashes // TILE_WIDTH, hashes // TILE_WIDTH + 1}:
        if n < 0:
            continue
        want = partial.get((level, n), TILE_WIDTH if n < hashes // TILE_WIDTH else 0)
        assert tile_width(level, n, size) == want


def test_tile_width_examples() -> None:
    assert tile_width(0, 0, 0) == 0
    assert tile_width(0, 0, 5) == 5
    assert tile_width(0, 1, 256 + 7) == 7
    assert tile_width(0, 0, 256 + 7) == 256
    assert tile_width(1, 0, 256 * 3 + 1) == 3
    assert tile_width(0, 9, 256) == 0
