from __future__ import annotations

import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import Signer
from sigledger.ledger.wire import (
    JSON_TYPE,
    MSGPACK_TYPE,
    encode_add_request,
    parse_add_request,
    statement_from_json,
    statement_to_json,
)
from tests.helpers import signed

ALICE = Signer.from_seed("alice", bytes([7]) * 32)
GOOD = [signed(ALICE, version=f"{i}.0") for i in range(3)]


@pytest.mark.parametrize("ctype", [JSON_TYPE, MSGPACK_TYPE])
def test_round_trip(ctype: str) -> None:
    body = encode_add_request(GOOD, ctype)
    assert parse_add_request(body, ctype, 10) == GOOD
    with pytest.raises(FormatError, match="at most 2"):
        parse_add_request(body, ctype, 2)


def test_single_object_form() -> None:
    body = json.dumps(statement_to_json(GOOD[0])).encode()
    assert parse_add_request(body, JSON_TYPE, 1) == GOOD[:1]


def test_json_rejects_non_canonical_fields() -> None:
    obj = statement_to_json(GOOD[0])
    assert statement_from_json(obj) == GOOD[0]
    for field, value in [
        ("signature", obj["signature"].rstrip("=")),
        ("sha256", obj["sha256"][:-1]),
        ("size", 1.0),
        ("size", "1"),
        ("project", "SampleProject"),
        ("signer", "alice+00000000+AAAA"),
    ]:
        with pytest.raises(FormatError, match=field):
            statement_from_json({**obj, field: value})


def test_msgpack_rejects_non_canonical_arrays() -> None:
    items = [msgpack.unpackb(encode_add_request(GOOD[:1], MSGPACK_TYPE))[0]]
    # array16 header for a 1-element array is not the shortest encoding
    body = b"\xdc\x00\x01" + msgpack.packb(items[0], use_bin_type=True)
    with pytest.raises(FormatError, match="canonical"):
        parse_add_request(body, MSGPACK_TYPE, 10)


@settings(max_examples=300)
@given(hs.binary(max_size=300), hs.sampled_from([JSON_TYPE, MSGPACK_TYPE, "text/html"]))
def test_parser_only_raises_format_error(body: bytes, ctype: str) -> None:
    try:
        parse_add_request(body, ctype, 5)
    except FormatError:
        pass


@settings(max_examples=200)
@given(
    hs.recursive(
        hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=5),
        lambda c: hs.lists(c, max_size=3) | hs.dictionaries(hs.text(max_size=8), c, max_size=8),
        max_leaves=20,
    )
)
def test_json_shapes_only_raise_format_error(doc: object) -> None:
    try:
        parse_add_request(json.dumps(doc).encode(), JSON_TYPE, 5)
    except FormatError:
        pass
