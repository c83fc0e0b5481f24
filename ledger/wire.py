"""Wire format of ``POST /add`` (pure; shared by the server and the client).

JSON (``Content-Type: application/json``): one statement object, or
``{"statements": [object, ...]}``. A statement object has exactly these keys::

    {"project": "sampleproject", "version": "4.0.0",
     "filename": "sampleproject-4.0.0-py3-none-any.whl",
     "sha256": "<64 lowercase hex>", "size": 4242,
     "signer": "<signed-note verifier key, Ed25519>",
     "signature": "<base64 of the 64-byte Ed25519 signature>"}

It may also carry ``"kind": "signature"`` (the default). An observation
(:class:`~sigledger.ledger.entry.SignedObservation`) is the same object plus
``"kind": "observation"``, ``"index_url": "<simple-API base URL>"`` and
``"observed_ms": <integer>``; ``signer`` is then the observer's key. One request
may mix both kinds.

msgpack (``Content-Type: application/msgpack``): a msgpack array of bin values,
each the canonical encoding of one signed statement or observation
(:func:`sigledger.ledger.entry.encode_signed`).

Every malformed or non-canonical request raises
:class:`~sigledger.ledger.errors.FormatError` naming the statement and field.

The answer (200) is ``{"receipts": [receipt, ...]}`` in request order; see
:class:`Receipt`. The answers of ``GET``/``POST /lookup`` (:class:`LookupAnswer`)
and ``GET /proof/consistency`` (:class:`ConsistencyAnswer`) are defined here
too: the server renders them with ``to_json`` and the client reads them with
``from_json``, which accepts exactly what ``to_json`` writes (base64 is
canonical, integers are integers, no key is missing or unknown) and raises
:class:`~sigledger.ledger.errors.FormatError` otherwise. Nothing here checks a
signature or a proof; that is the client's trust core.
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
    Signed,
    SignedObservation,
    SignedStatement,
    Statement,
    check_index_url,
    decode_signed,
    encode_signed,
    file_identity,
    is_project_name,
)
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import ALG_ED25519, Verifier, parse_note

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
_KEYS = frozenset({"project", "version", "filename", "sha256", "size", "signer", "signature"})
_OBSERVATION_KEYS = _KEYS | {"kind", "index_url", "observed_ms"}
KINDS = (SignedStatement.kind, SignedObservation.kind)


def statement_to_json(s: Signed) -> dict[str, Any]:
    """The JSON object of a signed statement or observation (see the module doc)."""
    st = s.statement
    doc: dict[str, Any] = {
        "project": st.project,
        "version": st.version,
        "filename": st.filename,
        "sha256": st.sha256.hex(),
        "size": st.size,
        "signer": s.signer_vkey(),
        "signature": base64.b64encode(s.signature).decode(),
    }
    if isinstance(s, SignedObservation):
        doc.update(kind=s.kind, index_url=s.index_url, observed_ms=s.observed_ms)
    return doc


def statement_from_json(obj: object, where: str = "statement") -> Signed:
    """Read :func:`statement_to_json` output of either kind (signature not checked)."""
    if not isinstance(obj, dict):
        raise FormatError(f"{where} must be a JSON object")
    kind = obj.get("kind", SignedStatement.kind)
    if kind not in KINDS:
        raise FormatError(f"{where}: kind must be one of {list(KINDS)}, not {str(kind)[:40]!r}")
    want = _OBSERVATION_KEYS if kind == SignedObservation.kind else _KEYS
    keys = set(obj) - ({"kind"} if kind == SignedStatement.kind else set())
    if keys != want:
        missing, extra = sorted(want - keys), sorted(keys - want)
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
    if kind == SignedStatement.kind:
        return SignedStatement(st, verifier.name, verifier.public_key, signature)
    try:
        index_url = check_index_url(obj["index_url"])
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    observed_ms = obj["observed_ms"]
    if type(observed_ms) is not int or not 0 <= observed_ms <= MAX_UINT63:
        raise FormatError(f"{where}: observed_ms must be an integer in [0, 2**63)")
    return SignedObservation(
        st, index_url, observed_ms, verifier.name, verifier.public_key, signature
    )


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a base64 string")
    return b64decode(value, what)


def encode_add_request(statements: Sequence[Signed], content_type: str = JSON_TYPE) -> bytes:
    if content_type == MSGPACK_TYPE:
        data = msgpack.packb([encode_signed(s) for s in statements], use_bin_type=True)
        assert isinstance(data, bytes)
        return data
    return json.dumps({"statements": [statement_to_json(s) for s in statements]}).encode()


def parse_add_request(body: bytes, content_type: str, max_statements: int) -> list[Signed]:
    """Decode and validate a /add body (signatures are checked separately)."""
    if content_type == MSGPACK_TYPE:
        items = _msgpack_items(body, max_statements)
        out = []
        for i, item in enumerate(items):
            try:
                out.append(decode_signed(item))
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


@dataclass(frozen=True, slots=True)
class CheckedAdd:
    """The verdict on a /add body: its statements, or why it is refused.

    ``error`` is the format error of a body that does not parse;
    ``bad_signatures`` the indexes of statements whose signature does not
    verify. ``statements`` is empty unless both are empty.
    """

    statements: tuple[Signed, ...] = ()
    error: str | None = None
    bad_signatures: tuple[int, ...] = ()


def check_add_request(body: bytes, content_type: str, max_statements: int) -> CheckedAdd:
    """Fully parse and signature-check a /add body, once.

    Picklable both ways, so a server can run it in a worker process and keep
    validation and Ed25519 off its event loop; the statements come back
    decoded (the body is never parsed a second time).
    """
    try:
        statements = parse_add_request(body, content_type, max_statements)
    except FormatError as exc:
        return CheckedAdd(error=str(exc))
    bad = tuple(i for i, s in enumerate(statements) if not s.verify())
    return CheckedAdd(bad_signatures=bad) if bad else CheckedAdd(tuple(statements))


# -- answers: receipts, lookups, consistency proofs ------------------------------------

RECEIPT_MEDIA_TYPE = "application/vnd.sigledger.receipt.v1+json"
HASH_SIZE = 32
_MAX_INDEX = 2**63 - 1
_RECEIPT_KEYS = frozenset({"status", "log_index", "entry", "inclusion_proof"})
_RECEIPT_FILE_KEYS = frozenset({"mediaType", "log"})
_PROOF_KEYS = frozenset({"log_index", "tree_size", "root_hash", "hashes", "checkpoint"})
_STATUSES = ("added", "existing")


def _b64text(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _object(
    value: object, keys: frozenset[str], what: str, optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{what} must be a JSON object")
    have = set(value)
    missing, extra = sorted(keys - have), sorted(have - keys - optional)
    if missing or extra:
        raise FormatError(f"{what}: missing keys {missing}, unknown keys {extra}")
    return value


def _uint(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INDEX:
        raise FormatError(f"{what} must be a non-negative integer")
    return value


def _hashes(value: object, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise FormatError(f"{what} must be a list of base64 hashes")
    out = tuple(_b64(h, f"{what}[{i}]") for i, h in enumerate(value))
    if any(len(h) != HASH_SIZE for h in out):
        raise FormatError(f"{what} must hold {HASH_SIZE}-byte hashes")
    return out


def _note_text(value: object, what: str) -> bytes:
    """A signed note carried as a JSON string; only its shape is checked here."""
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a signed note string")
    try:
        parse_note(value)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    return value.encode()


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where one submitted statement lives in the log: an item of the ``/add`` answer.

    JSON (keys in this order)::

        {"status": "added" | "existing", "log_index": 7,
         "entry": "<base64 entry bytes (the leaf)>",
         "inclusion_proof": {"log_index": 7, "tree_size": 9, "root_hash": "<base64>",
                             "hashes": ["<base64>", ...], "checkpoint": "<signed note>"}}

    ``root_hash`` and ``tree_size`` repeat what the checkpoint says (readers
    that do not parse notes use them; verifiers must check they agree).
    A receipt *file* (``<file>.sigledger.json``) is the same object with
    ``"mediaType": RECEIPT_MEDIA_TYPE`` and ``"log": {"url": ..., "origin": ...}``
    in front (:meth:`to_file_json`); :meth:`from_json` accepts both forms.
    """

    index: int
    entry: bytes
    existing: bool
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: bytes

    @property
    def status(self) -> str:
        return "existing" if self.existing else "added"

    @property
    def origin(self) -> str:
        """The checkpoint's origin line (its first line)."""
        return self.checkpoint.decode().split("\n", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "log_index": self.index,
            "entry": _b64text(self.entry),
            "inclusion_proof": {
                "log_index": self.index,
                "tree_size": self.tree_size,
                "root_hash": _b64text(self.root_hash),
                "hashes": [_b64text(h) for h in self.hashes],
                "checkpoint": self.checkpoint.decode(),
            },
        }

    def to_file_json(self, log_url: str) -> dict[str, Any]:
        """The receipt file form: the media type and the log first."""
        return {
            "mediaType": RECEIPT_MEDIA_TYPE,
            "log": {"url": log_url, "origin": self.origin},
            **self.to_json(),
        }

    @classmethod
    def from_json(cls, obj: object, where: str = "receipt") -> Receipt:
        doc = _object(obj, _RECEIPT_KEYS, where, _RECEIPT_FILE_KEYS)
        if "mediaType" in doc and doc["mediaType"] != RECEIPT_MEDIA_TYPE:
            raise FormatError(f"{where}: mediaType must be {RECEIPT_MEDIA_TYPE}")
        if "log" in doc:
            log = _object(doc["log"], frozenset({"url", "origin"}), f"{where}: log")
            if not all(isinstance(v, str) for v in log.values()):
                raise FormatError(f"{where}: log url and origin must be strings")
        status = doc["status"]
        if status not in _STATUSES:
            raise FormatError(f"{where}: status must be 'added' or 'existing'")
        index = _uint(doc["log_index"], f"{where}: log_index")
        entry = _b64(doc["entry"], f"{where}: entry")
        proof = _object(doc["inclusion_proof"], _PROOF_KEYS, f"{where}: inclusion_proof")
        if proof["log_index"] != index or type(proof["log_index"]) is not int:
            raise FormatError(f"{where}: inclusion_proof.log_index differs from log_index")
        size = _uint(proof["tree_size"], f"{where}: inclusion_proof.tree_size")
        if index >= size:
            raise FormatError(f"{where}: log_index {index} is not below tree_size {size}")
        root = _b64(proof["root_hash"], f"{where}: inclusion_proof.root_hash")
        if len(root) != HASH_SIZE:
            raise FormatError(f"{where}: inclusion_proof.root_hash must be {HASH_SIZE} bytes")
        hashes = _hashes(proof["hashes"], f"{where}: inclusion_proof.hashes")
        note = _note_text(proof["checkpoint"], f"{where}: inclusion_proof.checkpoint")
        return cls(index, entry, status == "existing", size, root, hashes, note)


def encode_add_answer(receipts: Sequence[Receipt]) -> dict[str, Any]:
    """The ``/add`` answer: ``{"receipts": [receipt, ...]}``, in request order."""
    return {"receipts": [r.to_json() for r in receipts]}


def parse_add_answer(body: bytes, count: int) -> list[Receipt]:
    """Read an ``/add`` answer that must hold ``count`` receipts."""
    doc = _json_body(body)
    receipts = _object(doc, frozenset({"receipts"}), "answer")["receipts"]
    if not isinstance(receipts, list) or len(receipts) != count:
        got = len(receipts) if isinstance(receipts, list) else "no list of"
        raise FormatError(f"the answer holds {got} receipts for {count} statements")
    return [Receipt.from_json(r, f"receipt {i}") for i, r in enumerate(receipts)]


def _json_body(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"body is not valid JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class LookupEntry:
    """One entry of a lookup answer, with its inclusion proof."""

    index: int
    entry: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "log_index": self.index,
            "entry": _b64text(self.entry),
            "inclusion_proof": [_b64text(h) for h in self.proof],
        }

    @classmethod
    def from_json(cls, obj: object, where: str) -> LookupEntry:
        doc = _object(obj, frozenset({"log_index", "entry", "inclusion_proof"}), where)
        return cls(
            _uint(doc["log_index"], f"{where}: log_index"),
            _b64(doc["entry"], f"{where}: entry"),
            _hashes(doc["inclusion_proof"], f"{where}: inclusion_proof"),
        )


_LOOKUP_ANSWER_KEYS = frozenset({"tree_size", "checkpoint", "entries", "next_cursor"})


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """The answer of ``GET /lookup`` and ``POST /lookup``.

    JSON (keys in this order)::

        {"tree_size": 9, "checkpoint": "<signed note>",
         "entries": [{"log_index": 7, "entry": "<base64>",
                      "inclusion_proof": ["<base64>", ...]}, ...],
         "next_cursor": 8 | null}

    Every proof is against the one checkpoint of the answer. ``next_cursor``
    (``GET`` only) is the ``cursor`` of the next page, larger than every
    index in this one; null on the last page. A log that observes on demand may
    answer a ``GET`` with ``202`` and ``Retry-After`` instead, while it observes a
    large release (:class:`sigledger.ledger.log.observer.Pending`): ask again then.
    """

    tree_size: int
    checkpoint: bytes
    entries: tuple[LookupEntry, ...]
    next_cursor: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "checkpoint": self.checkpoint.decode(),
            "entries": [e.to_json() for e in self.entries],
            "next_cursor": self.next_cursor,
        }

    @classmethod
    def from_json(cls, obj: object) -> LookupAnswer:
        doc = _object(obj, _LOOKUP_ANSWER_KEYS, "lookup answer")
        size = _uint(doc["tree_size"], "lookup answer: tree_size")
        note = _note_text(doc["checkpoint"], "lookup answer: checkpoint")
        raw = doc["entries"]
        if not isinstance(raw, list):
            raise FormatError("lookup answer: entries must be a list")
        entries = tuple(LookupEntry.from_json(e, f"lookup entry {i}") for i, e in enumerate(raw))
        cursor = doc["next_cursor"]
        if cursor is not None:
            cursor = _uint(cursor, "lookup answer: next_cursor")
            if any(e.index >= cursor for e in entries):
                raise FormatError("lookup answer: next_cursor does not follow its entries")
        return cls(size, note, entries, cursor)

    @classmethod
    def parse(cls, body: bytes) -> LookupAnswer:
        return cls.from_json(_json_body(body))


@dataclass(frozen=True, slots=True)
class ConsistencyAnswer:
    """The answer of ``GET /proof/consistency?old=M&new=N``.

    JSON: ``{"old_size": M, "new_size": N, "hashes": ["<base64>", ...]}``
    (RFC 9162 2.1.4 consistency proof from the M-tree to the N-tree).
    """

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "hashes": [_b64text(h) for h in self.hashes],
        }

    @classmethod
    def from_json(cls, obj: object) -> ConsistencyAnswer:
        doc = _object(obj, frozenset({"old_size", "new_size", "hashes"}), "consistency answer")
        old = _uint(doc["old_size"], "consistency answer: old_size")
        new = _uint(doc["new_size"], "consistency answer: new_size")
        return cls(old, new, _hashes(doc["hashes"], "consistency answer: hashes"))

    @classmethod
    def parse(cls, body: bytes, old: int, new: int) -> ConsistencyAnswer:
        """Read an answer that must be for exactly the sizes asked for."""
        answer = cls.from_json(_json_body(body))
        if (answer.old_size, answer.new_size) != (old, new):
            raise FormatError(
                f"consistency answer is for sizes {answer.old_size} -> {answer.new_size}, "
                f"not {old} -> {new}"
            )
        return answer
