"""The shared strict readers of base64, decimals, hex digests and note text."""

from __future__ import annotations

import pytest

from sigledger.ledger.encoding import (
    MAX_UINT63,
    b64decode,
    b64encode,
    lines_problem,
    parse_decimal,
    sha256_from_hex,
    text_problem,
)
from sigledger.ledger.entry import is_project_name
from sigledger.ledger.errors import FormatError


@pytest.mark.parametrize("raw", [b"", b"\x00", b"ab", b"\xff" * 32])
def test_base64_round_trips_as_text_and_bytes(raw: bytes) -> None:
    text = b64encode(raw)
    assert b64decode(text, "x") == raw
    assert b64decode(text.encode(), "x") == raw


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("A===", "not valid base64"),  # impossible padding
        ("AQ", "not valid base64"),  # no padding
        ("AR==", "canonical"),  # non-zero trailing bits
        ("A-_=", "not valid base64"),  # URL alphabet
        ("AQ==\n", "not valid base64"),
        ("é", "not valid base64"),
    ],
)
def test_base64_refuses_every_other_spelling(text: str, why: str) -> None:
    with pytest.raises(FormatError, match=f"^thing is (not in )?{why}"):
        b64decode(text, "thing")


def test_decimals_are_canonical_and_bounded() -> None:
    assert parse_decimal("0", "n") == 0
    assert parse_decimal(b"123", "n") == 123
    assert parse_decimal(str(MAX_UINT63), "n") == MAX_UINT63
    for bad in ("", "01", "-1", "+1", " 1", "1 ", "1e3", "١"):
        with pytest.raises(FormatError, match="not a canonical decimal"):
            parse_decimal(bad, "n")
    with pytest.raises(FormatError, match="larger than 2\\^63-1"):
        parse_decimal(str(MAX_UINT63 + 1), "n")


def test_note_text_problems() -> None:
    assert text_problem("a\nb — ü") is None
    assert text_problem("a\tb") == "contains control character '\\t'"
    assert text_problem("a\rb\x00") == "contains control character '\\r'"
    assert text_problem("a\ud800") == "is not valid UTF-8 (it contains a lone surrogate)"
    assert lines_problem("a\n") is None
    assert lines_problem("a") == "does not end with a newline"
    assert lines_problem("a\x7f\x01\n") == "contains control character '\\x01'"


def test_sha256_hex() -> None:
    low = "ab" * 32
    assert sha256_from_hex(low) == bytes([0xAB]) * 32
    assert sha256_from_hex(low.upper()) is None
    assert sha256_from_hex(low.upper(), any_case=True) == bytes([0xAB]) * 32
    for bad in (low[:-1], low + "0", "g" + low[1:], "ab " * 21 + "a", None, 5):
        assert sha256_from_hex(bad) is None


def test_project_names() -> None:
    for good in ("a", "A", "foo-bar", "foo_bar.baz", "x" * 200):
        assert is_project_name(good)
    for bad in ("", "-a", "a-", ".a", "a b", "x" * 201, "é"):
        assert not is_project_name(bad)
