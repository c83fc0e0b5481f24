"""Spam and flood controls: token buckets, the verification backlog, the submitter
allowlist and the client address, as units and against a real server process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sigledger.ledger.entry import SignedStatement
from sigledger.ledger.errors import ConfigError
from sigledger.ledger.note import Signer
from sigledger.ledger.service.admission import (
    Backlog,
    Submitters,
    TokenBuckets,
    client_address,
    retry_after,
)
from tests.helpers import LogProcess, get, post_add, signed

ALICE = Signer.from_seed("alice", bytes([21]) * 32)
BOB = Signer.from_seed("bob", bytes([22]) * 32)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- units ---------------------------------------------------------------------------


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    b = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("a")
    assert wait == pytest.approx(0.5)
    assert b.take("b") == 0.0  # other keys have their own bucket
    clock.now += 0.5
    assert b.take("a") == 0.0
    assert b.take("a") > 0
    assert b.take("a", 10) == pytest.approx(1.5)  # larger than the burst: wait for a full bucket
    clock.now += 1.5
    assert b.take("a", 10) == 0.0  # ... then allowed, leaving the bucket in debt
    assert b.take("a") == pytest.approx(4.0)


def test_disabled_bucket_and_bounded_table() -> None:
    assert TokenBuckets(rate=0, burst=1).take("x", 1e9) == 0.0
    clock = Clock()
    b = TokenBuckets(rate=1.0, burst=1, max_keys=100, clock=clock)
    for i in range(1000):
        b.take(f"k{i}")
    assert len(b) <= 101
    clock.now += 2  # everyone refilled: idle buckets are forgotten
    b.take("new")
    assert len(b) == 1


@given(
    st.lists(st.tuples(st.floats(0, 5), st.integers(1, 5)), max_size=60),
    st.floats(0.1, 10),
    st.integers(1, 20),
)
def test_bucket_never_grants_more_than_rate_times_time_plus_burst(
    steps: list[tuple[float, int]], rate: float, burst: int
) -> None:
    clock = Clock()
    b = TokenBuckets(rate=rate, burst=burst, clock=clock)
    start = clock.now
    granted = 0
    for dt, n in steps:
        clock.now += dt
        wait = b.take("k", n)
        if wait == 0:
            granted += n
        else:
            assert wait > 0
    largest = max([burst] + [n for _dt, n in steps])
    assert granted <= largest + rate * (clock.now - start) + 1e-6


def test_backlog_bounds_bytes_and_requests() -> None:
    q = Backlog(max_bytes=100, max_requests=2)
    assert q.try_enter(1000)  # alone, even a large one is admitted
    assert not q.try_enter(1)
    q.leave(1000)
    assert q.try_enter(60) and not q.try_enter(60) and q.try_enter(40)
    assert not q.try_enter(0)  # request limit
    q.leave(60)
    q.leave(40)
    assert (q.bytes, q.requests, q.refused) == (0, 0, 3)
    with pytest.raises(AssertionError):
        q.leave(1)


def test_client_address() -> None:
    assert client_address("10.0.0.1", ["1.2.3.4"], header_set=False) == "10.0.0.1"
    assert client_address("10.0.0.1", ["1.2.3.4, 5.6.7.8"], header_set=True) == "5.6.7.8"
    assert client_address("10.0.0.1", ["a", "9.9.9.9"], header_set=True) == "9.9.9.9"
    assert client_address("10.0.0.1", [], header_set=True) == "10.0.0.1"
    v6 = client_address("2001:db8::1", [], header_set=False)
    assert v6 == client_address("2001:db8::ffff", [], header_set=False) == "2001:db8::/64"
    assert client_address(None, [], header_set=False) == "unknown"
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


def test_submitters_file(tmp_path: Path) -> None:
    f = tmp_path / "submitters"
    f.write_text(f"# publishers\n{ALICE.vkey}  # alice\n\n")
    subs = Submitters(f)
    assert subs.allows(ALICE.vkey) and not subs.allows(BOB.vkey)
    f.write_text(f"{ALICE.vkey}\n{BOB.vkey}\n")
    assert subs.reload() and subs.allows(BOB.vkey)
    f.write_text("not a key\n")
    assert not subs.reload()  # a broken file keeps the previous list
    assert subs.allows(BOB.vkey)
    with pytest.raises(ConfigError, match="submitters:1"):
        Submitters(f)
    assert Submitters(None).allows(BOB.vkey)


# -- real server ---------------------------------------------------------------------


async def test_client_limit(tmp_path: Path) -> None:
    log = LogProcess(
        tmp_path / "log",
        env={"SIGLEDGER_CLIENT_RATE": "0.2", "SIGLEDGER_CLIENT_BURST": "2"},
    ).start()
    try:
        for i in range(2):
            assert (await post_add(log.url, [signed(ALICE, version=f"{i}.0")]))[0] == 200
        status, doc, headers = await post_add(log.url, [signed(ALICE, version="3.0")])
        assert status == 429, doc
        assert doc["error"] == "rate_limited" and doc["limit"] == "client"
        assert int(headers["Retry-After"]) >= 1
        # without a configured proxy header, a forged one does not help
        status, _, _ = await post_add(
            log.url, [signed(ALICE, version="4.0")], {"X-Forwarded-For": "192.0.2.9"}
        )
        assert status == 429
        _, metrics, _ = await get(log.url + "/metrics")
        assert b'sigledger_rate_limited_total{limit="client"} 2.0' in metrics
        # reads are not limited
        for _ in range(5):
            assert (await get(log.url + "/checkpoint"))[0] == 200
    finally:
        log.kill()


async def test_client_limit_behind_a_trusted_proxy(tmp_path: Path) -> None:
    log = LogProcess(
        tmp_path / "log",
        env={
            "SIGLEDGER_CLIENT_RATE": "0.2",
            "SIGLEDGER_CLIENT_BURST": "1",
            "SIGLEDGER_CLIENT_IP_HEADER": "X-Forwarded-For",
        },
    ).start()
    try:
        a = {"X-Forwarded-For": "198.51.100.1"}
        b = {"X-Forwarded-For": "203.0.113.5, 198.51.100.2"}  # the proxy appended the last
        assert (await post_add(log.url, [signed(ALICE, version="1.0")], a))[0] == 200
        assert (await post_add(log.url, [signed(ALICE, version="2.0")], b))[0] == 200
        status, doc, _ = await post_add(log.url, [signed(ALICE, version="3.0")], a)
        assert status == 429 and doc["limit"] == "client"
        # spoofing the first item does not get a new bucket
        spoof = {"X-Forwarded-For": "192.0.2.77, 198.51.100.2"}
        assert (await post_add(log.url, [signed(ALICE, version="4.0")], spoof))[0] == 429
    finally:
        log.kill()


async def test_signer_limit(tmp_path: Path) -> None:
    log = LogProcess(
        tmp_path / "log",
        env={"SIGLEDGER_SIGNER_RATE": "0.5", "SIGLEDGER_SIGNER_BURST": "3"},
    ).start()
    try:
        batch = [signed(ALICE, version=f"{i}.0") for i in range(3)]
        assert (await post_add(log.url, batch))[0] == 200
        status, doc, headers = await post_add(log.url, [signed(ALICE, version="9.0")])
        assert status == 429, doc
        assert doc["limit"] == "signer" and doc["signer"] == ALICE.vkey
        assert int(headers["Retry-After"]) >= 1
        # another signer from the same address is not affected
        assert (await post_add(log.url, [signed(BOB, version="1.0")]))[0] == 200
        # forged statements under Alice's key do not use up her bucket: they fail first
        forged = signed(BOB, version="5.0")
        forged = SignedStatement(forged.statement, ALICE.name, ALICE.public_key, forged.signature)
        status, doc, _ = await post_add(log.url, [forged])
        assert status == 403 and doc["error"] == "bad_signature"
        await asyncio.sleep(2.1)  # one token back
        assert (await post_add(log.url, [signed(ALICE, version="9.0")]))[0] == 200
    finally:
        log.kill()


async def test_allowlist_reloaded_on_sighup(tmp_path: Path) -> None:
    allow = tmp_path / "submitters.txt"
    allow.write_text(ALICE.vkey + "\n")
    log = LogProcess(tmp_path / "log", env={"SIGLEDGER_SUBMITTERS_FILE": str(allow)}).start()
    try:
        assert (await post_add(log.url, [signed(ALICE)]))[0] == 200
        status, doc, _ = await post_add(log.url, [signed(BOB)])
        assert status == 403 and doc["error"] == "signer_not_allowed"
        assert doc["signer"] == BOB.vkey
        allow.write_text(f"{ALICE.vkey}\n{BOB.vkey}\n")
        assert log.proc is not None
        log.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while (await post_add(log.url, [signed(BOB)]))[0] != 200:
            assert time.monotonic() < deadline, "SIGHUP did not reload the allowlist"
            await asyncio.sleep(0.1)
        assert log.proc.poll() is None
    finally:
        log.kill()


async def test_backlog_full_answers_503_before_reading_the_body(tmp_path: Path) -> None:
    log = LogProcess(
        tmp_path / "log",
        env={"SIGLEDGER_VERIFY_QUEUE_REQUESTS": "1", "SIGLEDGER_REQUEST_TIMEOUT": "5"},
    ).start()
    try:
        host, port = log.url.removeprefix("http://").rsplit(":", 1)
        # a client that announces a body and sends it slowly holds the only slot
        slow = socket.create_connection((host, int(port)))
        slow.sendall(
            b"POST /add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        await asyncio.sleep(0.3)
        started = time.monotonic()
        status, doc, headers = await post_add(log.url, [signed(ALICE)])
        assert status == 503 and doc["error"] == "overloaded", doc
        assert headers["Retry-After"] == "1"
        assert time.monotonic() - started < 1.0
        _, metrics, _ = await get(log.url + "/metrics")
        assert b"sigledger_verify_backlog_requests 1.0" in metrics
        slow.close()  # the slot is freed when that client goes away
        deadline = time.monotonic() + 10
        while (await post_add(log.url, [signed(ALICE)]))[0] != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        _, health, _ = await get(log.url + "/healthz")
        assert json.loads(health)["status"] == "ok"
    finally:
        log.kill()
