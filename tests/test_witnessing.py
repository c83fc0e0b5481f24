"""A log with three witness subprocesses and quorum 2, end to end."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigledger.client.publish.submit import publish
from sigledger.client.receipts import check_witness_quorum, verify_receipt
from sigledger.client.remote import LogClient
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.entry import SignedStatement
from sigledger.ledger.errors import VerificationError
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Signer, Verifier, parse_note
from sigledger.ledger.wire import JSON_TYPE, encode_add_request
from tests.helpers import (
    LogProcess,
    WitnessProcess,
    get,
    make_release,
    post_add,
    run_cli,
    signed,
)

ALICE = Signer.from_seed("alice", bytes([5]) * 32)


def _log_key(data: Path) -> Signer:
    data.mkdir(parents=True)
    signer = Signer.generate("localhost/sigledger")
    fd = os.open(data / "log.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (signer.skey + "\n").encode())
    os.close(fd)
    return signer


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[tuple[Signer, list[WitnessProcess]]]:
    log_signer = _log_key(tmp_path / "log")
    started = [
        WitnessProcess(
            tmp_path / f"w{i}", "--name", f"w{i}.example", "--log", log_signer.vkey
        ).start()
        for i in range(3)
    ]
    try:
        yield log_signer, started
    finally:
        for w in started:
            w.kill()


def _log(
    tmp_path: Path,
    ws: list[WitnessProcess],
    data: str = "log",
    quorum: int = 2,
    timeout: float = 1.0,
) -> LogProcess:
    env = {
        "SIGLEDGER_WITNESSES": ",".join(f"{w.url} {w.vkey}" for w in ws),
        "SIGLEDGER_WITNESS_QUORUM": str(quorum),
        "SIGLEDGER_WITNESS_TIMEOUT": str(timeout),
        "SIGLEDGER_CHECKPOINT_PERIOD": "0.3",
    }
    return LogProcess(tmp_path / data, env=env).start()


async def _wait_for(predicate_url: str, want: int, vkey: str, seconds: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status, note, _ = await get(predicate_url + "/checkpoint")
        cp, _ = open_checkpoint(note, Verifier.from_vkey(vkey))
        if cp.size >= want:
            return
        assert asyncio.get_running_loop().time() < deadline, "checkpoint never caught up"
        await asyncio.sleep(0.2)


async def test_quorum_of_two_survives_one_dead_witness(
    tmp_path: Path, witnesses: tuple[Signer, list[WitnessProcess]]
) -> None:
    log_signer, ws = witnesses
    keys = [Verifier.from_vkey(w.vkey) for w in ws]
    log = _log(tmp_path, ws)
    try:
        async with LogClient(log.url) as c:
            receipts = await c.add([signed(ALICE, version=f"{i}.0") for i in range(10)])
        note = receipts[0].checkpoint
        assert len(check_witness_quorum(note, keys, 2)) >= 2
        verify_receipt(receipts[0], log_key=log_signer.verifier())

        ws[0].kill()
        async with LogClient(log.url) as c:
            more = await c.add([signed(ALICE, version=f"{i}.1") for i in range(5)])
        good = check_witness_quorum(more[0].checkpoint, keys, 2)
        assert "w0.example" not in good

        # two dead: entries are stored but not published; the log says so
        ws[1].kill()
        body = encode_add_request([signed(ALICE, version="9.9")])
        async with (
            aiohttp.ClientSession() as s,
            s.post(log.url + "/add", data=body, headers={"Content-Type": "application/json"}) as r,
        ):
            assert r.status == 503
            assert r.headers["Retry-After"]
            assert (await r.json())["error"] == "not_witnessed"
        status, health, _ = await get(log.url + "/healthz")
        assert status == 503 and "witnesses" in json.loads(health)["problems"][0]
        status, metrics, _ = await get(log.url + "/metrics")
        assert b"sigledger_witnessed 0.0" in metrics
        assert b"sigledger_unpublished_entries 1.0" in metrics
        status, note2, _ = await get(log.url + "/checkpoint")
        assert open_checkpoint(note2, log_signer.verifier())[0].size == 15

        # a witness comes back (same state): the log catches up by itself
        port = ws[1].url.rsplit(":", 1)[1]
        ws[1] = WitnessProcess(ws[1].data, *ws[1].args, "--listen", f"127.0.0.1:{port}").start()
        await _wait_for(log.url, 16, log_signer.vkey)
        async with LogClient(log.url) as c:
            (again,) = await c.add([signed(ALICE, version="9.9")])
        assert again.status == "existing"
        assert len(check_witness_quorum(again.checkpoint, keys, 2)) >= 2
        status, health, _ = await get(log.url + "/healthz")
        assert status == 200
    finally:
        log.kill()


async def test_a_fork_is_cosigned_on_one_branch_only(
    tmp_path: Path, witnesses: tuple[Signer, list[WitnessProcess]]
) -> None:
    log_signer, ws = witnesses
    keys = [Verifier.from_vkey(w.vkey) for w in ws]
    a = _log(tmp_path, ws)
    (tmp_path / "fork").mkdir()
    shutil.copy(tmp_path / "log" / "log.key", tmp_path / "fork" / "log.key")
    try:
        async with LogClient(a.url) as c:
            await c.add([signed(ALICE, "honest", f"{i}.0") for i in range(3)])
        b = _log(tmp_path, ws, data="fork")
        try:
            body = encode_add_request([signed(ALICE, "forked", f"{i}.0") for i in range(5)])
            async with (
                aiohttp.ClientSession() as s,
                s.post(b.url + "/add", data=body, headers={"Content-Type": JSON_TYPE}) as r,
            ):
                assert r.status == 503
                assert (await r.json())["error"] == "not_witnessed"
            status, note, _ = await get(b.url + "/checkpoint")
            with pytest.raises(VerificationError):
                check_witness_quorum(note, keys, 1)  # no witness cosigned the fork
            assert all(s.name == "localhost/sigledger" for s in parse_note(note).signatures)
        finally:
            b.kill()
        # the honest branch keeps being cosigned
        async with LogClient(a.url) as c:
            (r,) = await c.add([signed(ALICE, "honest", "9.0")])
        assert len(check_witness_quorum(r.checkpoint, keys, 2)) >= 2
    finally:
        a.kill()


async def test_verify_enforces_the_policy_witness_quorum(
    tmp_path: Path, witnesses: tuple[Signer, list[WitnessProcess]]
) -> None:
    log_signer, ws = witnesses
    log = _log(tmp_path, ws, quorum=3)
    try:
        dist = tmp_path / "dist"
        dist.mkdir()
        whl = make_release(dist, "requests", "2.0.0", "whl")
        await publish(log.url, ALICE, [whl])
        absent = Signer.generate("absent.example", ALG_COSIGNATURE_V1)
        env = {
            "SIGLEDGER_STATE_DIR": str(tmp_path / "state"),
            "SIGLEDGER_POLICY": str(tmp_path / "policy.toml"),
        }

        def policy(keys: list[str], quorum: int) -> None:
            (tmp_path / "policy.toml").write_text(
                f'version = 1\n[[log]]\nurl = "{log.url}"\nkey = "{log_signer.vkey}"\n'
                f"[witnesses]\nkeys = {json.dumps(keys)}\nquorum = {quorum}\n"
                f'[default]\nsigners = ["{ALICE.vkey}"]\n'
            )

        policy([w.vkey for w in ws], 3)
        r = await asyncio.to_thread(run_cli, "verify", str(whl), env=env)
        assert r.returncode == 0, r.stderr
        r = await asyncio.to_thread(run_cli, "verify", "--offline", str(whl), env=env)
        assert r.returncode == 0, r.stderr
        policy([ws[0].vkey, absent.vkey], 2)
        for extra in ([], ["--offline"]):
            r = await asyncio.to_thread(run_cli, "verify", *extra, str(whl), env=env)
            assert r.returncode == 1
            assert "missing: absent.example" in r.stderr
    finally:
        log.kill()


async def test_idle_log_gets_fresh_cosignatures(
    tmp_path: Path, witnesses: tuple[Signer, list[WitnessProcess]]
) -> None:
    log_signer, ws = witnesses
    env = {
        "SIGLEDGER_WITNESSES": ",".join(f"{w.url} {w.vkey}" for w in ws),
        "SIGLEDGER_WITNESS_QUORUM": "2",
        "SIGLEDGER_WITNESS_REFRESH": "0.5",
        "SIGLEDGER_CHECKPOINT_PERIOD": "0.3",
    }
    log = LogProcess(tmp_path / "log", env=env).start()
    try:
        _, first, _ = await get(log.url + "/checkpoint")
        await asyncio.sleep(2.2)  # cosignature timestamps have one-second resolution
        _, second, _ = await get(log.url + "/checkpoint")
        assert first != second
        key = log_signer.verifier()
        assert open_checkpoint(first, key)[0] == open_checkpoint(second, key)[0]
        keys = [Verifier.from_vkey(w.vkey) for w in ws]
        assert len(check_witness_quorum(second, keys, 2)) >= 2
    finally:
        log.kill()


async def test_resubmitting_an_unpublished_statement_is_not_a_storage_failure(
    tmp_path: Path, witnesses: tuple[Signer, list[WitnessProcess]]
) -> None:
    log_signer, ws = witnesses
    keys = [Verifier.from_vkey(w.vkey) for w in ws]
    log = _log(tmp_path, ws)
    bob = Signer.from_seed("bob", bytes([6]) * 32)
    try:
        async with LogClient(log.url) as c:
            await c.add([signed(ALICE, version="0.1")])
        ports = [w.url.rsplit(":", 1)[1] for w in ws]
        ws[0].kill()
        ws[1].kill()

        async def post(statements: list[SignedStatement]) -> tuple[int, dict[str, Any], str]:
            status, doc, headers = await post_add(log.url, statements)
            return status, doc, headers.get("Retry-After", "")

        first = signed(ALICE, version="1.0")
        status, doc, retry = await post([first])
        assert (status, doc["error"]) == (503, "not_witnessed") and retry
        # the same statement again, together with a new one from another submitter
        # in the same batch: both wait for the witnesses, neither is a storage failure
        (s1, d1, r1), (s2, d2, r2) = await asyncio.gather(
            post([first]), post([signed(bob, "other", "1.0")])
        )
        assert (s1, d1["error"]) == (503, "not_witnessed") and r1, d1
        assert (s2, d2["error"]) == (503, "not_witnessed") and r2, d2
        assert "could not store" not in str(d1["message"])

        # the CLI says what happened, not "check your network"
        dist = tmp_path / "dist"
        dist.mkdir()
        whl = make_release(dist, "cliproject", "1.0", "whl")
        key_file = tmp_path / "alice.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (ALICE.skey + "\n").encode())
        os.close(fd)
        args = ("publish", "--log", log.url, "--key", str(key_file), str(whl))
        r = await asyncio.to_thread(run_cli, *args, timeout=120)
        assert r.returncode == 3, r.stderr
        assert "logged, waiting for witness cosignatures" in r.stderr
        assert "network" not in r.stderr.lower()

        # publishing again while the witnesses come back: the receipt arrives
        cli = asyncio.create_task(asyncio.to_thread(run_cli, *args, timeout=120))
        await asyncio.sleep(1.0)
        for i in (0, 1):
            ws[i] = WitnessProcess(
                ws[i].data, *ws[i].args, "--listen", f"127.0.0.1:{ports[i]}"
            ).start()
        r = await cli
        assert r.returncode == 0, r.stderr
        assert "cliproject-1.0-py3-none-any.whl" in r.stderr
        async with LogClient(log.url) as c:
            (again,) = await c.add([first])
        assert again.status == "existing"
        assert len(check_witness_quorum(again.checkpoint, keys, 2))
    finally:
        log.kill()
    server_log = (tmp_path / "log.stdout.log").read_text()
    assert "batch failed" not in server_log
    assert server_log.count('"log loaded"') == 1  # never reloaded the tree
