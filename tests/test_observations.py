"""Observation statements through a real log: /add, the binding rule per observer,
and every reader (lookups, receipts, fsck, monitor, verify) on a log holding both kinds."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from sigledger.client.receipts import verify_receipt
from sigledger.client.remote import LogClient
from sigledger.ledger.entry import SignedObservation, SignedStatement, decode_entry
from sigledger.ledger.errors import BadSignatureError, BindingConflictError
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import LogProcess, make_release, observed, post_add, run_cli, signed
from tests.test_monitor import monitor, run_sigledger

ALICE = Signer.from_seed("alice@example.org", hashlib.sha256(b"alice").digest())
EYE = Signer.from_seed("mirror.example.org/observer", hashlib.sha256(b"eye").digest())
OTHER_EYE = Signer.from_seed("crawler.example.org/observer", hashlib.sha256(b"other").digest())
INDEX = "https://index.example/simple/"


async def test_observations_are_logged_and_bound_per_observer(log_server: LogProcess) -> None:
    key = Verifier.from_vkey(log_server.vkey)
    seen = observed(EYE, "demo", "1.0", b"served bytes", index_url=INDEX)
    async with LogClient(log_server.url) as log:
        # One request may mix a publisher's signature and an observation of one file.
        receipts = await log.add([signed(ALICE, "demo", "1.0", b"served bytes"), seen])
        assert [r.status for r in receipts] == ["added", "added"]
        entry = verify_receipt(receipts[1], log_key=key, expect=seen.statement).entry
        assert entry.signed == seen and isinstance(entry.signed, SignedObservation)
        assert isinstance(decode_entry(receipts[0].entry).signed, SignedStatement)
        # The same observation again (even at another time) is the existing entry.
        (again,) = await log.add([replace(seen, observed_ms=seen.observed_ms)])
        assert (again.status, again.index) == ("existing", receipts[1].index)

        # Other bytes for the same file under the same observer key: refused, with
        # the first observation as evidence; nothing of that request is logged.
        other = observed(EYE, "demo", "1.0", b"different bytes", index_url=INDEX)
        with pytest.raises(BindingConflictError) as err:
            await log.add([observed(EYE, "demo", "2.0", b"fine"), other])
        ((index, data),) = err.value.existing
        assert index == receipts[1].index
        assert decode_entry(data).signed == seen
        assert err.value.code == "binding_conflict"
        # Another spelling of the file is the same file for the binding rule.
        respelled = observed(EYE, "Demo", "1.0.0", b"different bytes", index_url=INDEX)
        with pytest.raises(BindingConflictError):
            await log.add([respelled])

        # Another observer's disagreement is its own statement: logged.
        (theirs,) = await log.add([observed(OTHER_EYE, "demo", "1.0", b"different bytes")])
        assert theirs.status == "added"
        # A forged observation (index URL changed after signing) is refused unlogged.
        forged = replace(
            observed(EYE, "demo", "3.0", b"x", index_url=INDEX), index_url="https://evil.example/"
        )
        with pytest.raises(BadSignatureError):
            await log.add([forged])

        found = await log.lookup(project="demo", version="1.0")
        kinds = [decode_entry(e.entry).signed.kind for e in found.entries]
        assert kinds == ["signature", "observation", "observation"]
        by_hash = await log.lookup(sha256=hashlib.sha256(b"different bytes").hexdigest())
        assert [e.index for e in by_hash.entries] == [theirs.index]
    # The JSON wire form reaches the server as is.
    status, body, _ = await post_add(log_server.url, [observed(EYE, "demo", "4.0", b"4")])
    assert status == 200 and body["receipts"][0]["status"] == "added"


async def test_readers_take_logs_with_observations(log_server: LogProcess, tmp_path: Path) -> None:
    url, vkey = log_server.url, log_server.vkey
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = make_release(dist, "demo", "1.0", "whl")
    data = wheel.read_bytes()
    async with LogClient(url) as log:
        await log.add([signed(ALICE, "demo", "1.0", data)])
        await log.add([observed(EYE, "demo", "1.0", data), observed(EYE, "demo", "2.0", b"2")])
        await log.add([observed(OTHER_EYE, "demo", "1.0", b"tampered")])

    rc, out, err = await run_sigledger("fsck", url, "--log-key", vkey)
    assert rc == 0, out + err
    assert out.startswith("OK: localhost/sigledger at tree size 4: 4 entries")

    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'version = 1\n[[log]]\nurl = "{url}"\nkey = "{vkey}"\n'
        f'[project."demo"]\nsigners = ["{ALICE.vkey}"]\n'
    )
    rc, alarms, err = await monitor(tmp_path / "monitor.db", "--policy", str(policy))
    assert "Traceback" not in err
    assert rc == 1
    # The disagreeing observation is the monitor's conflict, with both entries.
    (conflict,) = [a for a in alarms if a["type"] == "conflicting_observations"]
    assert "entries 0 and 3" in conflict["message"] and OTHER_EYE.vkey in conflict["message"]
    kinds = [e["kind"] for e in conflict["evidence"]["entries"]]
    assert kinds == ["signature", "observation"]
    # An observer's files are observed, not signed: its alarms say so.
    (release,) = [
        a for a in alarms if a["type"] == "new_release" and a["evidence"]["version"] == "2.0"
    ]
    assert (
        release["message"]
        == f"new release demo 2.0 (demo-2.0-py3-none-any.whl, entry 2) observed by {EYE.vkey}"
    )
    (first,) = [
        a for a in alarms if a["type"] == "new_signer" and a["evidence"]["signer"] == EYE.vkey
    ]
    assert first["message"].startswith(f"{EYE.vkey} observed demo for the first time (")
    (alice,) = [
        a for a in alarms if a["type"] == "new_signer" and a["evidence"]["signer"] == ALICE.vkey
    ]
    assert alice["message"].startswith(f"{ALICE.vkey} signed demo for the first time (")

    env = {"SIGLEDGER_STATE_DIR": str(tmp_path / "state"), "SIGLEDGER_POLICY": str(policy)}
    r = await asyncio.to_thread(run_cli, "verify", str(wheel), env=env)
    assert "Traceback" not in r.stderr
    assert r.returncode == 0, r.stderr  # alice signed it; the observations do not change that
