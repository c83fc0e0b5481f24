"""Text encodings shared by the wire formats: one strict reading of each.

* Base64 is the standard alphabet with ``=`` padding, canonical only: a value
  decodes only if encoding the result gives the same text back, so every byte
  string has one spelling (c2sp.org/signed-note, tlog-checkpoint, tlog-witness).
* Decimals (tree sizes) are canonical: no sign, no leading zero, at most 2^63-1.
* SHA-256 digests as text are 64 hex digits, lower case unless a reader of
  hand-written files (lock files, the search box) also takes upper case.
* Note text may hold no ASCII control character but ``\\n``, and no lone surrogate
  (c2sp.org/signed-note@v1.0.0).

Every reader raises :class:`~sigledger.ledger.errors.FormatError` naming ``what``
was malformed, or returns None where the caller words its own error.
"""

from __future__ import annotations

import base64
import re

from sigledger.ledger.errors import FormatError

MAX_UINT63 = 2**63 - 1
"""Sizes are uint64 on the wire, but every implementation we talk to keeps them
below 2^63 (signed 64-bit integers): accept only that range."""

UINT64_LIMIT = 1 << 64
"""Tile indexes and node positions are uint64: below this."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_DECIMAL_DIGITS = len(str(MAX_UINT63))
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX64_ANY_CASE = re.compile(r"[0-9a-fA-F]{64}")


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str | bytes, what: str) -> bytes:
    """Decode canonical standard base64 with padding, or raise FormatError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise FormatError(f"{what} is not valid base64") from exc
    spelled = base64.b64encode(raw)
    if spelled != (text.encode("ascii") if isinstance(text, str) else bytes(text)):
        raise FormatError(f"{what} is not in canonical base64 (standard alphabet, '=' padding)")
    return raw


def parse_decimal(text: str | bytes, what: str) -> int:
    """A canonical decimal in [0, 2^63-1], or FormatError."""
    digits = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    if len(digits) > _MAX_DECIMAL_DIGITS or _DECIMAL.fullmatch(digits) is None:
        raise FormatError(f"{what} {text[:40]!r} is not a canonical decimal")
    value = int(digits)
    if value > MAX_UINT63:
        raise FormatError(f"{what} {value} is larger than 2^63-1")
    return value


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be note text, or None: a control character other than
    ``\\n``, or a lone surrogate (not UTF-8). Worded to follow what the text is."""
    match = _FORBIDDEN_CONTROL.search(text)
    if match is not None:
        return f"contains control character {match.group()!r}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it contains a lone surrogate)"
    return None


def lines_problem(text: str) -> str | None:
    """Why ``text`` cannot be note text of whole lines (see :func:`text_problem`; it
    must also end with a newline), or None."""
    if not text.endswith("\n"):
        return "does not end with a newline"
    return text_problem(text)


def sha256_from_hex(text: object, *, any_case: bool = False) -> bytes | None:
    """The 32-byte digest spelled by 64 hex digits (lower case unless ``any_case``), or None."""
    if not isinstance(text, str):
        return None
    pattern = _HEX64_ANY_CASE if any_case else _HEX64
    return bytes.fromhex(text) if pattern.fullmatch(text) else None
