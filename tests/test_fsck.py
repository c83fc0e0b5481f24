"""`sigledger fsck`: a one-shot audit of a whole log, healthy or broken."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import LogProcess
from tests.simulator import SimulatedLog
from tests.test_monitor import (
    ALICE,
    BOB,
    add,
    b64d,
    check_bad_tile,
    check_leaf_mismatch,
    checked_entry,
    entry_bytes,
    filler,
    run_sigledger,
    tampered_log,
)


@pytest.fixture
def servers() -> Iterator[list[LogProcess]]:
    started: list[LogProcess] = []
    yield started
    for s in started:
        s.kill()


async def fsck_json(url: str, vkey: str, *args: str) -> tuple[int, dict[str, Any]]:
    rc, out, err = await run_sigledger("fsck", url, "--log-key", vkey, "--json", *args)
    assert out, err
    return rc, json.loads(out)


async def test_healthy_log(tmp_path: Path, servers: list[LogProcess]) -> None:
    log = LogProcess(tmp_path / "log").start()
    servers.append(log)
    await add(log.url, filler(600))
    rc, out, err = await run_sigledger("fsck", log.url, "--log-key", log.vkey)
    assert rc == 0, out + err
    assert out.startswith("OK: localhost/sigledger at tree size 600: 600 entries and 4 hash tiles")
    # plain progress when not on a terminal: a line every 5 s and one to close them,
    # none for a run quicker than that
    lines = err.splitlines()
    assert not lines or lines[-1] == "checked 600 of 600 entries", err

    rc, report = await fsck_json(log.url, log.vkey)
    assert rc == 0
    assert report["ok"] is True and report["failures"] == []
    assert report["entries_checked"] == 600
    assert report["tiles_checked"] == 4  # 0/000, 0/001, 0/002.p/88, 1/000.p/2
    cp, _ = open_checkpoint(report["checkpoint"].encode(), Verifier.from_vkey(log.vkey))
    assert report["root_from_entries"] == cp.root.hex() == report["log"]["root_hash"]

    # A checkpoint not signed by the key given is a failure, not an audit.
    other = Signer.generate("localhost/sigledger").vkey
    rc, out, err = await run_sigledger("fsck", log.url, "--log-key", other)
    assert rc == 1 and "not signed by" in err


async def test_tampered_tile_and_rewritten_entry() -> None:
    log, rewritten = await tampered_log()
    key = Verifier.from_vkey(log.vkey)
    try:
        rc, report = await fsck_json(log.url, log.vkey)
        rc_text, out, _ = await run_sigledger("fsck", log.url, "--log-key", log.vkey)
    finally:
        await log.stop()
    assert rc == 1
    assert report["ok"] is False
    failures = report["failures"]
    assert [(f["type"], f["index"], f["evidence"]["reason"]) for f in failures] == [
        ("bad_tile", 0, "does_not_match_checkpoint"),
        ("bad_entry", 300, "leaf_hash_mismatch"),
    ]
    check_bad_tile(failures[0]["evidence"], key)
    check_leaf_mismatch(failures[1]["evidence"], key, rewritten)
    # The rewritten entry also changes the root recomputed from all entries.
    assert report["root_from_entries"] not in (None, report["log"]["root_hash"])

    assert rc_text == 1
    assert "FAIL: bad_tile (entry 0)" in out and "FAIL: bad_entry (entry 300)" in out
    assert "FAIL (2 problems)" in out


async def test_forged_log_bad_entries_and_bad_edge_tile() -> None:
    forged = await SimulatedLog().start()
    key = forged.verifier
    try:
        [garbage, badsig] = forged.append(
            *(entry_bytes(ALICE, "pkg", f"{i}.0") for i in range(40)),
            b"\xc0",
            entry_bytes(BOB, "pkg", "40.0", bad_signature=True),
        )[-2:]
        forged.publish()
        rc, report = await fsck_json(forged.url, forged.vkey)
        assert rc == 1
        failures = {f["evidence"]["reason"]: f for f in report["failures"]}
        assert sorted(failures) == ["bad_signature", "does_not_decode"]
        assert len(report["failures"]) == 2
        cp, _ = open_checkpoint(report["checkpoint"].encode(), key)
        ev = failures["does_not_decode"]["evidence"]
        assert ev["index"] == garbage
        with pytest.raises(FormatError):
            checked_entry(ev, cp)
        ev = failures["bad_signature"]["evidence"]
        assert ev["index"] == badsig
        assert not checked_entry(ev, cp).signed.verify()

        # A right-edge tile that is not the log's: nothing can be anchored, but the
        # entries are still checked and still hash to the signed root.
        edge = "tile/0/000.p/42"
        forged.corrupt(edge)
        rc, report = await fsck_json(forged.url, forged.vkey)
        assert rc == 1
        reasons = sorted(f["evidence"]["reason"] for f in report["failures"])
        assert reasons == ["bad_signature", "does_not_decode", "edge_tiles_do_not_hash_to_root"]
        assert report["root_from_entries"] == cp.root.hex()
        [bad] = [f for f in report["failures"] if f["type"] == "bad_tile"]
        tiles_ev = {t["path"]: b64d(t["data"]) for t in bad["evidence"]["tiles"]}
        assert tiles_ev == {edge: forged.overrides[edge]}
        assert (
            merkle.tree_hash(
                [tiles_ev[edge][i : i + 32] for i in range(0, len(tiles_ev[edge]), 32)]
            )
            != cp.root
        )
    finally:
        await forged.stop()


async def test_worker_processes_on_a_larger_log() -> None:
    # Past the size where worker processes pay off; one entry repeated keeps it cheap.
    forged = await SimulatedLog().start()
    try:
        one = entry_bytes(ALICE, "pkg", "1.0")
        forged.append(*([one] * 17_000), entry_bytes(BOB, "pkg", "2.0", bad_signature=True))
        forged.publish()
        rc, report = await fsck_json(forged.url, forged.vkey, "--workers", "2")
        assert rc == 1
        assert report["entries_checked"] == 17_001
        assert [(f["index"], f["evidence"]["reason"]) for f in report["failures"]] == [
            (17_000, "bad_signature")
        ]
    finally:
        await forged.stop()
