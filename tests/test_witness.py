"""The witness (c2sp.org/tlog-witness): a real `sigledger witness serve` subprocess.

One witness process serves most tests; each test drives its own log (its own
origin), so the tests do not share state. The litewitness request sequence
(tests/vectors/witness.json, SPECS.md 6.8) is replayed byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import platformdirs
import pytest

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import (
    Checkpoint,
    format_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from sigledger.ledger.errors import ConfigError
from sigledger.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    format_note,
    open_note,
    parse_note,
    sign_note,
    verify_cosignature,
)
from sigledger.ledger.service.sqlite import StorageLockedError
from sigledger.ledger.witness.config import WitnessConfig, load_witness_config
from sigledger.ledger.witness.store import WitnessStore
from sigledger.ledger.witnessproto import (
    SIZE_CONTENT_TYPE,
    AddCheckpointRequest,
    format_add_checkpoint,
    parse_cosignature_lines,
    parse_size_body,
)
from tests.helpers import WitnessProcess, run_cli
from tests.memtree import MemoryTree

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "witness.json").read_text(encoding="utf-8")
)
WITNESS_NAME = VECTORS["witness_name"]
MAX_REQUEST_BYTES = 64 * 1024


class FakeLog:
    """A log for tests: a deterministic key and a tree of 64 synthetic leaves."""

    def __init__(self, origin: str, seed: int, key_name: str | None = None) -> None:
        self.origin = origin
        self.signer = Signer.from_seed(key_name or origin, bytes([seed]) * 32)
        self.tree = MemoryTree(merkle.leaf_hash(b"%s %d" % (origin.encode(), i)) for i in range(64))

    @property
    def vkey(self) -> str:
        return self.signer.vkey

    def text(self, size: int, root: bytes | None = None) -> str:
        root = self.tree.root(size) if root is None else root
        return format_checkpoint(Checkpoint(self.origin, size, root))

    def note(self, size: int, root: bytes | None = None, signer: Signer | None = None) -> bytes:
        root = self.tree.root(size) if root is None else root
        return sign_checkpoint(Checkpoint(self.origin, size, root), signer or self.signer)

    def body(
        self,
        old: int,
        size: int,
        proof: Sequence[bytes] | None = None,
        note: bytes | None = None,
    ) -> bytes:
        if proof is None:
            proof = self.tree.prove_consistency(old, size) if old else []
        return format_add_checkpoint(
            AddCheckpointRequest(old, tuple(proof), note if note is not None else self.note(size))
        )


LOGS = {
    name: FakeLog(f"example.org/{name}", seed)
    for seed, name in enumerate(["resubmit", "hostile", "zero", "race", "keys", "metrics"], start=1)
}
# A log whose key name is not its origin (configured with origin = "...").
RENAMED = FakeLog("example.org/renamed origin", 40, key_name="example.org/renamed-key")
# A log rotating its key: two trusted keys for one origin.
ROTATING_OLD = FakeLog("example.org/rotating", 41)
ROTATING_NEW = FakeLog("example.org/rotating", 42)


def _config_text(data: Path) -> str:
    logs = [VECTORS["log"]["vkey"], *(log.vkey for log in LOGS.values())]
    parts = [
        f'name = "{WITNESS_NAME}"\n',
        f"max_request_bytes = {MAX_REQUEST_BYTES}\n",
        f'key_file = "{data / "cosigner.key"}"\n',
    ]
    parts += [f'[[log]]\nkey = "{vkey}"\n' for vkey in logs]
    parts.append(f'[[log]]\nkey = "{RENAMED.vkey}"\norigin = "{RENAMED.origin}"\n')
    parts += [f'[[log]]\nkey = "{log.vkey}"\n' for log in (ROTATING_OLD, ROTATING_NEW)]
    return "".join(parts)


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WitnessProcess]:
    base = tmp_path_factory.mktemp("witness")
    config = base / "witness.toml"
    config.write_text(_config_text(base / "w"))
    proc = WitnessProcess(base / "w", "--config", str(config)).start()
    try:
        yield proc
    finally:
        proc.kill()


class Answer:
    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<{self.status} {self.content_type!r} {self.body[:200]!r}>"


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> Answer:
    async with session.post(url + "/add-checkpoint", data=io.BytesIO(body)) as r:
        return Answer(r.status, await r.read(), r.headers.get("Content-Type", ""))


def check_cosignature(answer: Answer, witness_vkey: str, text: str, not_before: float) -> int:
    """The timestamp of the single valid cosignature in a 200 answer."""
    assert answer.status == 200, answer
    assert answer.content_type == "text/plain; charset=utf-8"
    sigs = parse_cosignature_lines(answer.body)
    assert len(sigs) == 1
    verifier = Verifier.from_vkey(witness_vkey)
    assert verifier.alg == ALG_COSIGNATURE_V1
    timestamp = verify_cosignature(verifier, text, sigs[0])
    assert timestamp is not None, "cosignature does not verify"
    assert int(not_before) - 1 <= timestamp <= time.time() + 1
    return timestamp


def check_conflict(answer: Answer, size: int) -> None:
    assert answer.status == 409, answer
    assert answer.content_type == SIZE_CONTENT_TYPE
    assert answer.body == b"%d\n" % size
    assert parse_size_body(answer.body, answer.content_type) == size


async def stored_size(session: aiohttp.ClientSession, url: str, log: FakeLog) -> int:
    """The witness's size for ``log``, read without changing anything (the
    log is never at size 0 when this is used, so 'old 0' always conflicts)."""
    answer = await post(session, url, log.body(0, 1))
    assert answer.status == 409, answer
    return parse_size_body(answer.body, answer.content_type)


# -- the litewitness sequence ------------------------------------------------------


def test_vectors_are_self_consistent() -> None:
    log = VECTORS["log"]
    verifier = Verifier.from_vkey(log["vkey"])
    assert verifier.public_key.hex() == log["public_key_hex"]
    assert f"{verifier.key_id:08x}" == log["key_id"]
    assert verifier.name == log["origin"]
    tree = MemoryTree(bytes.fromhex(h) for h in VECTORS["leaf_hashes_hex"])
    for cp in VECTORS["checkpoints"]:
        note, _ = open_note(cp["note"], [verifier])
        parsed = parse_checkpoint(note.text)
        assert parsed.root == tree.root(cp["size"]) == base64.b64decode(cp["root"])
    for req in VECTORS["requests"]:
        if req["expected_status"] in (200, 409):
            cp = parse_checkpoint(parse_note(req["checkpoint"]).text)
            proof = [base64.b64decode(h) for h in req["proof"]]
            if req["old"]:
                assert proof == tree.prove_consistency(req["old"], cp.size), req["step"]


async def test_litewitness_sequence(witness: WitnessProcess) -> None:
    assert Verifier.from_vkey(witness.vkey).name == WITNESS_NAME
    started = time.time()
    async with aiohttp.ClientSession() as session:
        for req in VECTORS["requests"]:
            body = (
                b"old %d\n" % req["old"]
                + b"".join(h.encode() + b"\n" for h in req["proof"])
                + b"\n"
                + req["checkpoint"].encode()
            )
            answer = await post(session, witness.url, body)
            where = f"step {req['step']}: {req['summary']}: {answer!r}"
            assert answer.status == req["expected_status"], where
            if "expected_body" in req:
                assert answer.body == req["expected_body"].encode(), where
                assert answer.content_type == req["expected_content_type"], where
            if "expected_body_contains" in req:
                assert req["expected_body_contains"].encode() in answer.body, where
            if answer.status == 200:
                text = parse_note(req["checkpoint"]).text
                check_cosignature(answer, witness.vkey, text, started)

        # The monitoring endpoint serves the size-5 checkpoint, with the log's
        # signature and the witness's cosignature.
        origin = VECTORS["log"]["origin"]
        path = hashlib.sha256(origin.encode()).hexdigest()
        async with session.get(f"{witness.url}/{path}/checkpoint") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
            served = await r.read()
        log_key = Verifier.from_vkey(VECTORS["log"]["vkey"])
        note, verified = open_note(served, [log_key, Verifier.from_vkey(witness.vkey)])
        assert parse_checkpoint(note.text).size == 5
        assert len(verified) == 2
        async with session.get(f"{witness.url}/{'0' * 64}/checkpoint") as r:
            assert r.status == 404


async def test_resubmitting_the_same_checkpoint_gets_a_fresh_cosignature(
    witness: WitnessProcess,
) -> None:
    log = LOGS["resubmit"]
    started = time.time()
    async with aiohttp.ClientSession() as session:
        first = await post(session, witness.url, log.body(0, 7))
        t1 = check_cosignature(first, witness.vkey, log.text(7), started)
        again = await post(session, witness.url, log.body(7, 7))
        t2 = check_cosignature(again, witness.vkey, log.text(7), started)
        assert t2 >= t1
        # Not with a proof, and not with another root for that size.
        answer = await post(session, witness.url, log.body(7, 7, [log.tree.root(3)]))
        assert answer.status == 422, answer
        # The note may already carry other signatures (unknown keys are
        # ignored), e.g. this witness's own earlier cosignature.
        cosig = parse_cosignature_lines(first.body)[0]
        note = parse_note(log.note(7))
        cosigned = format_note(Note(note.text, (*note.signatures, cosig)))
        answer = await post(session, witness.url, log.body(7, 7, note=cosigned))
        check_cosignature(answer, witness.vkey, log.text(7), started)
        assert await stored_size(session, witness.url, log) == 7


async def test_key_rotation_and_origin_other_than_key_name(witness: WitnessProcess) -> None:
    started = time.time()
    async with aiohttp.ClientSession() as session:
        answer = await post(session, witness.url, RENAMED.body(0, 2))
        check_cosignature(answer, witness.vkey, RENAMED.text(2), started)
        # A checkpoint with that key but the key name as origin: unknown log.
        other = FakeLog("example.org/renamed-key", 40)
        answer = await post(session, witness.url, other.body(0, 2))
        assert answer.status == 404, answer

        # Either key of a rotating log works, and both together.
        answer = await post(session, witness.url, ROTATING_OLD.body(0, 2))
        check_cosignature(answer, witness.vkey, ROTATING_OLD.text(2), started)
        answer = await post(session, witness.url, ROTATING_NEW.body(2, 4))
        check_cosignature(answer, witness.vkey, ROTATING_OLD.text(4), started)
        text = ROTATING_OLD.text(6)
        both = sign_note(text, [ROTATING_OLD.signer, ROTATING_NEW.signer])
        answer = await post(session, witness.url, ROTATING_OLD.body(4, 6, note=both))
        check_cosignature(answer, witness.vkey, text, started)
        # ... but a bad signature by either trusted key is refused.
        good, bad = parse_note(both).signatures
        forged = NoteSignature(bad.name, bad.key_id, bytes(64))
        note = format_note(Note(text, (good, forged)))
        answer = await post(session, witness.url, ROTATING_OLD.body(6, 6, note=note))
        assert answer.status == 403, answer


# -- hostile requests ------------------------------------------------------------------


async def test_hostile_requests_never_change_state(witness: WitnessProcess) -> None:
    log = LOGS["hostile"]
    url = witness.url
    started = time.time()
    intruder = Signer.from_seed(log.origin, bytes([99]) * 32)
    stranger = FakeLog("example.org/not-witnessed", 77)
    proof = log.tree.prove_consistency(7, 13)
    valid = log.body(7, 13)
    other_root = hashlib.sha256(b"another tree").digest()
    # The log's name and key ID, but a signature by another key.
    forged = NoteSignature(log.origin, log.signer.key_id, intruder.sign(log.text(13).encode()))
    forged_note = format_note(Note(log.text(13), (forged,)))
    # 32 bytes leave 2 unused bits in the last base64 digit: "B" sets one.
    b64_hash = base64.b64encode(proof[0])
    non_canonical_proof = valid.replace(b64_hash, b64_hash[:-2] + b"B=", 1)
    unsigned_note = log.text(13).encode() + b"\n"

    cases: list[tuple[str, bytes, int]] = [
        ("proof missing its last hash", log.body(7, 13, proof[:-1]), 422),
        ("proof with one hash too many", log.body(7, 13, [*proof, proof[0]]), 422),
        ("proof hashes swapped", log.body(7, 13, [proof[1], proof[0], *proof[2:]]), 422),
        ("no proof", log.body(7, 13, []), 422),
        ("63 proof lines", log.body(7, 13, [proof[0]] * 63), 422),
        ("64 proof lines", b"old 7\n" + (b64_hash + b"\n") * 64 + b"\n" + log.note(13), 400),
        ("old > size", log.body(8, 7, []), 400),
        ("replayed older checkpoint (old 0)", log.body(0, 5), 409),
        ("replayed older checkpoint (old 5)", log.body(5, 7), 409),
        ("same size, another root", log.body(7, 7, [], log.note(7, other_root)), 422),
        ("larger size, another root", log.body(7, 13, proof, log.note(13, other_root)), 422),
        ("unknown origin", stranger.body(0, 3), 404),
        (
            "signed by another key with the log's name",
            log.body(7, 13, proof, log.note(13, signer=intruder)),
            403,
        ),
        ("forged signature under the log's key ID", log.body(7, 13, proof, forged_note), 403),
        ("signature line with a hyphen", valid.replace(b"\n\n\xe2\x80\x94", b"\n\n-", 1), 403),
        ("no signature lines", log.body(7, 13, proof, unsigned_note), 403),
        ("old with a leading zero", valid.replace(b"old 7", b"old 07", 1), 400),
        ("old with a plus sign", valid.replace(b"old 7", b"old +7", 1), 400),
        ("old with a trailing space", valid.replace(b"old 7", b"old 7 ", 1), 400),
        ("old with two spaces", valid.replace(b"old 7", b"old  7", 1), 400),
        ("OLD in capitals", valid.replace(b"old 7", b"OLD 7", 1), 400),
        ("CRLF line ends", valid.replace(b"\n", b"\r\n"), 400),
        ("non-canonical base64 proof line", non_canonical_proof, 400),
        ("unpadded base64 proof line", valid.replace(b64_hash, b64_hash[:-1], 1), 400),
        ("33-byte proof line", valid.replace(b64_hash, base64.b64encode(bytes(33)), 1), 400),
        ("no empty line before the checkpoint", valid.replace(b"\n\n", b"\n", 1), 400),
        ("size with a leading zero", valid.replace(b"\n13\n", b"\n013\n", 1), 400),
        ("empty body", b"", 400),
        ("no checkpoint", b"old 7\n\n", 400),
        ("not UTF-8", valid.replace(b"example.org", b"example\xff.org", 1), 400),
        ("body over the limit", b"old 7\n" + b"A" * MAX_REQUEST_BYTES, 413),
    ]
    async with aiohttp.ClientSession() as session:
        answer = await post(session, url, log.body(0, 7))
        check_cosignature(answer, witness.vkey, log.text(7), started)
        for what, body, expected in cases:
            answer = await post(session, url, body)
            assert answer.status == expected, f"{what}: {answer!r}"
            if expected == 409:
                check_conflict(answer, 7)
            assert await stored_size(session, url, log) == 7, what
        # Every truncation of a valid request is refused as malformed (or, once
        # the checkpoint text is complete, as unsigned).
        for cut in range(len(valid)):
            answer = await post(session, url, valid[:cut])
            assert answer.status in (400, 403), (cut, answer)
        # A much larger body: refused (the server may close the connection).
        try:
            answer = await post(session, url, valid + b"x" * (4 * 1024 * 1024))
            assert answer.status == 413, answer
        except aiohttp.ClientError:
            pass
        async with session.get(url + "/add-checkpoint") as r:
            assert r.status == 405
        # After all that, the valid request works and moves the state.
        assert await stored_size(session, url, log) == 7
        answer = await post(session, url, valid)
        check_cosignature(answer, witness.vkey, log.text(13), started)
        assert await stored_size(session, url, log) == 13
    # The correctly signed but inconsistent checkpoints were kept as evidence,
    # next to the checkpoint the witness had cosigned.
    db = sqlite3.connect(f"file:{witness.data / 'witness.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT reason, stored_size, stored_note, request FROM evidence WHERE origin = ?",
            (log.origin,),
        ).fetchall()
    finally:
        db.close()
    reasons = {r[0]: r for r in rows}
    assert set(reasons) == {"root_mismatch", "bad_proof"}
    _, size, stored_note, request = reasons["root_mismatch"]
    assert size == 7
    assert parse_checkpoint(parse_note(stored_note).text).root == log.tree.root(7)
    assert request == log.body(7, 7, [], log.note(7, other_root))


async def test_size_zero_rules(witness: WitnessProcess) -> None:
    log = LOGS["zero"]
    started = time.time()
    async with aiohttp.ClientSession() as session:
        bad_empty = log.body(0, 0, [], log.note(0, hashlib.sha256(b"x").digest()))
        assert (await post(session, witness.url, bad_empty)).status == 422
        from_zero_with_proof = log.body(0, 5, [log.tree.root(1)])
        assert (await post(session, witness.url, from_zero_with_proof)).status == 422
        # Nothing stored yet: "old 1" conflicts with size 0.
        check_conflict(await post(session, witness.url, log.body(1, 5)), 0)
        answer = await post(session, witness.url, log.body(0, 0))
        check_cosignature(answer, witness.vkey, log.text(0), started)
        answer = await post(session, witness.url, log.body(0, 0))  # again: fresh cosignature
        check_cosignature(answer, witness.vkey, log.text(0), started)
        answer = await post(session, witness.url, log.body(0, 5))
        check_cosignature(answer, witness.vkey, log.text(5), started)
        check_conflict(await post(session, witness.url, log.body(0, 0)), 5)


# -- concurrency -----------------------------------------------------------------------


async def test_concurrent_advances_exactly_one_wins(witness: WitnessProcess) -> None:
    log = LOGS["race"]
    started = time.time()
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:
        check_cosignature(
            await post(session, witness.url, log.body(0, 3)), witness.vkey, log.text(3), started
        )
        size = 3
        for _round in range(3):
            targets = list(range(size + 1, size + 31))
            answers = await asyncio.gather(
                *(post(session, witness.url, log.body(size, t)) for t in targets)
            )
            winners = [t for t, a in zip(targets, answers, strict=True) if a.status == 200]
            assert len(winners) == 1, answers
            winner = winners[0]
            for t, a in zip(targets, answers, strict=True):
                if t == winner:
                    check_cosignature(a, witness.vkey, log.text(t), started)
                else:
                    check_conflict(a, winner)
            size = winner
            assert await stored_size(session, witness.url, log) == size
        # The same request many times at once: still one winner.
        answers = await asyncio.gather(
            *(post(session, witness.url, log.body(size, size + 1)) for _ in range(20))
        )
        assert sorted(a.status for a in answers) == [200] + [409] * 19
        size += 1
        # Losers of the races, replayed late, cannot roll the state back.
        for old in (3, size - 1):
            check_conflict(await post(session, witness.url, log.body(old, size - 1)), size)
        assert await stored_size(session, witness.url, log) == size


async def test_metrics_and_health(witness: WitnessProcess) -> None:
    log = LOGS["metrics"]
    async with aiohttp.ClientSession() as session:
        assert (await post(session, witness.url, log.body(0, 2))).status == 200
        assert (await post(session, witness.url, log.body(0, 2))).status == 409
        async with session.get(witness.url + "/healthz") as r:
            assert r.status == 200
            health = await r.json()
        assert health["status"] == "ok"
        assert health["vkey"] == witness.vkey
        assert log.origin in health["logs"]
        async with session.get(witness.url + "/metrics") as r:
            assert r.status == 200
            text = (await r.read()).decode()
    assert f'sigledger_witness_cosignatures_total{{origin="{log.origin}"}} 1.0' in text
    assert f'sigledger_witness_tree_size{{origin="{log.origin}"}} 2.0' in text
    assert 'sigledger_witness_refused_total{reason="conflict"}' in text
    assert re.search(
        r'sigledger_witness_http_requests_total\{code="200",route="/add-checkpoint"\} \d', text
    )


# -- restart, key and lock ---------------------------------------------------------------


async def test_restart_keeps_state_and_key(tmp_path: Path) -> None:
    log = FakeLog("example.org/restart", 50)
    data = tmp_path / "w"
    proc = WitnessProcess(data, "--log", log.vkey, "--name", "example.org/w1").start()
    started = time.time()
    try:
        async with aiohttp.ClientSession() as session:
            for old, new in ((0, 1), (1, 3), (3, 5)):
                answer = await post(session, proc.url, log.body(old, new))
                check_cosignature(answer, proc.vkey, log.text(new), started)
        # A second witness on the same data directory is refused (lock).
        second = run_cli("witness", "serve", "--data", str(data), "--listen", "127.0.0.1:0")
        assert second.returncode != 0
        assert "in use" in second.stderr
    finally:
        assert proc.stop() == 0
    vkey = proc.vkey
    assert Verifier.from_vkey(vkey).name == "example.org/w1"
    assert (data / "witness.key").stat().st_mode & 0o777 == 0o600

    proc = WitnessProcess(data, "--log", log.vkey).start()
    try:
        assert proc.vkey == vkey
        async with aiohttp.ClientSession() as session:
            check_conflict(await post(session, proc.url, log.body(1, 3)), 5)
            check_conflict(await post(session, proc.url, log.body(0, 1)), 5)
            answer = await post(session, proc.url, log.body(5, 9))
            check_cosignature(answer, vkey, log.text(9), started)
    finally:
        proc.kill()  # kill -9: acknowledged state must survive that too

    proc = WitnessProcess(data, "--log", log.vkey).start()
    try:
        async with aiohttp.ClientSession() as session:
            check_conflict(await post(session, proc.url, log.body(5, 9)), 9)
    finally:
        assert proc.stop() == 0

    # Another key for the same state: refused.
    key = data / "witness.key"
    original = key.read_text()
    key.write_text(Signer.generate("example.org/w1", ALG_COSIGNATURE_V1).skey + "\n")
    r = run_cli("witness", "serve", "--data", str(data), "--listen", "127.0.0.1:0", timeout=20)
    assert r.returncode != 0
    assert "refusing to start" in r.stderr
    # A log (type 0x01) key as the witness key: refused.
    key.write_text(Signer.generate("example.org/w1").skey + "\n")
    r = run_cli("witness", "serve", "--data", str(data), "--listen", "127.0.0.1:0", timeout=20)
    assert r.returncode != 0
    assert "type 0x01" in r.stderr
    # No key at all: refused, not silently replaced.
    key.unlink()
    r = run_cli("witness", "serve", "--data", str(data), "--listen", "127.0.0.1:0", timeout=20)
    assert r.returncode != 0
    assert "missing" in r.stderr
    key.write_text(original)
    os.chmod(key, 0o600)


# -- the state database ---------------------------------------------------------------------


async def test_store_compare_and_swap(tmp_path: Path) -> None:
    roots = [hashlib.sha256(b"%d" % i).digest() for i in range(40)]
    store = await WitnessStore.open(tmp_path / "w.db")
    try:
        with pytest.raises(StorageLockedError):
            await WitnessStore.open(tmp_path / "w.db")
        assert await store.get("o") is None
        assert not await store.compare_and_swap("o", 2, 3, roots[3], b"n")
        assert await store.compare_and_swap("o", 0, 2, roots[2], b"n2")
        assert not await store.compare_and_swap("o", 0, 5, roots[5], b"n5")
        assert await store.get("o") == (2, roots[2])
        assert not await store.compare_and_swap("o", 2, 4, roots[4], b"n", old_root=roots[9])
        results = await asyncio.gather(
            *(store.compare_and_swap("o", 2, n, roots[n], b"n") for n in range(3, 40))
        )
        assert sum(results) == 1
        winner = 3 + results.index(True)
        assert await store.get("o") == (winner, roots[winner])
        with pytest.raises(ValueError, match="from size"):
            await store.compare_and_swap("o", winner, 2, roots[2], b"n")
        head = await store.get_head("o")
        assert head is not None and head.note == b"n"
        # Evidence: deduplicated per checkpoint text, bounded, conclusive rows kept.
        for i in range(5):
            await store.record_evidence(
                "o", "bad_proof", f"t{i}\n", head, b"r", priority=0, max_rows=3
            )
        await store.record_evidence("o", "root_mismatch", "x\n", head, b"r", priority=1, max_rows=3)
        for _ in range(3):
            await store.record_evidence(
                "o", "bad_proof", "t9\n", None, b"r", priority=0, max_rows=3
            )
        rows = await store.evidence()
        assert len(rows) == 3
        assert [r.reason for r in rows].count("root_mismatch") == 1
        assert max(r.count for r in rows) == 3
    finally:
        await store.close()
    store = await WitnessStore.open(tmp_path / "w.db")
    try:
        assert await store.get("o") == (winner, roots[winner])
    finally:
        await store.close()


# -- configuration ----------------------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = load_witness_config(environ={})
    assert cfg == WitnessConfig()
    assert cfg.listen == "127.0.0.1:8081"
    assert cfg.name == "localhost/witness"
    data = Path(platformdirs.user_data_dir("sigledger")) / "witness"
    assert data.is_relative_to(os.environ["XDG_DATA_HOME"])  # see conftest
    assert cfg.key_path == data / "witness.key"
    assert cfg.db_path == data / "witness.db"
    assert cfg.max_request_bytes == 64 * 1024
    assert cfg.logs == []


def test_config_precedence_and_logs(tmp_path: Path) -> None:
    a, b = LOGS["keys"], RENAMED
    f = tmp_path / "w.toml"
    f.write_text(
        f'data = "from-file"\nlisten = "127.0.0.1:1"\nmax-request-bytes = 2048\n'
        f'[[log]]\nkey = "{a.vkey}"\n[[log]]\nkey = "{b.vkey}"\norigin = "{b.origin}"\n'
    )
    cfg = load_witness_config(str(f), environ={})
    assert (cfg.data, cfg.listen, cfg.max_request_bytes) == ("from-file", "127.0.0.1:1", 2048)
    logs = cfg.log_verifiers()
    assert set(logs) == {a.origin, b.origin}
    assert logs[b.origin][0].vkey == b.vkey
    env = {"SIGLEDGER_WITNESS_LISTEN": "127.0.0.1:2", "SIGLEDGER_WITNESS_NAME": "example.org/w"}
    cfg = load_witness_config(str(f), environ=env)
    assert (cfg.listen, cfg.name, cfg.data) == ("127.0.0.1:2", "example.org/w", "from-file")
    cfg = load_witness_config(
        str(f), {"listen": "127.0.0.1:3", "data": None, "logs": [a.vkey]}, environ=env
    )
    assert cfg.listen == "127.0.0.1:3"
    assert set(cfg.log_verifiers()) == {a.origin}
    cfg = load_witness_config(environ={"SIGLEDGER_WITNESS_CONFIG": str(f)})
    assert cfg.data == "from-file"


@pytest.mark.parametrize(
    ("text", "env", "match"),
    [
        ('listn = "x"\n', {}, "unknown setting 'listn'"),
        ('logs = ["x"]\n', {}, "unknown setting 'logs'"),
        ("max_request_bytes = 'many'\n", {}, "invalid value"),
        ("max_request_bytes = true\n", {}, "invalid value"),
        ("max_request_bytes = 10\n", {}, "at least 1024"),
        ('listen = "nowhere"\n', {}, "HOST:PORT"),
        ('name = "has space"\n', {}, "witness name"),
        ('log_format = "xml"\n', {}, "log_format"),
        ('log_level = "loud"\n', {}, "log_level"),
        ('[[log]]\nkey = "nonsense"\n', {}, "not a verifier key"),
        ('[[log]]\norigin = "x"\n', {}, "needs key"),
        (f'[[log]]\nkey = "{RENAMED.vkey}"\nurl = "x"\n', {}, "unknown setting"),
        ('log = "x"\n', {}, "array of tables"),
        ("not toml [", {}, "invalid TOML"),
        ("", {"SIGLEDGER_WITNESS_MAX_REQUEST_BYTES": "lots"}, "SIGLEDGER_WITNESS_MAX_REQUEST"),
    ],
)
def test_invalid_config_is_refused(
    tmp_path: Path, text: str, env: dict[str, str], match: str
) -> None:
    f = tmp_path / "w.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_witness_config(str(f), environ=env)


def test_config_refuses_cosigner_keys_and_deduplicates() -> None:
    cosigner = Signer.from_seed("example.org/log", bytes(32), ALG_COSIGNATURE_V1)
    with pytest.raises(ConfigError, match="type 0x04"):
        load_witness_config(overrides={"logs": [cosigner.vkey]}, environ={})
    one = Signer.from_seed("example.org/log", bytes([1]) * 32, ALG_ED25519)
    two = Signer.from_seed("example.org/log", bytes([2]) * 32, ALG_ED25519)
    cfg = load_witness_config(overrides={"logs": [one.vkey, two.vkey, one.vkey]}, environ={})
    assert [v.vkey for v in cfg.log_verifiers()["example.org/log"]] == [one.vkey, two.vkey]
