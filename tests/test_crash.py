"""kill -9 the server repeatedly while submissions are in flight.

After every round and at the end: every acknowledged entry is in the log at its
receipt's index, and every checkpoint ever returned is consistent with the
final tree (same root at its size, and a valid consistency proof).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import time
from pathlib import Path

import aiohttp

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.wire import JSON_TYPE, MSGPACK_TYPE, encode_add_request
from tests.helpers import LogProcess, read_log, signed
from tests.memtree import MemoryTree

ROUNDS = 6


async def _hammer(
    url: str,
    signer: Signer,
    counter: itertools.count[int],
    rng: random.Random,
    acked: dict[int, bytes],
    notes: set[bytes],
    stop_after: float,
) -> None:
    deadline = time.monotonic() + stop_after
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            batch = [
                signed(signer, version=f"{next(counter)}.0") for _ in range(rng.randint(1, 30))
            ]
            ctype = rng.choice([JSON_TYPE, MSGPACK_TYPE])
            try:
                async with session.post(
                    url + "/add",
                    data=encode_add_request(batch, ctype),
                    headers={"Content-Type": ctype},
                ) as resp:
                    if resp.status != 200:
                        continue
                    doc = await resp.json()
            except (TimeoutError, aiohttp.ClientError):
                return  # the server died under us: nothing was acknowledged
            for receipt in doc["receipts"]:
                acked[receipt["log_index"]] = base64.b64decode(receipt["entry"])
                notes.add(receipt["inclusion_proof"]["checkpoint"].encode())


async def test_kill9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "log"
    signer = Signer.generate("crash-test")
    counter = itertools.count()
    rng = random.Random(20261125)
    acked: dict[int, bytes] = {}
    notes: set[bytes] = set()
    vkey = ""
    for _ in range(ROUNDS):
        server = LogProcess(data, env={"SIGLEDGER_BATCH_MAX_AGE": "0.005"}).start()
        vkey = vkey or server.vkey
        assert server.vkey == vkey
        try:
            kill_at = rng.uniform(0.2, 1.2)
            workers = [
                asyncio.create_task(
                    _hammer(server.url, signer, counter, rng, acked, notes, kill_at + 5)
                )
                for _ in range(4)
            ]
            await asyncio.sleep(kill_at)
            server.kill()  # SIGKILL: no shutdown code runs
            await asyncio.wait_for(asyncio.gather(*workers), 30)
        finally:
            server.kill()
    assert len(acked) > 50, "the test must actually acknowledge entries before the kills"
    print(f"acknowledged {len(acked)} entries, {len(notes)} checkpoints")

    final = LogProcess(data).start()
    try:
        size, entries = await read_log(final.url, vkey)
    finally:
        final.stop()
    for index, entry in acked.items():
        assert index < size
        assert entries[index] == entry, f"entry {index} changed or was lost"
    tree = MemoryTree(merkle.leaf_hash(e) for e in entries)
    verifier = Verifier.from_vkey(vkey)
    roots: dict[int, bytes] = {}
    for note in notes:
        cp, _ = open_checkpoint(note, verifier)
        assert roots.setdefault(cp.size, cp.root) == cp.root, "two roots for one size"
        assert tree.root(cp.size) == cp.root
        merkle.check_consistency(
            cp.size, size, cp.root, tree.root(), tree.prove_consistency(cp.size, size)
        )
