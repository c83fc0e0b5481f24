from __future__ import annotations

import base64
import json
import pickle
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigledger.client.remote import LogClient
from sigledger.ledger.checkpoint import Checkpoint, sign_checkpoint
from sigledger.ledger.errors import (
    BindingConflictError,
    CheckpointConflictError,
    FormatError,
    MalformedRequestError,
    NetworkError,
    NotFoundError,
    NotWitnessedError,
    OverloadedError,
    RefusedError,
    RequestError,
    ServiceFaultError,
    UnavailableError,
    request_error_class,
)
from sigledger.ledger.note import Signer
from sigledger.ledger.service.http import (
    ErrorRenderer,
    error_response,
    http_status,
    json_error,
    text_error,
)
from sigledger.ledger.wire import (
    JSON_TYPE,
    MSGPACK_TYPE,
    CheckedAdd,
    ConsistencyAnswer,
    LookupAnswer,
    LookupEntry,
    Receipt,
    check_add_request,
    encode_add_answer,
    encode_add_request,
    parse_add_answer,
    parse_add_request,
    statement_from_json,
    statement_to_json,
)
from sigledger.ledger.witness.app import _render_error as witness_errors
from tests.helpers import observed, signed

ALICE = Signer.from_seed("alice", bytes([7]) * 32)
OBSERVER = Signer.from_seed("log.example/observer", bytes([8]) * 32)
GOOD = [signed(ALICE, version=f"{i}.0") for i in range(3)]
SEEN = [observed(OBSERVER, version=f"{i}.0") for i in range(2)]


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


@pytest.mark.parametrize("ctype", [JSON_TYPE, MSGPACK_TYPE])
def test_observations_travel_with_statements(ctype: str) -> None:
    mixed = [GOOD[0], SEEN[0], GOOD[1], SEEN[1]]
    body = encode_add_request(mixed, ctype)
    assert parse_add_request(body, ctype, 10) == mixed
    checked = check_add_request(body, ctype, 10)
    assert checked.statements == tuple(mixed) and not checked.bad_signatures
    forged = replace(SEEN[1], index_url="https://elsewhere.example/simple/")
    checked = check_add_request(encode_add_request([GOOD[0], forged], ctype), ctype, 10)
    assert checked.bad_signatures == (1,)


def test_observation_json_form() -> None:
    obj = statement_to_json(SEEN[0])
    assert obj["kind"] == "observation"
    assert obj["index_url"] == SEEN[0].index_url
    assert obj["observed_ms"] == SEEN[0].observed_ms
    assert set(obj) - set(statement_to_json(GOOD[0])) == {"kind", "index_url", "observed_ms"}
    assert statement_from_json(obj) == SEEN[0]
    # A statement may name its kind; it is the default.
    assert statement_from_json({**statement_to_json(GOOD[0]), "kind": "signature"}) == GOOD[0]
    for change, complaint in [
        ({"kind": "vote"}, "kind"),
        ({"kind": ["observation"]}, "kind"),
        ({"kind": "signature"}, "unknown keys"),
        ({"index_url": "ftp://x/simple/"}, "index URL"),
        ({"index_url": 7}, "index URL"),
        ({"observed_ms": -1}, "observed_ms"),
        ({"observed_ms": 1.5}, "observed_ms"),
    ]:
        with pytest.raises(FormatError, match=complaint):
            statement_from_json({**obj, **change})
    for key in ("index_url", "observed_ms"):
        with pytest.raises(FormatError, match="missing keys"):
            statement_from_json({k: v for k, v in obj.items() if k != key})


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


JSON_VALUES = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=5),
    lambda c: hs.lists(c, max_size=3) | hs.dictionaries(hs.text(max_size=8), c, max_size=8),
    max_leaves=20,
)


@settings(max_examples=200)
@given(JSON_VALUES)
def test_json_shapes_only_raise_format_error(doc: object) -> None:
    try:
        parse_add_request(json.dumps(doc).encode(), JSON_TYPE, 5)
    except FormatError:
        pass


# -- answers: receipts, lookups, consistency proofs ---------------------------------

_LOG = Signer.from_seed("log.example/test", bytes([9]) * 32)
_ROOT = bytes(range(32))
_NOTE = sign_checkpoint(Checkpoint("log.example/test", 5, _ROOT), _LOG)
_RECEIPT = Receipt(3, b"entry bytes", False, 5, _ROOT, (b"\x01" * 32, b"\x02" * 32), _NOTE)


def test_receipt_json_shape_is_fixed() -> None:
    """The bytes of an /add answer are part of the protocol: key order and encodings."""
    b64 = base64.b64encode
    expected = {
        "status": "added",
        "log_index": 3,
        "entry": b64(b"entry bytes").decode(),
        "inclusion_proof": {
            "log_index": 3,
            "tree_size": 5,
            "root_hash": b64(_ROOT).decode(),
            "hashes": [b64(b"\x01" * 32).decode(), b64(b"\x02" * 32).decode()],
            "checkpoint": _NOTE.decode(),
        },
    }
    assert json.dumps(_RECEIPT.to_json()) == json.dumps(expected)
    assert json.dumps(encode_add_answer([_RECEIPT])) == json.dumps({"receipts": [expected]})
    stored = _RECEIPT.to_file_json("https://log.example")
    assert list(stored)[:2] == ["mediaType", "log"]
    assert stored["log"] == {"url": "https://log.example", "origin": "log.example/test"}


def test_receipt_round_trips_in_both_forms() -> None:
    assert Receipt.from_json(_RECEIPT.to_json()) == _RECEIPT
    assert Receipt.from_json(_RECEIPT.to_file_json("https://x")) == _RECEIPT
    existing = replace(_RECEIPT, existing=True)
    assert Receipt.from_json(json.loads(json.dumps(existing.to_json()))).status == "existing"
    body = json.dumps(encode_add_answer([_RECEIPT, existing])).encode()
    assert parse_add_answer(body, 2) == [_RECEIPT, existing]
    with pytest.raises(FormatError, match="1 receipts for 2"):
        parse_add_answer(json.dumps(encode_add_answer([_RECEIPT])).encode(), 2)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d.pop("status"), "missing keys"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.update(status="maybe"), "status"),
        (lambda d: d.update(log_index=True), "log_index"),
        (lambda d: d.update(log_index=4), "differs"),
        (lambda d: d.update(entry=d["entry"].rstrip("=")), "entry"),
        (lambda d: d.update(mediaType="text/plain"), "mediaType"),
        (lambda d: d.update(log={"url": 1, "origin": "o"}), "log"),
        (lambda d: d["inclusion_proof"].update(tree_size=3), "not below tree_size"),
        (lambda d: d["inclusion_proof"].update(root_hash="AAAA"), "root_hash"),
        (lambda d: d["inclusion_proof"]["hashes"].append("AAAA"), "32-byte"),
        (lambda d: d["inclusion_proof"].update(checkpoint="no note"), "checkpoint"),
    ],
)
def test_receipt_parser_is_strict(change: Any, complaint: str) -> None:
    doc = json.loads(json.dumps(_RECEIPT.to_json()))
    change(doc)
    with pytest.raises(FormatError, match=complaint):
        Receipt.from_json(doc)


def test_lookup_answer_shape_and_round_trip() -> None:
    entry = LookupEntry(3, b"entry bytes", (b"\x01" * 32,))
    answer = LookupAnswer(5, _NOTE, (entry,), 4)
    doc = answer.to_json()
    assert list(doc) == ["tree_size", "checkpoint", "entries", "next_cursor"]
    assert doc["entries"] == [
        {
            "log_index": 3,
            "entry": base64.b64encode(b"entry bytes").decode(),
            "inclusion_proof": [base64.b64encode(b"\x01" * 32).decode()],
        }
    ]
    assert LookupAnswer.parse(json.dumps(doc).encode()) == answer
    last = replace(answer, next_cursor=None)
    assert LookupAnswer.parse(json.dumps(last.to_json()).encode()) == last
    with pytest.raises(FormatError, match="next_cursor"):
        LookupAnswer.from_json({**doc, "next_cursor": 3})
    with pytest.raises(FormatError, match="lookup entry 0"):
        LookupAnswer.from_json({**doc, "entries": [{"log_index": 3}]})


def test_consistency_answer_shape_and_sizes() -> None:
    answer = ConsistencyAnswer(2, 5, (b"\x03" * 32,))
    body = json.dumps(answer.to_json()).encode()
    assert (
        body
        == json.dumps(
            {"old_size": 2, "new_size": 5, "hashes": [base64.b64encode(b"\x03" * 32).decode()]}
        ).encode()
    )
    assert ConsistencyAnswer.parse(body, 2, 5) == answer
    with pytest.raises(FormatError, match="not 2 -> 6"):
        ConsistencyAnswer.parse(body, 2, 6)


def _paths(doc: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path in a JSON object (the places a fuzzer may change)."""
    if not isinstance(doc, dict):
        return []
    return [p for k, v in doc.items() for p in [(*prefix, k), *_paths(v, (*prefix, k))]]


def _replaced(doc: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(doc))
    where = out
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return out


_VALID_ANSWERS: list[tuple[dict[str, Any], Any]] = [
    (_RECEIPT.to_file_json("https://x"), Receipt.from_json),
    (
        LookupAnswer(5, _NOTE, (LookupEntry(3, b"e", (b"\x01" * 32,)),), 4).to_json(),
        LookupAnswer.from_json,
    ),
    (ConsistencyAnswer(2, 5, (b"\x03" * 32,)).to_json(), ConsistencyAnswer.from_json),
]


@settings(max_examples=300)
@given(hs.data(), JSON_VALUES)
def test_answer_parsers_are_strict_on_every_field(data: hs.DataObject, value: object) -> None:
    """Any one field of a valid answer replaced by any JSON value: a FormatError, or
    an answer that writes back exactly that JSON (a parser accepts only what it writes)."""
    doc, parse = data.draw(hs.sampled_from(_VALID_ANSWERS))
    changed = _replaced(doc, data.draw(hs.sampled_from(_paths(doc))), value)
    try:
        parsed = parse(changed)
    except FormatError:
        return
    if isinstance(parsed, Receipt):
        again = parsed.to_file_json(changed["log"]["url"])
        assert again["log"]["origin"] == parsed.origin
        again["log"] = changed["log"]  # the origin there is informational
    else:
        again = parsed.to_json()
    assert again == changed


# -- domain errors: one status table, the same class on both sides ------------------


def _all_request_errors() -> list[type[RequestError]]:
    out, todo = [], [RequestError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _example(cls: type[RequestError]) -> RequestError:
    if issubclass(cls, BindingConflictError):
        return cls("taken", [(4, b"entry")])
    if issubclass(cls, CheckpointConflictError):
        return cls("moved on", 7)
    return cls("no", {"limit": "client"}, retry_after=3)


@pytest.mark.parametrize("cls", _all_request_errors(), ids=lambda c: c.__name__)
def test_every_domain_error_has_one_status_and_comes_back_as_itself(
    cls: type[RequestError],
) -> None:
    exc = _example(cls)
    status = http_status(exc)
    assert 400 <= status < 600
    assert (status >= 500 or status == 429) == isinstance(exc, UnavailableError | ServiceFaultError)
    # the class that names the code (a subclass without its own code travels as it)
    owner = next(c for c in cls.__mro__ if "code" in c.__dict__)
    assert request_error_class(exc.code) is owner
    resp = error_response(exc)
    assert resp.status == status
    assert resp.body is not None
    assert isinstance(resp.body, bytes)
    doc = json.loads(resp.body)
    assert (doc["error"], doc["message"]) == (
        exc.code,
        "no" if doc["message"] == "no" else str(exc),
    )
    assert ("Retry-After" in resp.headers) == isinstance(exc, UnavailableError)
    # the client reads the same answer back into the same class, details included
    back = LogClient("http://127.0.0.1:1")._error(status, resp.body, "testing")
    assert type(back) is owner and isinstance(back, RequestError)
    assert back.code == exc.code and back.details == exc.details
    if isinstance(exc, BindingConflictError):
        assert isinstance(back, BindingConflictError) and back.existing == [(4, b"entry")]


def test_client_keeps_unknown_codes_and_maps_bare_statuses() -> None:
    client = LogClient("http://127.0.0.1:1")
    odd = client._error(405, b'{"error": "method_not_allowed", "message": "no"}', "x")
    assert type(odd) is RefusedError and odd.code == "method_not_allowed"
    bare = client._error(404, b"<html>not here</html>", "x")
    assert type(bare) is NotFoundError and bare.code == "404"
    down = client._error(502, b"bad gateway", "fetching")
    assert type(down) is NetworkError and "HTTP 502" in str(down)
    late = client._error(503, b'{"error": "not_witnessed", "message": "wait"}', "x")
    assert isinstance(late, NotWitnessedError) and isinstance(late, NetworkError)
    assert "waiting for witness cosignatures" in str(late)


@pytest.mark.parametrize(
    "render", [json_error, text_error, witness_errors], ids=["json", "text", "witness"]
)
def test_error_renderers_keep_status_code_and_retry_after(render: ErrorRenderer) -> None:
    """The contract every service's error spelling meets."""
    for exc in (MalformedRequestError("bad body"), OverloadedError("busy", retry_after=4)):
        resp = error_response(exc, render)
        assert resp.status == http_status(exc)
        assert isinstance(resp.body, bytes)
        assert exc.code.encode() in resp.body and str(exc).encode() in resp.body
        assert resp.headers.get("Retry-After") == ("4" if exc.retry_after == 4 else None)
    plain = render(405, "method_not_allowed", "use POST", None)
    assert plain.status == 405 and "Retry-After" not in plain.headers


def test_check_add_request_decodes_once_and_its_verdict_travels_to_a_worker() -> None:
    for ctype in (JSON_TYPE, MSGPACK_TYPE):
        checked = check_add_request(encode_add_request(GOOD, ctype), ctype, 10)
        assert checked == CheckedAdd(tuple(GOOD))
        # what a worker process sends back is the same verdict
        assert pickle.loads(pickle.dumps(checked)) == checked
    assert check_add_request(b"{", JSON_TYPE, 10).error is not None
    forged = replace(GOOD[1], signature=bytes(64))
    bad = check_add_request(encode_add_request([GOOD[0], forged], JSON_TYPE), JSON_TYPE, 10)
    assert bad == CheckedAdd(bad_signatures=(1,))


def test_witness_spells_a_conflict_as_the_size_body() -> None:
    resp = error_response(CheckpointConflictError("moved on", 42), witness_errors)
    assert (resp.status, resp.body) == (409, b"42\n")
    assert resp.headers["Content-Type"] == "text/x.tlog.size"
