"""End-to-end: a real `sigledger serve` subprocess, driven over HTTP and through the CLI."""

from __future__ import annotations

import asyncio
import base64
import glob
import hashlib
import io
import json
import os
import time
from pathlib import Path

import aiohttp
import msgpack
import pytest

from sigledger.client.publish.submit import publish, sign_statement
from sigledger.client.receipts import verify_receipt
from sigledger.client.remote import LogClient, LogRefusedError
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.entry import Statement, decode_entry
from sigledger.ledger.errors import BindingConflictError
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.wire import JSON_TYPE, MSGPACK_TYPE, encode_add_request, statement_to_json
from tests.helpers import LogProcess, get, make_release, read_log, run_cli, signed


async def _post(
    url: str, body: bytes, ctype: str = JSON_TYPE
) -> tuple[int, dict[str, object], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/add", data=io.BytesIO(body), headers={"Content-Type": ctype}) as r,
    ):
        return r.status, await r.json(), dict(r.headers)


async def test_empty_log_and_read_api(log_server: LogProcess) -> None:
    url = log_server.url
    status, note, headers = await get(url + "/checkpoint")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    cp, _ = open_checkpoint(note, Verifier.from_vkey(log_server.vkey))
    assert (cp.origin, cp.size, cp.root) == ("localhost/sigledger", 0, merkle.EMPTY_ROOT)
    for path in [
        "/tile/0/000",
        "/tile/0/000.p/1",
        "/tile/entries/000.p/1",
        "/tile/0/00",
        "/tile/0/000.p/0",
        "/tile/../checkpoint",
        "/tile/x/000",
        "/nope",
    ]:
        status, body, _ = await get(url + path)
        assert status == 404, path
        assert json.loads(body)["error"] == "not_found"
    status, body, _ = await get(url + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, _ = await get(url + "/metrics")
    assert status == 200 and b"sigledger_tree_size 0.0" in body


async def test_publish_and_read_back(log_server: LogProcess, tmp_path: Path) -> None:
    url, vkey = log_server.url, log_server.vkey
    alice = Signer.generate("alice@example.org")
    files = [
        make_release(tmp_path, "sampleproject", f"1.{i}.0", kind)
        for i in range(150)
        for kind in ("whl", "sdist")
    ]
    results = await publish(url, alice, files, log_key=Verifier.from_vkey(vkey))
    assert [r.status for r in results] == ["added"] * 300
    indexes = sorted(r.receipt["log_index"] for r in results if r.receipt)
    assert indexes == list(range(300))
    for r in results:
        assert r.receipt_path is not None and r.receipt_path.exists()
        doc = json.loads(r.receipt_path.read_text())
        v = verify_receipt(doc, log_key=Verifier.from_vkey(vkey), expect=r.signed.statement)
        assert v.entry.signed.signer_vkey() == alice.vkey
    size, entries = await read_log(url, vkey)
    assert size == 300
    by_index = {r.receipt["log_index"]: r for r in results if r.receipt}
    for i, data in enumerate(entries):
        e = decode_entry(data)
        assert e.signed.verify()
        assert e.statement == by_index[i].signed.statement
    # full tiles exist now and are immutable
    status, body, headers = await get(url + "/tile/0/000")
    assert status == 200 and len(body) == 8192
    assert "immutable" in headers["Cache-Control"]
    status, body, _ = await get(url + "/tile/1/000.p/1")
    assert status == 200 and body == merkle.tree_hash([merkle.leaf_hash(e) for e in entries[:256]])
    # re-publishing reports the existing entries
    again = await publish(url, alice, files[:3], log_key=Verifier.from_vkey(vkey))
    assert [r.status for r in again] == ["existing"] * 3
    assert [r.receipt["log_index"] for r in again if r.receipt] == [
        r.receipt["log_index"] for r in results[:3] if r.receipt
    ]
    size2, _ = await read_log(url, vkey)
    assert size2 == 300


async def test_binding_rule(log_server: LogProcess) -> None:
    url = log_server.url
    alice, bob = Signer.generate("alice"), Signer.generate("bob")
    first = signed(alice, content=b"original")
    async with LogClient(url) as log:
        (r1,) = await log.add([first])
        assert r1.status == "added"
        # same key, same file, different hash: refused with the existing entry
        with pytest.raises(LogRefusedError) as err:
            await log.add([signed(alice, content=b"tampered")])
        assert isinstance(err.value, BindingConflictError)
        assert err.value.code == "binding_conflict" and "409" in str(err.value)
        ((index, data),) = err.value.existing
        assert index == r1.index
        assert decode_entry(data).statement == first.statement
        # another key may attest a different hash: recorded
        (r2,) = await log.add([signed(bob, content=b"tampered")])
        assert r2.status == "added"
        # a request with one conflicting statement logs none of them
        with pytest.raises(LogRefusedError):
            await log.add([signed(alice, version="2.0.0"), signed(alice, content=b"other")])
        (r3,) = await log.add([signed(alice, version="2.0.0")])
        assert r3.status == "added"
        # duplicates inside one request map to one entry
        dup = signed(alice, version="3.0.0")
        ra, rb = await log.add([dup, dup])
        assert ra.index == rb.index
    size, entries = await read_log(url, log_server.vkey)
    assert size == 4


async def test_bad_requests_change_nothing(log_server: LogProcess) -> None:
    url = log_server.url
    alice = Signer.generate("alice")
    good = signed(alice)
    obj = statement_to_json(good)

    cases: list[tuple[bytes, str, int, str]] = [
        (b"not json", JSON_TYPE, 400, "malformed"),
        (b"{}", JSON_TYPE, 400, "malformed"),
        (json.dumps({"statements": []}).encode(), JSON_TYPE, 400, "malformed"),
        (json.dumps({**obj, "extra": 1}).encode(), JSON_TYPE, 400, "malformed"),
        (
            json.dumps({**obj, "sha256": obj["sha256"].upper()}).encode(),
            JSON_TYPE,
            400,
            "malformed",
        ),
        (json.dumps({**obj, "version": "1.0.0.0"}).encode(), JSON_TYPE, 400, "malformed"),
        (
            json.dumps({**obj, "filename": "../x-1.0.0.tar.gz"}).encode(),
            JSON_TYPE,
            400,
            "malformed",
        ),
        (json.dumps({**obj, "size": obj["size"] + 1}).encode(), JSON_TYPE, 403, "bad_signature"),
        (
            json.dumps({**obj, "signer": Signer.generate("alice").vkey}).encode(),
            JSON_TYPE,
            403,
            "bad_signature",
        ),
        (b"\xc1", MSGPACK_TYPE, 400, "malformed"),
        (msgpack.packb([b"\x01\x02"]), MSGPACK_TYPE, 400, "malformed"),
        (encode_add_request([good], MSGPACK_TYPE) + b"\x00", MSGPACK_TYPE, 400, "malformed"),
        (json.dumps({"statements": [obj] * 1001}).encode(), JSON_TYPE, 400, "malformed"),
        (b"x" * (5 * 1024 * 1024), JSON_TYPE, 413, "too_large"),
        (b"{}", "application/xml", 400, "malformed"),
    ]
    for body, ctype, status, key in cases:
        got, doc, _ = await _post(url, body, ctype)
        assert (got, doc["error"]) == (status, key), (body[:80], doc)
        assert doc["message"]
    status, note, _ = await get(url + "/checkpoint")
    cp, _ = open_checkpoint(note, Verifier.from_vkey(log_server.vkey))
    assert cp.size == 0
    # and the good one still goes in, via msgpack
    status, doc, _ = await _post(url, encode_add_request([good], MSGPACK_TYPE), MSGPACK_TYPE)
    assert status == 200 and doc["receipts"][0]["log_index"] == 0


def test_cli_tour(log_server: LogProcess, tmp_path: Path) -> None:
    url, vkey = log_server.url, log_server.vkey
    r = run_cli("keygen", "--name", "alice@example.org", "--out", str(tmp_path / "alice.key"))
    assert r.returncode == 0, r.stderr
    alice_vkey = r.stdout.strip()
    assert Verifier.from_vkey(alice_vkey).name == "alice@example.org"
    assert (tmp_path / "alice.key").stat().st_mode & 0o777 == 0o600
    r = run_cli("keygen", "--name", "alice@example.org", "--out", str(tmp_path / "alice.key"))
    assert r.returncode == 2 and "already exists" in r.stderr

    wheel = make_release(tmp_path, "demo-pkg", "0.1.0", "whl")
    sdist = make_release(tmp_path, "demo-pkg", "0.1.0", "sdist")
    key = str(tmp_path / "alice.key")
    r = run_cli("publish", "--log", url, "--key", key, "--dry-run", str(wheel))
    assert r.returncode == 0 and "would log" in r.stderr
    assert not (tmp_path / ".sigledger").exists()

    r = run_cli(
        "publish", "--log", url, "--key", key, "--log-key", vkey, "--json", str(wheel), str(sdist)
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version"] == 1
    assert [x["status"] for x in out["results"]] == ["added", "added"]
    # receipts live where `dist/*` does not reach
    receipt = tmp_path / ".sigledger" / f"{wheel.name}.json"
    assert out["results"][0]["receipt"] == str(receipt) and receipt.exists()
    shell_glob = {Path(p).name for p in glob.glob(str(tmp_path / "*"))}  # as `dist/*` expands
    assert {wheel.name, sdist.name} <= shell_glob
    assert not [name for name in shell_glob if name.endswith(".json")]

    r = run_cli("publish", "--log", url, "--key", key, str(wheel))
    assert r.returncode == 0 and "already logged" in r.stderr

    wheel.write_bytes(b"changed content")
    r = run_cli("publish", "--log", url, "--key", key, str(wheel))
    assert r.returncode == 1 and "409" in r.stderr

    bad = tmp_path / "notarelease.txt"
    bad.write_text("x")
    r = run_cli("publish", "--log", url, "--key", key, str(bad))
    assert r.returncode == 2 and "not a wheel or sdist" in r.stderr

    r = run_cli("checkpoint", "--log", url, "--log-key", vkey, "--json")
    assert r.returncode == 0, r.stderr
    cp = json.loads(r.stdout)
    assert cp["tree_size"] == 2 and cp["verified"] is True

    r = run_cli(
        "checkpoint", "--log", url, "--log-key", Signer.generate("localhost/sigledger").vkey
    )
    assert r.returncode == 1

    r = run_cli("publish", "--log", "http://127.0.0.1:1", "--key", key, str(sdist))
    assert r.returncode == 3 and "cannot reach" in r.stderr

    r = run_cli("publish", "--key", key, str(sdist), env={"SIGLEDGER_LOG": ""})
    assert r.returncode == 2 and "--log is required" in r.stderr

    r = run_cli(
        "publish", "--log", url, "--key", key, str(sdist), env={"SIGLEDGER_LOG_KEY": "garbage"}
    )
    assert r.returncode == 2


def test_single_writer_and_key_checks(log_server: LogProcess, tmp_path: Path) -> None:
    second = LogProcess(log_server.data)
    with pytest.raises(RuntimeError, match="in use by another sigledger process"):
        second.start()
    assert second.proc is not None and second.proc.wait(timeout=10) == 2
    assert log_server.stop() == 0
    # the same data directory with another key is refused
    key = log_server.data / "log.key"
    original = key.read_text()
    key.write_text(Signer.generate("localhost/sigledger").skey + "\n")
    with pytest.raises(RuntimeError, match="is not the key of the log"):
        LogProcess(log_server.data).start()
    key.unlink()
    with pytest.raises(RuntimeError, match="key .* is missing"):
        LogProcess(log_server.data).start()
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, original.encode())
    os.close(fd)
    with pytest.raises(RuntimeError, match="has origin"):
        LogProcess(log_server.data, "--origin", "example.org/other").start()
    again = LogProcess(log_server.data).start()
    try:
        assert again.vkey == log_server.vkey
    finally:
        again.kill()


async def test_graceful_shutdown_answers_everything(tmp_path: Path) -> None:
    server = LogProcess(tmp_path / "log", env={"SIGLEDGER_BATCH_MAX_AGE": "0.3"}).start()
    alice = Signer.generate("alice")
    try:
        async with aiohttp.ClientSession() as session:

            async def submit(i: int) -> int:
                body = encode_add_request([signed(alice, version=f"{i}.0")])
                try:
                    async with session.post(
                        server.url + "/add", data=body, headers={"Content-Type": JSON_TYPE}
                    ) as r:
                        await r.read()
                        return r.status
                except aiohttp.ClientConnectionError:
                    return -1

            tasks = [asyncio.create_task(submit(i)) for i in range(40)]
            # Stop only once the server holds statements (queued or integrated): a fixed
            # sleep races the client on a loaded machine.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                async with session.get(server.url + "/metrics") as r:
                    text = await r.text()
                held = sum(
                    float(line.split()[-1])
                    for line in text.splitlines()
                    if line.startswith(("sigledger_queue_statements ", "sigledger_tree_size "))
                )
                if held > 0:
                    break
                await asyncio.sleep(0.01)
            assert server.proc is not None
            server.proc.terminate()
            statuses = await asyncio.gather(*tasks)
        assert server.proc.wait(timeout=20) == 0
    finally:
        server.kill()
    # every request that reached the server got an answer: stored (200) or refused (503)
    assert all(s in (200, 503, -1) for s in statuses)
    accepted = statuses.count(200)
    assert accepted > 0
    again = LogProcess(tmp_path / "log").start()
    try:
        size, _ = await read_log(again.url, again.vkey)
        assert size >= accepted
    finally:
        again.kill()


async def test_healthz_reports_stale_checkpoint(tmp_path: Path) -> None:
    server = LogProcess(
        tmp_path / "log", env={"SIGLEDGER_STALE_AFTER": "0.5", "SIGLEDGER_CHECKPOINT_PERIOD": "5"}
    ).start()
    try:
        await asyncio.sleep(1.0)
        status, body, _ = await get(server.url + "/healthz")
        doc = json.loads(body)
        assert status == 503 and doc["status"] == "fail"
        assert "checkpoint last published" in doc["problems"][0]
    finally:
        server.kill()


def test_statement_helpers_agree_with_wire_json() -> None:
    alice = Signer.generate("alice")
    st = Statement.create(
        "Sample.Project", "1.0", "sample.project-1.0.tar.gz", hashlib.sha256(b"x").digest(), 1
    )
    s = sign_statement(alice, st)
    doc = statement_to_json(s)
    assert doc["project"] == "sample-project"
    assert doc["signer"] == alice.vkey


async def test_large_requests_are_checked_in_a_worker(log_server: LogProcess) -> None:
    alice = Signer.generate("alice")
    batch = [signed(alice, version=f"{i}.0") for i in range(40)]
    forged = statement_to_json(batch[7])
    forged["size"] += 1
    docs = [statement_to_json(s) for s in batch]
    docs[7] = forged
    body = json.dumps({"statements": docs}).encode()
    assert len(body) > 4096
    status, doc, _ = await _post(log_server.url, body)
    assert (status, doc["error"], doc["statements"]) == (403, "bad_signature", [7])
    bad_msgpack = encode_add_request(batch, MSGPACK_TYPE)[:-1]
    status, doc, _ = await _post(log_server.url, bad_msgpack, MSGPACK_TYPE)
    assert (status, doc["error"]) == (400, "malformed")
    for ctype in (JSON_TYPE, MSGPACK_TYPE):
        status, doc, _ = await _post(log_server.url, encode_add_request(batch, ctype), ctype)
        assert status == 200
        for r, s in zip(doc["receipts"], batch, strict=True):
            assert decode_entry(base64.b64decode(r["entry"])).signed == s


async def test_verification_workers_exit_with_a_killed_server(tmp_path: Path) -> None:
    server = LogProcess(tmp_path / "log").start()
    try:
        alice = Signer.generate("alice")
        body = encode_add_request([signed(alice, version=f"{i}.0") for i in range(40)])
        status, _doc, _ = await _post(server.url, body)
        assert status == 200
        assert server.proc is not None
        workers = _children(server.proc.pid)
        assert workers, "a large request should have started a verification worker"
    finally:
        server.kill()
    for _ in range(50):
        if not any(Path(f"/proc/{pid}").exists() for pid in workers):
            break
        await asyncio.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out
