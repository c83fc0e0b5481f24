"""The packed formats of the PostgreSQL engine's sealed part (ledger/log/packed.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sigledger.ledger.errors import FormatError
from sigledger.ledger.log.packed import (
    KEY_LIMIT,
    RUN_FILL,
    RUN_MAX,
    item,
    items_between,
    merge_run,
    pack_bundle,
    pack_runs,
    parse_item,
    select_items,
    unpack_bundle,
)

leaves = st.lists(st.binary(max_size=300), max_size=300)
pairs = st.tuples(st.integers(0, KEY_LIMIT - 1), st.integers(0, KEY_LIMIT - 1))
# Few distinct keys, so that ranges and runs hold several items of one key.
small_pairs = st.tuples(st.integers(0, 40), st.integers(0, 10_000))


@given(leaves)
def test_bundles_round_trip(data: list[bytes]) -> None:
    packed = pack_bundle(data)
    assert len(packed) == 4 * (len(data) + 1) + sum(map(len, data))
    assert unpack_bundle(packed) == data


@given(leaves.filter(bool), st.data())
def test_damaged_bundles_are_refused(data: list[bytes], draw: st.DataObject) -> None:
    packed = pack_bundle(data)
    cut = draw.draw(st.integers(0, len(packed) - 1))
    with pytest.raises(FormatError):
        unpack_bundle(packed[:cut])
    with pytest.raises(FormatError):
        unpack_bundle(packed + b"x")


def test_bundles_with_offsets_going_back_are_refused() -> None:
    packed = bytearray(pack_bundle([b"ab", b"cd"]))
    packed[4:8] = (17).to_bytes(4, "big")  # the second entry would start past its end
    with pytest.raises(FormatError, match="increasing"):
        unpack_bundle(bytes(packed))


@given(pairs, pairs)
def test_items_order_bytewise_as_key_then_index(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert parse_item(item(*a)) == a
    assert (item(*a) < item(*b)) == (a < b)


def test_items_beyond_48_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="48 bits"):
        item(KEY_LIMIT, 0)


@given(st.sets(small_pairs, max_size=400), st.sets(small_pairs, max_size=300))
def test_merging_keeps_every_item_once_in_order(
    old: set[tuple[int, int]], new: set[tuple[int, int]]
) -> None:
    new -= old
    run = b"".join(sorted(item(*p) for p in old))
    pieces = merge_run(b"", run, sorted(item(*p) for p in new))
    assert pieces[0][0] == b""
    assert items_between([r for _lo, r in pieces], item(0, 0), item(KEY_LIMIT - 1, 0)) == sorted(
        old | new
    )
    for lo, r in pieces[1:]:
        assert lo == r[:12]  # a new row starts at its first item
    if len(old | new) <= RUN_MAX:
        assert len(pieces) == 1
    else:
        assert all(len(r) // 12 <= RUN_FILL for _lo, r in pieces)


@given(
    st.sets(small_pairs, max_size=600),
    st.lists(st.tuples(small_pairs, small_pairs), max_size=5),
)
def test_selecting_ranges_finds_what_a_scan_finds(
    items: set[tuple[int, int]], ranges: list[tuple[tuple[int, int], tuple[int, int]]]
) -> None:
    rows = pack_runs(sorted(item(*p) for p in items), first=True)
    assert rows[0][0] == b""
    assert all(len(r) // 12 <= RUN_FILL for _lo, r in rows)
    wanted = [(item(*a), item(*b)) for a, b in ranges]
    expected = sorted({p for p in items for a, b in ranges if a <= p <= b})
    assert select_items(rows, wanted) == expected
