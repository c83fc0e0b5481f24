"""`sigledger monitor` against real logs: healthy ones, and broken ones that must alarm.

Every broken log produces exactly the alarms it deserves, and each alarm's evidence is
checked here independently of the monitor (signed notes, RFC 6962 proofs, entry codec).
Broken logs are made three ways: by editing a stopped server's database, by running two
servers with one key (a fork), and by serving a hand-made history from a simulated
tlog-tiles log (:class:`tests.simulator.SimulatedLog`), for what the real server refuses
to log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sigledger.client.remote import LogClient
from sigledger.client.tiles import node_inclusion_nodes, prove_node_inclusion
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import (
    Checkpoint,
    open_checkpoint,
)
from sigledger.ledger.entry import Entry, SignedStatement, decode_entry, encode_entry
from sigledger.ledger.errors import FormatError, VerificationError
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Signer, Verifier
from tests.helpers import LogProcess, sigledger_cmd, signed, tree_env
from tests.memtree import MemoryTree
from tests.simulator import SimulatedLog

ALICE = Signer.from_seed("alice@example.org", bytes([11]) * 32)
BOB = Signer.from_seed("bob@example.org", bytes([12]) * 32)
CAROL = Signer.from_seed("carol@example.org", bytes([13]) * 32)
TIME_MS = 1_767_225_600_000


# --- helpers (also used by test_fsck.py) ------------------------------------------


def entry_bytes(
    signer: Signer,
    project: str,
    version: str,
    content: bytes = b"x",
    kind: str = "whl",
    *,
    bad_signature: bool = False,
) -> bytes:
    """A logged entry (leaf bytes), optionally with a broken publisher signature."""
    s = signed(signer, project, version, content, kind)
    if bad_signature:
        s = SignedStatement(
            s.statement, s.key_name, s.public_key, bytes([s.signature[0] ^ 1]) + s.signature[1:]
        )
    return encode_entry(Entry(s, TIME_MS))


class Webhook:
    """Collects the JSON bodies POSTed to it (127.0.0.1, free port)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _post(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.Response(status=204)

    async def start(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def run_sigledger(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run the CLI without blocking the event loop (in-test servers keep serving)."""
    proc = await asyncio.create_subprocess_exec(
        *sigledger_cmd(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=tree_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def monitor(state: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """``sigledger monitor --once``: exit code, alarms (parsed JSON lines), stderr."""
    rc, out, err = await run_sigledger("monitor", "--once", "--state", str(state), *args)
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()], err


def follow_args(url: str, vkey: str) -> list[str]:
    return ["--log", url, "--log-key", vkey]


def b64d(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def checked_alarm(alarm: dict[str, Any], key: Verifier) -> tuple[Checkpoint, dict[str, Any]]:
    """Schema checks, and the signed checkpoint the evidence is against."""
    assert set(alarm) == {"version", "type", "log", "time", "message", "evidence"}
    assert alarm["version"] == 1
    assert alarm["log"] == key.name
    assert alarm["time"].endswith("Z")
    evidence = alarm["evidence"]
    assert evidence["log_key"] == key.vkey
    cp, _ = open_checkpoint(evidence["checkpoint"].encode(), key, key.name)
    return cp, evidence


def checked_entry(item: dict[str, Any], cp: Checkpoint) -> Entry:
    """An entry of the evidence, proven in the tree of ``cp``, decoded."""
    data = b64d(item["entry"])
    proof = [b64d(h) for h in item["inclusion_proof"]]
    merkle.check_inclusion(item["index"], cp.size, merkle.leaf_hash(data), proof, cp.root)
    return decode_entry(data)


async def add(url: str, statements: list[SignedStatement]) -> None:
    async with LogClient(url) as log:
        for i in range(0, len(statements), 1000):
            await log.add(statements[i : i + 1000])


def filler(n: int, start: int = 0, project: str = "filler") -> list[SignedStatement]:
    """``n`` statements of ``project``: versions start/2, start/2+1, ..., a wheel then an
    sdist each, signed in turn by alice, bob and carol (all with the same content)."""
    signers = (ALICE, BOB, CAROL)
    return [
        signed(signers[j % 3], project, f"{j // 2}.0", kind=("whl", "sdist")[j % 2])
        for j in range(start, start + n)
    ]


@pytest.fixture
def servers() -> Iterator[list[LogProcess]]:
    started: list[LogProcess] = []
    yield started
    for s in started:
        s.kill()


# --- pure pieces ----------------------------------------------------------------------


def test_node_inclusion_proofs_match_the_tree() -> None:
    for size in [1, 2, 3, 5, 8, 13, 64, 100, 255, 256, 257, 300, 513]:
        tree = MemoryTree(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size))
        root = tree.root()
        for level in range(10):
            for index in range(size >> level):
                asked: set[tuple[int, int]] = set()

                def get(lv: int, i: int, asked: set[tuple[int, int]] = asked) -> bytes:
                    asked.add((lv, i))
                    return tree.node(lv, i)

                m, proof = prove_node_inclusion(level, index, size, get)
                merkle.check_inclusion(index, m, tree.node(level, index), proof, root)
                assert asked <= set(node_inclusion_nodes(level, index, size))
                if proof:
                    with pytest.raises(VerificationError):
                        merkle.check_inclusion(index, m, tree.node(level, index), proof[1:], root)


# --- healthy logs ---------------------------------------------------------------------


async def test_healthy_log_gives_no_alarm_and_resumes(
    tmp_path: Path, servers: list[LogProcess]
) -> None:
    log = LogProcess(tmp_path / "log").start()
    servers.append(log)
    # Two signers attesting the same hash for one file agree: that is no conflict.
    await add(log.url, [*filler(600), signed(BOB, "filler", "0.0", kind="whl")])
    state = tmp_path / "monitor.db"
    rc, alarms, err = await monitor(state, *follow_args(log.url, log.vkey))
    assert (rc, alarms) == (0, []), err
    assert "verified tree size 601" in err

    await add(log.url, filler(250, start=600))
    rc, alarms, err = await monitor(state, *follow_args(log.url, log.vkey))
    assert (rc, alarms) == (0, []), err
    rc, alarms, err = await monitor(state, *follow_args(log.url, log.vkey))
    assert (rc, alarms) == (0, []), err
    assert "(+0 entries, 0 alarms)" in err

    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT idx, project, signer FROM entry_index ORDER BY idx").fetchall()
        size, indexed = db.execute("SELECT size, indexed FROM logs").fetchone()
    assert [r[0] for r in rows] == list(range(851))
    assert (size, indexed) == (851, 851)
    assert rows[600] == (600, "filler", BOB.vkey)


async def test_watched_project_new_release_and_new_signer(
    tmp_path: Path, servers: list[LogProcess]
) -> None:
    log = LogProcess(tmp_path / "log").start()
    servers.append(log)
    key = Verifier.from_vkey(log.vkey)
    hook = await Webhook().start()
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'version = 1\n[[log]]\nurl = "{log.url}"\nkey = "{log.vkey}"\n'
        f'[project."watched-pkg"]\nsigners = ["{ALICE.vkey}"]\n'
    )
    state = tmp_path / "monitor.db"
    args = ["--policy", str(policy), "--webhook", hook.url]
    try:
        await add(log.url, [*filler(20), signed(ALICE, "watched-pkg", "1.0")])
        rc, alarms, err = await monitor(state, *args)
        assert rc == 1, err
        assert [(a["type"], a["evidence"]["entry"]["index"]) for a in alarms] == [
            ("new_release", 20),
            ("new_signer", 20),
        ]
        assert alarms[1]["evidence"]["trusted_by_policy"] is True

        # A new version by the known signer: exactly one new_release.
        await add(log.url, [*filler(5, start=20), signed(ALICE, "watched-pkg", "2.0")])
        rc, alarms, err = await monitor(state, *args)
        assert rc == 1, err
        assert [a["type"] for a in alarms] == ["new_release"]
        cp, ev = checked_alarm(alarms[0], key)
        entry = checked_entry(ev["entry"], cp)
        assert (
            (entry.statement.project, entry.statement.version)
            == ("watched-pkg", "2.0")
            == (ev["project"], ev["version"])
        )
        assert entry.signed.signer_vkey() == ALICE.vkey == ev["signer"]
        assert ev["entry"]["index"] == 26

        # Another signer's first file for it (the sdist of 2.0): exactly one new_signer.
        await add(log.url, [signed(BOB, "watched-pkg", "2.0", kind="sdist")])
        rc, alarms, err = await monitor(state, *args)
        assert rc == 1, err
        assert [a["type"] for a in alarms] == ["new_signer"]
        cp, ev = checked_alarm(alarms[0], key)
        entry = checked_entry(ev["entry"], cp)
        assert entry.signed.signer_vkey() == BOB.vkey == ev["signer"]
        assert ev["previous_signers"] == [ALICE.vkey]
        assert ev["trusted_by_policy"] is False
        assert ev["entry"]["index"] == 27

        # Quiet again; the webhook got every alarm, in order.
        rc, alarms, err = await monitor(state, *args)
        assert (rc, alarms) == (0, []), err
        assert [a["type"] for a in hook.received] == [
            "new_release",
            "new_signer",
            "new_release",
            "new_signer",
        ]
    finally:
        await hook.stop()


# --- broken logs ----------------------------------------------------------------------


async def test_fork_raises_inconsistent_checkpoints(
    tmp_path: Path, servers: list[LogProcess]
) -> None:
    a = LogProcess(tmp_path / "a").start()
    servers.append(a)
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "log.key", tmp_path / "b" / "log.key")
    b = LogProcess(tmp_path / "b").start()
    servers.append(b)
    assert a.vkey == b.vkey
    key = Verifier.from_vkey(a.vkey)
    await add(a.url, filler(300, project="honest"))
    await add(b.url, filler(400, project="forked"))
    state = tmp_path / "monitor.db"
    # Followed as two mirrors of one log: they must show one history.
    both = [*follow_args(a.url, a.vkey), *follow_args(b.url, b.vkey)]
    # A webhook that is down costs a warning, never the run.
    rc, alarms, err = await monitor(state, *both, "--webhook", "http://127.0.0.1:9/hook")
    assert rc == 4, err
    assert "webhook http://127.0.0.1:9/hook did not take" in err
    assert [a["type"] for a in alarms] == ["inconsistent_checkpoints"]
    assert alarms[0]["evidence"]["log_url"] == b.url
    evidence = alarms[0]["evidence"]
    first, second = evidence["checkpoints"]
    c1, _ = open_checkpoint(first.encode(), key)
    c2, _ = open_checkpoint(second.encode(), key)
    assert (c1.size, c2.size) == (300, 400)
    proof = [b64d(h) for h in evidence["consistency_proof"]]
    assert len(proof) == merkle.consistency_proof_length(300, 400)
    with pytest.raises(VerificationError):
        merkle.check_consistency(c1.size, c2.size, c1.root, c2.root, proof)

    # Raised once; later runs still fail with 4 and say why on stderr.
    rc, alarms, err = await monitor(state, *follow_args(b.url, b.vkey))
    assert (rc, alarms) == (4, []), err
    assert "still inconsistent_checkpoints" in err
    # The honest one alone is fine: the state holds its history.
    rc, alarms, err = await monitor(state, *follow_args(a.url, a.vkey))
    assert (rc, alarms) == (0, []), err


async def test_lagging_mirror_and_rewritten_mirror(tmp_path: Path) -> None:
    log = await SimulatedLog().start()
    mirror = SimulatedLog()
    try:
        log.append(*(entry_bytes(ALICE, "pkg", f"{i}.0") for i in range(300)))
        log.publish()
        mirror = await log.fork().start()
        mirror.serve_stale_checkpoint(200)  # an honest mirror whose /checkpoint lags behind
        state = tmp_path / "monitor.db"
        both = [*follow_args(log.url, log.vkey), *follow_args(mirror.url, mirror.vkey)]
        rc, alarms, err = await monitor(state, *both)
        assert (rc, alarms) == (0, []), err
        assert f"{mirror.url} serves checkpoint 200, older than the verified 300" in err
        # An older checkpoint that is no prefix: signed over a rewritten history.
        rewritten = log.fork()
        rewritten.rewrite(7, entry_bytes(BOB, "pkg", "7.0"))
        mirror.note = rewritten.publish(200)
        rc, alarms, err = await monitor(state, *both)
        assert rc == 4, err
        assert [a["type"] for a in alarms] == ["inconsistent_checkpoints"]
        _, evidence = checked_alarm_notes(alarms[0], log.verifier)
        assert evidence["log_url"] == mirror.url
        first, second = (
            open_checkpoint(n.encode(), log.verifier)[0] for n in evidence["checkpoints"]
        )
        assert (first.size, second.size) == (200, 300)  # older first
        proof = [b64d(h) for h in evidence["consistency_proof"]]
        with pytest.raises(VerificationError):
            merkle.check_consistency(200, 300, first.root, second.root, proof)
    finally:
        await log.stop()
        await mirror.stop()


def checked_alarm_notes(alarm: dict[str, Any], key: Verifier) -> tuple[str, dict[str, Any]]:
    """Schema checks of an alarm whose evidence holds two checkpoints, not one."""
    assert set(alarm) == {"version", "type", "log", "time", "message", "evidence"}
    assert alarm["log"] == key.name
    assert alarm["evidence"]["log_key"] == key.vkey
    return alarm["type"], alarm["evidence"]


async def tampered_log() -> tuple[SimulatedLog, bytes]:
    """A log of 600 entries whose server serves a tampered full tile 0/000 and a
    rewritten entry 300 (a valid entry with another time); returns the rewritten entry.

    A lying server, not a damaged database: sigledger's storage derives level-0 tiles
    from its entries, so its own tiles and entries always agree."""
    log = SimulatedLog()
    entries = [encode_entry(Entry(s, 1_700_000_000_000 + i)) for i, s in enumerate(filler(600))]
    log.append(*entries)
    log.publish()
    log.corrupt("tile/0/000")
    e = decode_entry(entries[300])
    new = encode_entry(Entry(e.signed, e.time_ms + 1))
    bundle = [*entries[256:300], new, *entries[301:512]]
    log.overrides["tile/entries/001"] = tiles.encode_entry_bundle(bundle)
    await log.start()
    return log, new


def check_bad_tile(evidence: dict[str, Any], key: Verifier) -> None:
    """Independent check of the evidence that tile 0/000 does not match the checkpoint."""
    cp, _ = open_checkpoint(evidence["checkpoint"].encode(), key, key.name)
    assert evidence["reason"] == "does_not_match_checkpoint"
    assert evidence["tile"] == "tile/0/000"
    assert evidence["node"] == {"level": 8, "index": 0}
    expected = b64d(evidence["expected_hash"])
    proof = [b64d(h) for h in evidence["inclusion_proof"]]
    merkle.check_inclusion(0, evidence["proof_tree_size"], expected, proof, cp.root)
    assert tiles.hash_from_tile(b64d(evidence["tile_data"]), 0, 256) != expected


def check_leaf_mismatch(evidence: dict[str, Any], key: Verifier, rewritten: bytes) -> None:
    """Independent check of the evidence that entry 300 is not what the log committed to."""
    cp, _ = open_checkpoint(evidence["checkpoint"].encode(), key, key.name)
    assert (evidence["reason"], evidence["index"]) == ("leaf_hash_mismatch", 300)
    assert b64d(evidence["entry"]) == rewritten
    leaf = b64d(evidence["leaf_hash"])
    proof = [b64d(h) for h in evidence["inclusion_proof"]]
    merkle.check_inclusion(300, cp.size, leaf, proof, cp.root)
    assert merkle.leaf_hash(rewritten) != leaf


async def test_tampered_tile_and_rewritten_entry(tmp_path: Path) -> None:
    log, rewritten = await tampered_log()
    key = Verifier.from_vkey(log.vkey)
    state = tmp_path / "monitor.db"
    try:
        rc, alarms, err = await monitor(state, *follow_args(log.url, log.vkey))
    finally:
        await log.stop()
    assert rc == 1, err
    assert [(a["type"], a["evidence"]["reason"]) for a in alarms] == [
        ("bad_tile", "does_not_match_checkpoint"),
        ("bad_entry", "leaf_hash_mismatch"),
    ]
    check_bad_tile(checked_alarm(alarms[0], key)[1], key)
    check_leaf_mismatch(checked_alarm(alarms[1], key)[1], key, rewritten)
    with sqlite3.connect(state) as db:
        indexed = [r[0] for r in db.execute("SELECT idx FROM entries ORDER BY idx")]
    assert indexed == [i for i in range(600) if i != 300]  # tile 0 failed, its entries did not


async def test_forged_history_equivocation_conflict_and_bad_entries(tmp_path: Path) -> None:
    forged = await SimulatedLog().start()
    key = forged.verifier
    state = tmp_path / "monitor.db"
    try:
        first = entry_bytes(ALICE, "pkg", "1.0", b"one")
        forged.append(first, *(entry_bytes(BOB, "other", f"{i}.0") for i in range(299)))
        forged.publish()
        rc, alarms, err = await monitor(state, *follow_args(forged.url, forged.vkey))
        assert (rc, alarms) == (0, []), err

        # What the real server refuses: one signer, two hashes for one file; and entries
        # that do not decode or whose signature fails.
        [eq, cf, garbage, badsig] = forged.append(
            entry_bytes(ALICE, "pkg", "1.0", b"two"),
            entry_bytes(CAROL, "pkg", "1.0", b"three"),
            b"\x93\x01\x02\x03",
            entry_bytes(BOB, "other", "99.0", bad_signature=True),
        )
        forged.publish()
        rc, alarms, err = await monitor(state, *follow_args(forged.url, forged.vkey))
        assert rc == 4, err
        by_type = {(a["type"], a["evidence"].get("reason")): a for a in alarms}
        assert sorted(by_type) == [
            ("bad_entry", "bad_signature"),
            ("bad_entry", "does_not_decode"),
            ("conflicting_signers", None),
            ("signer_equivocation", None),
        ]
        assert len(alarms) == 4

        cp, ev = checked_alarm(by_type["signer_equivocation", None], key)
        assert [e["index"] for e in ev["entries"]] == [0, eq]
        e1, e2 = (checked_entry(e, cp) for e in ev["entries"])
        assert e1.signed.signer_vkey() == e2.signed.signer_vkey() == ALICE.vkey
        assert e1.statement.identity == e2.statement.identity
        assert (e1.statement.project, e1.statement.version) == ("pkg", "1.0")
        assert e1.statement.identity.key == ev["identity"]
        assert e1.statement.sha256 != e2.statement.sha256
        assert e1.signed.verify() and e2.signed.verify()

        cp, ev = checked_alarm(by_type["conflicting_signers", None], key)
        assert [e["index"] for e in ev["entries"]] == [0, cf]
        e1, e2 = (checked_entry(e, cp) for e in ev["entries"])
        assert (e1.signed.signer_vkey(), e2.signed.signer_vkey()) == (ALICE.vkey, CAROL.vkey)
        assert e1.statement.identity == e2.statement.identity
        assert e1.statement.sha256 != e2.statement.sha256

        cp, ev = checked_alarm(by_type["bad_entry", "does_not_decode"], key)
        assert ev["index"] == garbage
        with pytest.raises(FormatError):
            checked_entry(ev, cp)  # proven in the signed tree, yet not an entry

        cp, ev = checked_alarm(by_type["bad_entry", "bad_signature"], key)
        assert ev["index"] == badsig
        assert not checked_entry(ev, cp).signed.verify()
    finally:
        await forged.stop()


WITNESS = Signer.from_seed("witness.example", bytes([15]) * 32, ALG_COSIGNATURE_V1)


def write_policy(path: Path, logs: list[SimulatedLog], quorum: int = 1) -> Path:
    text = "version = 1\n"
    for log in logs:
        text += f'[[log]]\nurl = "{log.url}"\nkey = "{log.vkey}"\n'
    text += f'[witnesses]\nkeys = ["{WITNESS.vkey}"]\nquorum = {quorum}\n'
    path.write_text(text)
    return path


async def test_witness_quorum_with_several_logs(tmp_path: Path) -> None:
    witnessed = await SimulatedLog(cosigners=(WITNESS,)).start()
    other = SimulatedLog(Signer.from_seed("unwitnessed.example/log", bytes([16]) * 32))
    await other.start()
    try:
        for log in (witnessed, other):
            log.append(*(entry_bytes(ALICE, "pkg", f"{i}.0") for i in range(5)))
            log.publish()
        policy = write_policy(tmp_path / "policy.toml", [witnessed, other])
        rc, alarms, err = await monitor(tmp_path / "monitor.db", "--policy", str(policy))
        assert (rc, alarms) == (1, []), err
        assert "forged.example/log: verified tree size 5" in err
        assert f"unwitnessed.example/log: {other.url}: error:" in err
        assert "witness cosignatures" in err
    finally:
        await witnessed.stop()
        await other.stop()


async def test_stale_log_alarm_in_loop_mode(tmp_path: Path) -> None:
    forged = await SimulatedLog(cosigners=(WITNESS,)).start()
    forged.append(*(entry_bytes(ALICE, "pkg", f"{i}.0") for i in range(3)))
    forged.publish()
    policy = write_policy(tmp_path / "policy.toml", [forged])
    proc = await asyncio.create_subprocess_exec(
        *sigledger_cmd(),
        "monitor",
        "--policy",
        str(policy),
        "--state",
        str(tmp_path / "monitor.db"),
        "--interval",
        "0.2",
        "--stale-after",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=tree_env(),
    )
    assert proc.stdout is not None
    alarms: list[dict[str, Any]] = []
    try:
        # Re-cosigned every 0.3 s (the same tree, a fresh note): not stale.
        for _ in range(7):
            await asyncio.sleep(0.3)
            forged.publish()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.stdout.readline(), 0.05)
        # Then nothing changes any more: one stale_log alarm, raised once.
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        alarms.append(json.loads(line))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.stdout.readline(), 1.0)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
        await forged.stop()
    assert rc == 0
    assert [a["type"] for a in alarms] == ["stale_log"]
    cp, ev = checked_alarm(alarms[0], forged.verifier)
    assert cp.size == 3
    assert ev["checkpoint"] == forged.note.decode()  # the last re-cosigned note
    assert ev["stale_after_seconds"] == 1
    assert ev["note_unchanged_since"] < ev["checked_at"]
    assert ev["size_unchanged_since"] < ev["note_unchanged_since"]
    [cosigned] = ev["cosignature_times"]
    assert cosigned["witness"] == WITNESS.vkey
    assert cosigned["time"].startswith(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(forged.cosigned[-1]))
    )


async def test_usage_errors(tmp_path: Path) -> None:
    env_policy = os.environ.pop("SIGLEDGER_POLICY", None)
    try:
        rc, _, err = await run_sigledger(
            "monitor", "--once", "--log", "http://127.0.0.1:9", "--state", str(tmp_path / "s")
        )
        assert rc == 2 and "--log-key" in err
        rc, _, err = await run_sigledger(
            "monitor", "--once", "--policy", str(tmp_path / "missing.toml")
        )
        assert rc == 2, err
    finally:
        if env_policy is not None:
            os.environ["SIGLEDGER_POLICY"] = env_policy
