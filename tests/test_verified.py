"""The verified client view: TOFU then append-only, split views, tampered answers."""

from __future__ import annotations

import base64
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from sigledger.client.checkpoints import CheckpointStore
from sigledger.client.remote import LogClient
from sigledger.client.trust import VerifiedLog
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.errors import LogMisbehaviorError, VerificationError
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.wire import LookupAnswer
from tests.helpers import LogProcess, signed

ALICE = Signer.from_seed("alice", bytes([3]) * 32)


async def _add(url: str, n: int, start: int = 0, project: str = "pkg") -> None:
    async with LogClient(url) as log:
        await log.add([signed(ALICE, project, f"{start + i}.0") for i in range(n)])


async def test_tofu_then_append_only(log_server: LogProcess, tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state")
    key = Verifier.from_vkey(log_server.vkey)
    await _add(log_server.url, 5)
    async with VerifiedLog(log_server.url, key, store) as log:
        cp = await log.checkpoint()
        assert cp.size == 5
    assert store.load("localhost/sigledger") is not None
    await _add(log_server.url, 7, 5)
    async with VerifiedLog(log_server.url, key, store) as log:
        cp = await log.checkpoint()
        assert cp.size == 12
        found = await log.lookup(project="pkg")
        assert [e.index for e in found] == list(range(12))
    stored = store.load("localhost/sigledger")
    assert stored is not None and b"\n12\n" in stored


async def test_wrong_log_key_is_refused(log_server: LogProcess, tmp_path: Path) -> None:
    other = Signer.generate("localhost/sigledger").verifier()
    async with VerifiedLog(log_server.url, other, CheckpointStore(tmp_path)) as log:
        with pytest.raises(VerificationError, match="not signed by the pinned log key"):
            await log.checkpoint()


async def test_split_view_is_detected_with_evidence(tmp_path: Path) -> None:
    # Two logs with the same key and origin but different histories.
    a = LogProcess(tmp_path / "a").start()
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "log.key", tmp_path / "b" / "log.key")
    b = LogProcess(tmp_path / "b").start()
    try:
        assert a.vkey == b.vkey
        await _add(a.url, 3, project="honest")
        await _add(b.url, 6, project="forked")
        store = CheckpointStore(tmp_path / "state")
        key = Verifier.from_vkey(a.vkey)
        async with VerifiedLog(a.url, key, store) as log:
            await log.checkpoint()
        async with VerifiedLog(b.url, key, store) as log:
            with pytest.raises(LogMisbehaviorError) as err:
                await log.checkpoint()
        evidence = err.value.evidence
        assert evidence["type"] == "inconsistent_checkpoints"
        first, second = evidence["checkpoints"]
        # the evidence stands on its own: both notes verify with the log key
        c1, _ = open_checkpoint(first.encode(), key)
        c2, _ = open_checkpoint(second.encode(), key)
        assert (c1.size, c2.size) == (3, 6)
        proof = [base64.b64decode(h) for h in evidence["consistency_proof"]]
        with pytest.raises(VerificationError):
            merkle.check_consistency(c1.size, c2.size, c1.root, c2.root, proof)
        # the stored state still holds the honest checkpoint
        stored = store.load("localhost/sigledger")
        assert stored is not None and stored.decode() == first
        # same size, different root: also evidence
        await _add(a.url, 3, 100, project="honest")
        store2 = CheckpointStore(tmp_path / "state2")
        async with VerifiedLog(b.url, key, store2) as log:
            await log.checkpoint()
        async with VerifiedLog(a.url, key, store2) as log:
            with pytest.raises(LogMisbehaviorError):
                await log.checkpoint()
    finally:
        a.kill()
        b.kill()


class TamperingClient(LogClient):
    """Changes one byte of the answers of a real server."""

    mode = ""

    async def lookup(self, **params: str) -> LookupAnswer:
        answer = await super().lookup(**params)
        e = answer.entries[0]
        if self.mode == "entry":
            e = replace(e, entry=e.entry[:-1] + bytes([e.entry[-1] ^ 1]))
        elif self.mode == "proof":
            e = replace(e, proof=(bytes([e.proof[0][0] ^ 1]) + e.proof[0][1:], *e.proof[1:]))
        elif self.mode == "index":
            e = replace(e, index=e.index + 1)
        elif self.mode == "checkpoint":
            answer = replace(answer, checkpoint=answer.checkpoint.replace(b"\n3\n", b"\n4\n"))
        return replace(answer, entries=(e, *answer.entries[1:]))

    async def consistency_proof(self, old: int, new: int) -> list[bytes]:
        hashes = await super().consistency_proof(old, new)
        if self.mode == "consistency":
            raw = bytearray(hashes[-1])
            raw[5] ^= 0x10
            hashes[-1] = bytes(raw)
        return hashes


@pytest.mark.parametrize("mode", ["entry", "proof", "index", "checkpoint"])
async def test_tampered_lookups_are_caught(
    log_server: LogProcess, tmp_path: Path, mode: str
) -> None:
    await _add(log_server.url, 3)
    log = VerifiedLog(
        log_server.url, Verifier.from_vkey(log_server.vkey), CheckpointStore(tmp_path)
    )
    log.client = TamperingClient(log_server.url)
    log.client.mode = mode
    async with log:
        with pytest.raises(VerificationError):
            await log.lookup(project="pkg")


async def test_tampered_consistency_proof_is_caught(log_server: LogProcess, tmp_path: Path) -> None:
    await _add(log_server.url, 3)
    store = CheckpointStore(tmp_path)
    key = Verifier.from_vkey(log_server.vkey)
    async with VerifiedLog(log_server.url, key, store) as log:
        await log.checkpoint()
    await _add(log_server.url, 4, 3)
    log = VerifiedLog(log_server.url, key, store)
    log.client = TamperingClient(log_server.url)
    log.client.mode = "consistency"
    async with log:
        with pytest.raises(LogMisbehaviorError):
            await log.checkpoint()
    stored = store.load("localhost/sigledger")
    assert stored is not None
    assert b"\n3\n" in stored  # the unproven checkpoint was not stored
