"""The verified client view: TOFU then append-only, split views, tampered answers."""

from __future__ import annotations

import base64
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from sigledger.client.checkpoints import FileCheckpointStore
from sigledger.client.monitor.watcher import MonitorState
from sigledger.client.remote import LogClient
from sigledger.client.tiles import BadTileError
from sigledger.client.trust import Acceptance, CheckpointAcceptor, CheckpointStore, VerifiedLog
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.errors import LogMisbehaviorError, VerificationError
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Signer, Verifier
from sigledger.ledger.wire import LookupAnswer
from tests.helpers import LogProcess, signed
from tests.simulator import MemoryCheckpointStore, SimulatedLog

ALICE = Signer.from_seed("alice", bytes([3]) * 32)


async def _add(url: str, n: int, start: int = 0, project: str = "pkg") -> None:
    async with LogClient(url) as log:
        await log.add([signed(ALICE, project, f"{start + i}.0") for i in range(n)])


async def test_tofu_then_append_only(log_server: LogProcess, tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path / "state")
    key = Verifier.from_vkey(log_server.vkey)
    await _add(log_server.url, 5)
    async with VerifiedLog(log_server.url, key, store) as log:
        cp = await log.checkpoint()
        assert cp.size == 5
    assert store.get("localhost/sigledger") is not None
    await _add(log_server.url, 7, 5)
    async with VerifiedLog(log_server.url, key, store) as log:
        cp = await log.checkpoint()
        assert cp.size == 12
        found = await log.lookup(project="pkg")
        assert [e.index for e in found] == list(range(12))
    stored = store.get("localhost/sigledger")
    assert stored is not None and b"\n12\n" in stored


async def test_wrong_log_key_is_refused(log_server: LogProcess, tmp_path: Path) -> None:
    other = Signer.generate("localhost/sigledger").verifier()
    async with VerifiedLog(log_server.url, other, FileCheckpointStore(tmp_path)) as log:
        with pytest.raises(VerificationError, match="not signed by the log key"):
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
        store = FileCheckpointStore(tmp_path / "state")
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
        stored = store.get("localhost/sigledger")
        assert stored is not None and stored.decode() == first
        # same size, different root: also evidence
        await _add(a.url, 3, 100, project="honest")
        store2 = FileCheckpointStore(tmp_path / "state2")
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
        log_server.url, Verifier.from_vkey(log_server.vkey), FileCheckpointStore(tmp_path)
    )
    log.client = TamperingClient(log_server.url)
    log.client.mode = mode
    async with log:
        with pytest.raises(VerificationError):
            await log.lookup(project="pkg")


async def test_tampered_consistency_proof_is_caught(log_server: LogProcess, tmp_path: Path) -> None:
    await _add(log_server.url, 3)
    store = FileCheckpointStore(tmp_path)
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
    stored = store.get("localhost/sigledger")
    assert stored is not None
    assert b"\n3\n" in stored  # the unproven checkpoint was not stored


# --- the checkpoint acceptor, fed bytes from simulated logs -----------------------------

WITNESS = Signer.from_seed("witness.example", bytes([15]) * 32, ALG_COSIGNATURE_V1)


def _acceptor(
    log: SimulatedLog, store: CheckpointStore | None = None, quorum: int = 0
) -> CheckpointAcceptor:
    return CheckpointAcceptor(
        log.verifier,
        store if store is not None else MemoryCheckpointStore(),
        witnesses=[WITNESS.verifier()],
        witness_quorum=quorum,
    )


def _accept(acceptor: CheckpointAcceptor, log: SimulatedLog, note: bytes) -> Acceptance:
    """Check ``note``, answer with ``log``'s own consistency proof, accept."""
    candidate = acceptor.check(note, log.url)
    proof: list[bytes] = []
    if candidate.consistency is not None:
        older, newer = candidate.consistency
        proof = log.consistency_proof(older.checkpoint.size, newer.checkpoint.size)
    return acceptor.accept(candidate, proof)


def _grow(log: SimulatedLog, n: int, tag: str = "") -> bytes:
    log.append(*(f"{tag}{log.tree.size + i}".encode() for i in range(n)))
    return log.publish()


def _check_evidence(err: LogMisbehaviorError, log: SimulatedLog, sizes: tuple[int, int]) -> None:
    """The evidence stands on its own: two signed notes no proof can reconcile."""
    ev = err.evidence
    assert ev["type"] == "inconsistent_checkpoints"
    assert (ev["origin"], ev["log_key"], ev["log_url"]) == (log.key.name, log.vkey, log.url)
    c1, _ = open_checkpoint(ev["checkpoints"][0].encode(), log.verifier)
    c2, _ = open_checkpoint(ev["checkpoints"][1].encode(), log.verifier)
    assert (c1.size, c2.size) == sizes
    proof = [base64.b64decode(h) for h in ev["consistency_proof"]]
    if c1.size == c2.size:
        assert proof == [] and c1.root != c2.root
    else:
        with pytest.raises(VerificationError):
            merkle.check_consistency(c1.size, c2.size, c1.root, c2.root, proof)


def test_acceptor_first_newer_same_older() -> None:
    log = SimulatedLog(cosigners=(WITNESS,))
    store = MemoryCheckpointStore()
    acceptor = _acceptor(log, store, quorum=1)
    n5 = _grow(log, 5)
    got = _accept(acceptor, log, n5)
    assert (got.relation, got.stored, got.checkpoint.size) == ("first", True, 5)
    assert store.get(log.key.name) == n5
    n9 = _grow(log, 4)
    assert acceptor.check(n9, log.url).consistency is not None
    got = _accept(acceptor, log, n9)
    assert (got.relation, got.stored) == ("newer", True)
    assert store.get(log.key.name) == n9
    # Re-cosigned: the same tree in a fresher note, which replaces the stored one.
    again = log.publish()
    assert again != n9
    got = _accept(acceptor, log, again)
    assert (got.relation, got.stored) == ("same", True)
    assert store.get(log.key.name) == again
    got = _accept(acceptor, log, again)
    assert (got.relation, got.stored) == ("same", False)
    # An older checkpoint (a lagging mirror) is a proven prefix, and not stored.
    old = log.publish(7)
    candidate = acceptor.check(old, log.url)
    assert candidate.consistency is not None
    assert [t.checkpoint.size for t in candidate.consistency] == [7, 9]
    got = acceptor.accept(candidate, log.consistency_proof(7, 9))
    assert (got.relation, got.stored) == ("older", False)
    assert store.get(log.key.name) == again
    # A known size needs no proof any more.
    assert acceptor.check(old, log.url).consistency is None
    assert acceptor.accept(acceptor.check(old, log.url)).relation == "older"


def test_acceptor_fork_is_evidence_and_changes_nothing() -> None:
    honest = SimulatedLog()
    _grow(honest, 3)
    forked = honest.fork()
    store = MemoryCheckpointStore()
    acceptor = _acceptor(honest, store)
    trusted = _grow(honest, 3, "honest")
    _accept(acceptor, honest, trusted)
    # Larger, not an extension: the fork's own proof cannot reconcile it.
    with pytest.raises(LogMisbehaviorError) as err:
        _accept(acceptor, forked, _grow(forked, 5, "forked"))
    _check_evidence(err.value, forked, (6, 8))
    assert store.get(honest.key.name) == trusted
    # Equal size, other root.
    with pytest.raises(LogMisbehaviorError) as err:
        _accept(acceptor, forked, forked.publish(6))
    _check_evidence(err.value, forked, (6, 6))
    # Smaller, not a prefix (history rewritten below it).
    rewritten = honest.fork()
    rewritten.rewrite(1, b"other")
    with pytest.raises(LogMisbehaviorError) as err:
        _accept(acceptor, rewritten, rewritten.publish(4))
    _check_evidence(err.value, rewritten, (4, 6))
    assert store.get(honest.key.name) == trusted


def test_acceptor_witness_quorum_after_consistency() -> None:
    log = SimulatedLog(cosigners=(WITNESS,))
    store = MemoryCheckpointStore()
    acceptor = _acceptor(log, store, quorum=1)
    _accept(acceptor, log, _grow(log, 4))
    log.append(b"more")
    bare = log.publish(cosign=False)
    with pytest.raises(VerificationError, match="witness cosignatures"):
        _accept(acceptor, log, bare)
    assert b"\n4\n" in (store.get(log.key.name) or b"")
    # A fork without cosignatures is still reported as the fork it is.
    forked = log.fork()
    forked.rewrite(0, b"x")
    with pytest.raises(LogMisbehaviorError):
        _accept(acceptor, forked, forked.publish(cosign=False))


def test_acceptor_refuses_bad_notes() -> None:
    log = SimulatedLog()
    note = _grow(log, 2)
    stranger = CheckpointAcceptor(Signer.generate(log.key.name).verifier(), MemoryCheckpointStore())
    with pytest.raises(VerificationError, match="not signed by the log key"):
        stranger.check(note, log.url)
    with pytest.raises(VerificationError, match="malformed checkpoint"):
        _acceptor(log).check(b"garbage", log.url)
    # A stored note the pinned key does not verify: the key was changed.
    store = MemoryCheckpointStore()
    store.put(log.key.name, note)
    with pytest.raises(VerificationError, match="stored checkpoint"):
        CheckpointAcceptor(Signer.generate(log.key.name).verifier(), store, log.key.name).trusted()


async def test_verified_log_over_a_simulated_log(tmp_path: Path) -> None:
    """VerifiedLog's checkpoint acceptance over HTTP, with /proof/consistency and tiles."""
    log = await SimulatedLog().start()
    try:
        store = FileCheckpointStore(tmp_path)
        _grow(log, 300)
        async with VerifiedLog(log.url, log.verifier, store) as v:
            assert (await v.checkpoint()).size == 300
        _grow(log, 300)
        log.missing.add("/proof/consistency")  # a plain tiles log: proven from tiles
        async with VerifiedLog(log.url, log.verifier, store, tile_cache=tmp_path / "t") as v:
            assert (await v.checkpoint()).size == 600
        assert "tile/0/001" in log.fetched
        # A bad tile on the way is the log's fault, with evidence, and stores nothing.
        _grow(log, 300)
        log.corrupt("tile/0/002")
        async with VerifiedLog(log.url, log.verifier, store) as v:
            with pytest.raises(BadTileError) as err:
                await v.checkpoint()
        assert err.value.finding.evidence["tile"] == "tile/0/002"
        assert b"\n600\n" in (store.get(log.key.name) or b"")
    finally:
        await log.stop()


async def test_checkpoint_store_contract(tmp_path: Path) -> None:
    """Every CheckpointStore: None on first use, the last note put, per origin."""
    monitor = await MonitorState.open(tmp_path / "monitor.db")
    try:
        for origin in ("a.example/log", "b.example/log"):
            await monitor.log(origin, Signer.generate(origin).vkey, "")
        stores: list[CheckpointStore] = [
            FileCheckpointStore(tmp_path / "files"),
            MemoryCheckpointStore(),
            monitor,
        ]
        for store in stores:
            assert store.get("a.example/log") is None, store
            a = SimulatedLog(Signer.generate("a.example/log"))
            b = SimulatedLog(Signer.generate("b.example/log"))
            store.put("a.example/log", _grow(a, 1))
            store.put("b.example/log", _grow(b, 2))
            latest = _grow(a, 2)
            store.put("a.example/log", latest)
            assert store.get("a.example/log") == latest, store
            assert store.get("b.example/log") == b.note, store
    finally:
        await monitor.close()
