from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as hs

from sigledger.ledger import merkle, tiles
from sigledger.ledger.log.tiletree import ExpandedTile, FullTile, TiledTree
from tests.memtree import MemoryTree


def _leaves(n: int, start: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(str(start + i).encode()) for i in range(n)]


def _grow(batches: list[int]) -> tuple[TiledTree, MemoryTree, dict[tuple[int, int], bytes]]:
    tree = TiledTree(0, {})
    ref = MemoryTree()
    stored: dict[tuple[int, int], bytes] = {}
    count = 0
    for b in batches:
        leaves = _leaves(b, count)
        count += b
        changed = tree.append(leaves)
        for h in leaves:
            ref.append(h)
        for key, data in changed.items():
            old = stored.get(key, b"")
            assert data.startswith(old), "tiles only ever grow by appending"
            stored[key] = data
        assert tree.size == ref.size
        assert tree.root() == ref.root()
    return tree, ref, stored


def test_roots_and_tiles_match_reference_across_boundaries() -> None:
    tree, ref, stored = _grow([1, 254, 1, 1, 300, 65536 - 557, 2, 700])
    # every stored tile equals the tile a reader would compute from the reference tree
    for (level, n), data in stored.items():
        width = len(data) // 32
        for i in range(width):
            assert data[32 * i : 32 * i + 32] == ref.node(8 * level, n * 256 + i)


def test_reload_from_stored_edge_tiles() -> None:
    rng = random.Random(1)
    batches = [rng.randint(1, 600) for _ in range(40)]
    tree, ref, stored = _grow(batches)
    size = tree.size
    edge = {lv: stored[(lv, n)] for lv, n in TiledTree.edge_refs(size)}
    again = TiledTree(size, edge)
    assert again.root() == ref.root()
    more = _leaves(1000, size)
    again.append(more)
    for h in more:
        ref.append(h)
    assert again.root() == ref.root()


def test_proofs_from_tiles_match_reference() -> None:
    tree, ref, stored = _grow([70000])
    size = tree.size
    fresh = TiledTree(
        size, {lv: stored[(lv, n)] for lv, n in TiledTree.edge_refs(size)}, cache_tiles=4
    )
    rng = random.Random(2)

    def getter(nodes: list[tuple[int, int]]) -> merkle.GetNode:
        # As the sequencer does: read the missing tiles from storage, then prove.
        return fresh.getter({ref: stored[ref] for ref in fresh.missing_tiles(nodes)})

    for index in [0, 1, 255, 256, 65535, 65536, 69999, *rng.sample(range(size), 40)]:
        get = getter(merkle.inclusion_nodes(index, size))
        proof = merkle.prove_inclusion(index, size, get)
        assert proof == ref.prove_inclusion(index, size)
        merkle.check_inclusion(index, size, ref.node(0, index), proof, ref.root())
    for old in [1, 255, 256, 257, 65536, 69000, *rng.sample(range(1, size), 20)]:
        get = getter(merkle.consistency_nodes(old, size))
        assert merkle.prove_consistency(old, size, get) == ref.prove_consistency(old, size)


def test_edge_refs_agree_with_tiles_for_size() -> None:
    for size in [0, 1, 255, 256, 257, 65536, 65537, 70000]:
        refs = {(t.level, t.n) for t in tiles.tiles_for_size(size)}
        assert set(TiledTree.edge_refs(size)) == refs


@settings(max_examples=30, deadline=None)
@given(hs.lists(hs.integers(1, 400), min_size=1, max_size=12))
def test_any_batching_gives_the_same_tree(batches: list[int]) -> None:
    tree, ref, _ = _grow(batches)
    one, _, _ = _grow([sum(batches)])
    assert tree.root() == one.root() == merkle.tree_hash(_all_leaves(batches))


def _all_leaves(batches: list[int]) -> list[bytes]:
    out: list[bytes] = []
    count = 0
    for b in batches:
        out.extend(_leaves(b, count))
        count += b
    return out


def test_batch_proofs_equal_single_proofs() -> None:
    _tree, ref, _ = _grow([1000])
    rng = random.Random(3)
    for size in [1, 2, 3, 255, 256, 257, 999, 1000]:
        indexes = sorted(rng.sample(range(size), min(size, 50)))
        assert merkle.prove_inclusions(indexes, size, ref.node) == [
            ref.prove_inclusion(i, size) for i in indexes
        ]


def test_a_full_tile_read_for_proofs_matches_one_pushed_hash_by_hash() -> None:
    data = b"".join(_leaves(tiles.TILE_WIDTH))
    pushed = ExpandedTile(data[:-32])
    pushed.push(data[-32:])
    full = FullTile.of_data(data)
    assert full.rows == FullTile.of_expanded(pushed).rows
    assert [full.hash(r, i) for r in range(9) for i in range(256 >> r)] == [
        pushed.hash(r, i) for r in range(9) for i in range(256 >> r)
    ]
    assert full.root() == pushed.root() == MemoryTree(_leaves(tiles.TILE_WIDTH)).root()
