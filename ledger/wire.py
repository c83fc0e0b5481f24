"""Wire format of ``POST /add`` (pure; shared by the server and the client).

JSON (``Content-Type: application/json``): one statement object, or
``{"statements": [object, ...]}``. A statement object has exactly these keys::

    {"project": "sampleproject", "version": "4.0.0",
     "filename": "sampleproject-4.0.0-py3-none-any.whl",
     "sha256": "<64 lowercase hex>", "size": 4242,
     "signer": "<signed-note verifier key, Ed25519>",
     "signature": "<base64 of the 64-byte Ed25519 signature>"}

msgpack (``Content-Type: application/msgpack``): a msgpack array of bin values,
each the canonical encoding of one signed statement
(:func:`sigledger.ledger.entry.encode_signed_statement`).

Every malformed or non-canonical request raises
:class:`~sigledger.ledger.errors.FormatError` naming the statement and field.

The answer (200) is ``{"receipts": [receipt, ...]}`` in request order; see
:meth:`sigledger.ledger.log.sequencer.Receipt.to_json`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sigledger.ledger.encoding import MAX_UINT63, b64decode, sha256_from_hex
from sigledger.ledger.entry import (
    SignedStatement,
    Statement,
    decode_signed_statement,
    encode_signed_statement,
    file_identity,
    is_project_name,
)
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import ALG_ED25519, Verifier

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
_KEYS = frozenset({"project", "version", "filename", "sha256", "size", "signer", "signature"})


def statement_to_json(s: SignedStatement) -> dict[str, Any]:
    st = s.statement
    return {
        "project": st.project,
        "version": st.version,
        "filename": st.filename,
        "sha256": st.sha256.hex(),
        "size": st.size,
        "signer": s.signer_vkey(),
        "signature": base64.b64encode(s.signature).decode(),
    }


def statement_from_json(obj: object, where: str = "statement") -> SignedStatement:
    if not isinstance(obj, dict):
        raise FormatError(f"{where} must be a JSON object")
    keys = set(obj)
    if keys != _KEYS:
        missing, extra = sorted(_KEYS - keys), sorted(keys - _KEYS)
        raise FormatError(f"{where}: missing keys {missing}, unknown keys {extra}")
    sha = obj["sha256"]
    digest = sha256_from_hex(sha)
    if digest is None:
        raise FormatError(f"{where}: sha256 must be 64 lowercase hex digits")
    size = obj["size"]
    if type(size) is not int:
        raise FormatError(f"{where}: size must be an integer")
    signer = obj["signer"]
    if not isinstance(signer, str):
        raise FormatError(f"{where}: signer must be a verifier key string")
    try:
        verifier = Verifier.from_vkey(signer)
    except FormatError as exc:
        raise FormatError(f"{where}: signer: {exc}") from None
    if verifier.alg != ALG_ED25519:
        raise FormatError(f"{where}: signer must be an Ed25519 (type 0x01) verifier key")
    sig = obj["signature"]
    signature = _b64(sig, f"{where}: signature")
    if len(signature) != 64:
        raise FormatError(f"{where}: signature must be 64 bytes")
    for name in ("project", "version", "filename"):
        if not isinstance(obj[name], str):
            raise FormatError(f"{where}: {name} must be a string")
    st = Statement(obj["project"], obj["version"], obj["filename"], digest, size)
    try:
        st.validate()
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    return SignedStatement(st, verifier.name, verifier.public_key, signature)


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a base64 string")
    return b64decode(value, what)


def encode_add_request(
    statements: Sequence[SignedStatement], content_type: str = JSON_TYPE
) -> bytes:
    if content_type == MSGPACK_TYPE:
        data = msgpack.packb([encode_signed_statement(s) for s in statements], use_bin_type=True)
        assert isinstance(data, bytes)
        return data
    return json.dumps({"statements": [statement_to_json(s) for s in statements]}).encode()


def parse_add_request(body: bytes, content_type: str, max_statements: int) -> list[SignedStatement]:
    """Decode and validate a /add body (signatures are checked separately)."""
    if content_type == MSGPACK_TYPE:
        items = _msgpack_items(body, max_statements)
        out = []
        for i, item in enumerate(items):
            try:
                out.append(decode_signed_statement(item))
            except FormatError as exc:
                raise FormatError(f"statement {i}: {exc}") from None
        return out
    if content_type not in (JSON_TYPE, "", "application/octet-stream", "text/plain"):
        raise FormatError(
            f"unsupported Content-Type {content_type!r}; use {JSON_TYPE} or {MSGPACK_TYPE}"
        )
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"body is not valid JSON: {exc}") from None
    if isinstance(doc, dict) and "statements" in doc:
        if set(doc) != {"statements"} or not isinstance(doc["statements"], list):
            raise FormatError('body must be {"statements": [...]} or one statement object')
        objs = doc["statements"]
    else:
        objs = [doc]
    _check_count(len(objs), max_statements)
    return [statement_from_json(o, f"statement {i}") for i, o in enumerate(objs)]


def _check_count(n: int, max_statements: int) -> None:
    if n == 0:
        raise FormatError("the request holds no statements")
    if n > max_statements:
        raise FormatError(f"at most {max_statements} statements per request, not {n}")


def _msgpack_items(body: bytes, max_statements: int) -> list[bytes]:
    try:
        items = msgpack.unpackb(
            body,
            raw=False,
            max_array_len=max_statements,
            max_map_len=0,
            max_ext_len=0,
            max_str_len=0,
        )
    except ValueError as exc:
        if "exceeds max_array_len" in str(exc):
            raise FormatError(f"at most {max_statements} statements per request") from None
        raise FormatError(f"body is not valid msgpack: {exc.__class__.__name__}") from None
    except Exception as exc:
        raise FormatError(f"body is not valid msgpack: {exc.__class__.__name__}") from None
    if not isinstance(items, list) or not all(isinstance(x, bytes) for x in items):
        raise FormatError("msgpack body must be an array of bin (encoded signed statements)")
    _check_count(len(items), max_statements)
    again = msgpack.packb(items, use_bin_type=True)
    if again != body:
        raise FormatError("msgpack body is not canonically encoded")
    return items


# -- GET /lookup and GET /proof/consistency ------------------------------------------

LOOKUP_DEFAULT_LIMIT = 100
LOOKUP_MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class LookupQuery:
    """``GET /lookup`` parameters.

    By hash: ``?sha256=<64 lowercase hex>``; by release: ``?project=NAME``
    with optional ``&version=V`` and ``&filename=F`` (project names are
    canonicalized, versions normalized; a filename matches every spelling of
    the same file, by :func:`sigledger.ledger.entry.file_identity`, whatever version
    spelling its entries use). Also ``&limit=1..1000`` (default 100)
    and ``&cursor=INDEX`` to continue from a previous answer's ``next_cursor``.
    """

    sha256: bytes | None = None
    project: str | None = None
    version: str | None = None
    filename: str | None = None
    limit: int = LOOKUP_DEFAULT_LIMIT
    cursor: int = 0

    @property
    def identity(self) -> str | None:
        """The file identity key of ``filename`` (validated by the parser)."""
        return None if self.filename is None else file_identity(self.filename).key


_LOOKUP_KEYS = frozenset({"sha256", "project", "version", "filename", "limit", "cursor"})


def _uint_param(value: str, name: str, low: int, high: int) -> int:
    if not value.isascii() or not value.isdigit() or (len(value) > 1 and value[0] == "0"):
        raise FormatError(f"{name} must be a decimal integer without leading zeros")
    n = int(value)
    if not low <= n <= high:
        raise FormatError(f"{name} must be between {low} and {high}")
    return n


def parse_lookup_query(params: Mapping[str, str]) -> LookupQuery:
    unknown = sorted(set(params) - _LOOKUP_KEYS)
    if unknown:
        raise FormatError(
            f"unknown parameter(s) {unknown}; use sha256, or project with "
            "optional version and filename, plus limit and cursor"
        )
    sha = params.get("sha256")
    project = params.get("project")
    if (sha is None) == (project is None):
        raise FormatError("give exactly one of sha256 or project")
    digest = None
    if sha is not None:
        if sha.startswith("sha256:"):
            sha = sha[len("sha256:") :]
        digest = sha256_from_hex(sha)
        if digest is None:
            raise FormatError("sha256 must be 64 lowercase hex digits")
        if "version" in params or "filename" in params:
            raise FormatError("version and filename go with project, not sha256")
    version = params.get("version")
    filename = params.get("filename")
    if project is not None:
        if not is_project_name(project):
            raise FormatError(f"project {project[:50]!r} is not a valid project name")
        project = str(canonicalize_name(project))
        if version is not None:
            try:
                version = str(Version(version))
            except InvalidVersion:
                raise FormatError(f"version {version[:50]!r} is not a PEP 440 version") from None
        if filename is not None:
            if not filename or len(filename) > 255:
                raise FormatError("filename must be 1 to 255 characters")
            identity = file_identity(filename)
            if identity.project != project:
                raise FormatError(f"filename {filename[:100]!r} is not a file of {project}")
            version = None  # the identity holds the version, in any spelling
    limit = _uint_param(
        params.get("limit", str(LOOKUP_DEFAULT_LIMIT)), "limit", 1, LOOKUP_MAX_LIMIT
    )
    cursor = _uint_param(params.get("cursor", "0"), "cursor", 0, MAX_UINT63)
    return LookupQuery(digest, project, version, filename, limit, cursor)


def parse_consistency_query(params: Mapping[str, str]) -> tuple[int, int]:
    """``GET /proof/consistency?old=M&new=N`` with 0 <= M <= N."""
    if set(params) != {"old", "new"}:
        raise FormatError("give exactly the parameters old and new")
    old = _uint_param(params["old"], "old", 0, MAX_UINT63)
    new = _uint_param(params["new"], "new", 0, MAX_UINT63)
    if old > new:
        raise FormatError("old must not be larger than new")
    return old, new


BATCH_MAX_HASHES = 1000
BATCH_MAX_ENTRIES = 10000


def parse_batch_lookup(body: bytes) -> tuple[list[bytes], bool]:
    """``POST /lookup`` body: ``{"sha256": ["<hex>", ...], "related": bool}``.

    Up to 1000 digests. With ``related`` the answer also holds every entry for
    the same (project, version, filename) as a matching entry, so a client can
    see in the same round trip whether anyone logged a different hash for it.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"sha256", "related"} or "sha256" not in doc:
        raise FormatError('body must be {"sha256": [...], "related": true|false}')
    hexes, related = doc["sha256"], doc.get("related", False)
    if not isinstance(hexes, list) or not 0 < len(hexes) <= BATCH_MAX_HASHES:
        raise FormatError(f"sha256 must be a list of 1 to {BATCH_MAX_HASHES} digests")
    if not isinstance(related, bool):
        raise FormatError("related must be true or false")
    out = []
    for h in hexes:
        digest = sha256_from_hex(h)
        if digest is None:
            raise FormatError("every sha256 must be 64 lowercase hex digits")
        out.append(digest)
    return out, related


# -- checking /add bodies in another process ------------------------------------------


def check_add_request(
    body: bytes, content_type: str, max_statements: int
) -> tuple[str | None, list[int]]:
    """Fully parse and signature-check a /add body; return (format error, bad indexes).

    Meant to run in a worker process (it is picklable and returns only small
    verdicts), so the server's event loop does not spend its time on
    validation and Ed25519.
    """
    try:
        statements = parse_add_request(body, content_type, max_statements)
    except FormatError as exc:
        return str(exc), []
    return None, [i for i, s in enumerate(statements) if not s.verify()]


def decode_checked_add_request(body: bytes, content_type: str) -> list[SignedStatement]:
    """Rebuild the statements of a body that :func:`check_add_request` accepted.

    Skips the validation already done on these exact bytes; never use it on a
    body that was not checked.
    """
    if content_type == MSGPACK_TYPE:
        out = []
        for item in msgpack.unpackb(body, raw=False):
            f = msgpack.unpackb(item, raw=False)
            out.append(SignedStatement(Statement(f[1], f[2], f[3], f[4], f[5]), f[6], f[7], f[8]))
        return out
    doc = json.loads(body)
    objs = doc["statements"] if isinstance(doc, dict) and "statements" in doc else [doc]
    out = []
    for o in objs:
        v = Verifier.from_vkey(o["signer"])
        st = Statement(
            o["project"], o["version"], o["filename"], bytes.fromhex(o["sha256"]), o["size"]
        )
        out.append(SignedStatement(st, v.name, v.public_key, base64.b64decode(o["signature"])))
    return out
