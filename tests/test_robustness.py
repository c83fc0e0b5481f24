"""No request, however malformed, gets a 5xx: real log and witness processes,
raw HTTP over sockets (so bodies can be broken in ways no HTTP client sends)."""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigledger.ledger.checkpoint import Checkpoint, sign_checkpoint
from sigledger.ledger.merkle import EMPTY_ROOT
from sigledger.ledger.note import Signer
from sigledger.ledger.wire import JSON_TYPE, MSGPACK_TYPE, encode_add_request
from sigledger.ledger.witnessproto import AddCheckpointRequest, format_add_checkpoint
from tests.helpers import LogProcess, WitnessProcess, signed

ALICE = Signer.from_seed("alice", bytes([7]) * 32)
LOG_SIGNER = Signer.from_seed("localhost/sigledger", bytes([8]) * 32)


def raw_request(
    url: str, data: bytes, *, half_close: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is; return (status, headers, body) of the first response.

    ``half_close`` ends the client's side after sending, as a client that stopped
    mid-body would. Status 0: the server closed without answering.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
            head, sep, rest = out.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    break
    if not out:
        return 0, {}, b""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def http(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _checkpoint_request() -> bytes:
    note = sign_checkpoint(Checkpoint("localhost/sigledger", 0, EMPTY_ROOT), LOG_SIGNER)
    return format_add_checkpoint(AddCheckpointRequest(0, (), note))


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LogProcess, WitnessProcess]]:
    tmp = tmp_path_factory.mktemp("robust")
    log = LogProcess(
        tmp / "log",
        env={
            "SIGLEDGER_CLIENT_RATE": "0",
            "SIGLEDGER_SIGNER_RATE": "0",
            "SIGLEDGER_REQUEST_TIMEOUT": "1",
        },
    ).start()
    witness = WitnessProcess(
        tmp / "w",
        "--name",
        "w.example",
        "--log",
        LOG_SIGNER.vkey,
        env={"SIGLEDGER_WITNESS_REQUEST_TIMEOUT": "1"},
    ).start()
    try:
        yield log, witness
    finally:
        log.kill()
        witness.kill()


def _add_body(n: int = 1) -> bytes:
    return encode_add_request([signed(ALICE, version=f"{i}.0") for i in range(n)], JSON_TYPE)


def _broken_bodies(valid: bytes) -> list[tuple[str, dict[str, str], bytes, bool]]:
    """(name, headers, raw body, half-close) of bodies that cannot be read as announced.

    A client that half-closes cannot be answered (the server sees the connection
    end); one that stalls gets 408 after the server's request_timeout.
    """
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(valid), valid)
    return [
        ("bad gzip", {"Content-Encoding": "gzip", "Content-Length": "10"}, b"0123456789", False),
        ("bad deflate", {"Content-Encoding": "deflate", "Content-Length": "10"}, b"x" * 10, False),
        (
            "truncated gzip",
            {"Content-Encoding": "gzip", "Content-Length": str(len(gzip.compress(valid)) // 2)},
            gzip.compress(valid)[: len(gzip.compress(valid)) // 2],
            False,
        ),
        ("truncated chunked", {"Transfer-Encoding": "chunked"}, chunked[: len(chunked) // 2], True),
        ("stalled chunked", {"Transfer-Encoding": "chunked"}, chunked[: len(chunked) // 2], False),
        ("stalled body", {"Content-Length": str(len(valid) + 50)}, valid, False),
        ("bad chunk", {"Transfer-Encoding": "chunked"}, b"5\r\nabcdeXX\r\n0\r\n\r\n", False),
        ("shorter than announced", {"Content-Length": str(len(valid) + 50)}, valid, True),
    ]


def test_undecodable_bodies_get_400_from_the_log(
    servers: tuple[LogProcess, WitnessProcess],
) -> None:
    log, _ = servers
    valid = _add_body()
    for path in ("/add", "/lookup"):
        for name, headers, body, half in _broken_bodies(valid):
            status, h, answer = raw_request(
                log.url,
                http("POST", path, {"Content-Type": JSON_TYPE, **headers}, body),
                half_close=half,
            )
            if half:
                assert status == 0, (path, name, status, answer)
                continue
            want = (408, "request_timeout") if name.startswith("stalled") else (400, "malformed")
            assert status == want[0], (path, name, status, answer)
            if name == "bad chunk" and h["content-type"].startswith("text/plain"):
                # Framing the HTTP parser rejects before the request reaches the app
                # is answered by aiohttp itself, in plain text.
                continue
            assert h["connection"] == "close", (path, name)
            assert h["content-type"].startswith("application/json"), (path, name)
            doc = json.loads(answer)
            # (a truncated gzip stream inflates to a truncated body: the parser refuses it)
            keys = {want[1], "bad_query"} if name == "truncated gzip" else {want[1]}
            assert doc["error"] in keys and doc["message"], (path, name, doc)
    # a well-formed compressed body is fine
    for encoding, packed in (("gzip", gzip.compress(valid)), ("deflate", zlib.compress(valid))):
        status, _, answer = raw_request(
            log.url,
            http(
                "POST",
                "/add",
                {
                    "Content-Type": JSON_TYPE,
                    "Content-Encoding": encoding,
                    "Content-Length": str(len(packed)),
                },
                packed,
            ),
        )
        assert status == 200, answer
        assert json.loads(answer)["receipts"][0]["status"] in ("added", "existing")
    stdout = (log.data.parent / f"{log.data.name}.stdout.log").read_text()
    assert "Error handling request" not in stdout
    assert "Traceback" not in stdout
    # the clients that went away mid-body are counted as their fault, not the log's
    metrics = raw_request(log.url, http("GET", "/metrics", {}))[2].decode()
    assert 'sigledger_http_requests_total{code="500"' not in metrics


def test_undecodable_bodies_get_400_from_the_witness(
    servers: tuple[LogProcess, WitnessProcess],
) -> None:
    _, witness = servers
    for name, headers, body, half in _broken_bodies(_checkpoint_request()):
        status, h, answer = raw_request(
            witness.url, http("POST", "/add-checkpoint", headers, body), half_close=half
        )
        if half:
            assert status == 0, (name, status, answer)
            continue
        want = (408, b"request_timeout: ") if name.startswith("stalled") else (400, b"malformed: ")
        assert status == want[0], (name, status, answer)
        assert h["content-type"].startswith("text/plain"), name
        assert answer.startswith(want[1]) or name == "bad chunk", (name, answer)
    stdout = (witness.data.parent / f"{witness.data.name}.stdout.log").read_text()
    assert "Traceback" not in stdout


# -- property: random and mutated requests against every route --------------------

LOG_ROUTES = [
    "/checkpoint",
    "/tile/0/000",
    "/tile/0/000.p/1",
    "/tile/entries/000.p/1",
    "/tile/1/x001/000",
    "/add",
    "/lookup",
    "/lookup?sha256=" + "ab" * 32,
    "/lookup?project=sampleproject&version=1.0",
    "/proof/consistency?old=0&new=1",
    "/healthz",
    "/metrics",
    "/",
    "/entries?after=5",
    "/search?q=sample",
    "/project/sampleproject",
    "/entry/0",
    "/signer/" + ALICE.vkey,
]
WITNESS_ROUTES = ["/add-checkpoint", "/healthz", "/metrics", "/" + "ab" * 32 + "/checkpoint"]

_mutation = st.one_of(
    st.just(""),
    st.sampled_from(["%00", "%ff", "/..", "/../../etc/passwd", "?", "?&&=", "#x", ";", "%", "//"]),
    st.text(alphabet="abc019/.?&=%-_~+", max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


def _mutate_bytes(data: bytes, rnd: st.DataObject) -> bytes:
    how = rnd.draw(st.sampled_from(["same", "flip", "cut", "extend", "random"]))
    if how == "flip" and data:
        i = rnd.draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ rnd.draw(st.integers(1, 255))]) + data[i + 1 :]
    if how == "cut":
        return data[: rnd.draw(st.integers(0, len(data)))]
    if how == "extend":
        return data + rnd.draw(st.binary(max_size=64))
    if how == "random":
        return rnd.draw(st.binary(max_size=256))
    return data


def _fuzz_request(
    rnd: st.DataObject, routes: list[str], valid_bodies: list[bytes]
) -> tuple[bytes, bool]:
    method = rnd.draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]))
    path = rnd.draw(st.sampled_from(routes)) + rnd.draw(_mutation)
    if not path.startswith("/"):
        path = "/" + path
    body = _mutate_bytes(rnd.draw(st.sampled_from(valid_bodies)), rnd)
    headers: dict[str, str] = {}
    ctype = rnd.draw(st.sampled_from([JSON_TYPE, MSGPACK_TYPE, "text/plain", "", "a/b; charset=x"]))
    if ctype:
        headers["Content-Type"] = ctype
    encoding = rnd.draw(st.sampled_from(["", "gzip", "deflate", "br", "identity", "x-nope"]))
    if encoding:
        headers["Content-Encoding"] = encoding
        if encoding == "gzip" and rnd.draw(st.booleans()):
            body = gzip.compress(body)
        elif encoding == "deflate" and rnd.draw(st.booleans()):
            body = zlib.compress(body)
    framing = rnd.draw(
        st.sampled_from(["length", "short", "long", "chunked", "bad-chunked", "none"])
    )
    half = False
    if framing == "length":
        headers["Content-Length"] = str(len(body))
    elif framing == "short":
        headers["Content-Length"] = str(max(0, len(body) - rnd.draw(st.integers(1, 20))))
    elif framing == "long":
        headers["Content-Length"] = str(len(body) + rnd.draw(st.integers(1, 20)))
        half = True
    elif framing in ("chunked", "bad-chunked"):
        headers["Transfer-Encoding"] = "chunked"
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        if framing == "bad-chunked":
            body = body[: rnd.draw(st.integers(0, len(body)))]
            half = True
    if rnd.draw(st.booleans()):
        name = rnd.draw(
            st.sampled_from(["Accept", "Accept-Encoding", "Range", "X-Forwarded-For", "Expect"])
        )
        headers[name] = rnd.draw(st.text(alphabet="abcdef0123456789,.;=-*/ ", max_size=20))
    return http(method, path, headers, body), half


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rnd=st.data())
def test_no_request_gets_a_5xx(
    servers: tuple[LogProcess, WitnessProcess], rnd: st.DataObject
) -> None:
    log, witness = servers
    target, routes, bodies = rnd.draw(
        st.sampled_from(
            [
                (
                    log,
                    LOG_ROUTES,
                    [_add_body(), _add_body(3), b'{"sha256": ["' + b"ab" * 32 + b'"]}'],
                ),
                (witness, WITNESS_ROUTES, [_checkpoint_request()]),
            ]
        )
    )
    data, half = _fuzz_request(rnd, routes, bodies)
    status, _, answer = raw_request(target.url, data, half_close=half)
    assert status < 500, (data[:300], status, answer[:300])
    assert target.proc is not None and target.proc.poll() is None


def test_servers_still_answer_after_the_fuzzing(servers: tuple[LogProcess, WitnessProcess]) -> None:
    log, witness = servers
    assert raw_request(log.url, http("GET", "/checkpoint", {}))[0] == 200
    assert raw_request(witness.url, http("GET", "/healthz", {}))[0] == 200
    for proc in servers:
        stdout = (proc.data.parent / f"{proc.data.name}.stdout.log").read_text()
        assert "Traceback" not in stdout, stdout[-3000:]
