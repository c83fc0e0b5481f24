"""GET /lookup and GET /proof/consistency against a real server."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import aiohttp
import pytest

from sigledger.client.remote import LogClient
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.entry import decode_entry
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import LogProcess, get, signed
from tests.memtree import MemoryTree


def _check_answer(doc: dict[str, Any], vkey: str) -> list[tuple[int, Any]]:
    cp, _ = open_checkpoint(doc["checkpoint"].encode(), Verifier.from_vkey(vkey))
    assert cp.size == doc["tree_size"]
    out = []
    for e in doc["entries"]:
        data = base64.b64decode(e["entry"])
        proof = [base64.b64decode(h) for h in e["inclusion_proof"]]
        merkle.check_inclusion(e["log_index"], cp.size, merkle.leaf_hash(data), proof, cp.root)
        out.append((e["log_index"], decode_entry(data)))
    return out


async def _lookup(url: str, query: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = await get(f"{url}/lookup?{query}")
    return status, json.loads(body)


async def test_lookup_and_consistency(log_server: LogProcess) -> None:
    url, vkey = log_server.url, log_server.vkey
    alice, bob = Signer.generate("alice"), Signer.generate("bob")
    sizes = []
    async with LogClient(url) as log:
        for chunk in range(3):
            await log.add([signed(alice, "pkg-a", f"{chunk}.{i}") for i in range(120)])
            sizes.append(120 * (chunk + 1))
        await log.add(
            [
                signed(alice, "pkg-b", "1.0", content=b"one"),
                signed(bob, "pkg-b", "1.0", content=b"two"),
                signed(bob, "pkg-b", "1.0", content=b"one", kind="sdist"),
            ]
        )
    sizes.append(363)

    # by project: paged, 360 entries in pages of 100
    seen: list[int] = []
    cursor = "0"
    while True:
        status, doc = await _lookup(url, f"project=PKG_A&limit=100&cursor={cursor}")
        assert status == 200
        seen.extend(i for i, _ in _check_answer(doc, vkey))
        if doc["next_cursor"] is None:
            break
        cursor = str(doc["next_cursor"])
    assert seen == list(range(360))

    # by project + version, and by filename
    status, doc = await _lookup(url, "project=pkg-b&version=1.0")
    found = _check_answer(doc, vkey)
    assert [e.signed.key_name for _, e in found] == ["alice", "bob", "bob"]
    status, doc = await _lookup(url, "project=pkg-b&version=1.0&filename=pkg_b-1.0.tar.gz")
    assert [e.statement.filename for _, e in _check_answer(doc, vkey)] == ["pkg_b-1.0.tar.gz"]

    # by hash: the same content under two signers and two filenames
    digest = found[0][1].statement.sha256.hex()
    status, doc = await _lookup(url, f"sha256={digest}")
    by_hash = _check_answer(doc, vkey)
    assert {(e.signed.key_name, e.statement.filename) for _, e in by_hash} == {
        ("alice", "pkg_b-1.0-py3-none-any.whl"),
        ("bob", "pkg_b-1.0.tar.gz"),
    }
    status, doc = await _lookup(url, f"sha256=sha256:{digest}")
    assert len(doc["entries"]) == 2
    status, doc = await _lookup(url, "sha256=" + "0" * 64)
    assert status == 200 and doc["entries"] == []

    # consistency proofs between every pair of sizes the log published
    status, body, _ = await get(url + "/checkpoint")
    final, _ = open_checkpoint(body, Verifier.from_vkey(vkey))
    status, doc = await _lookup(url, "project=pkg-a&limit=1000")
    entries = [base64.b64decode(e["entry"]) for e in doc["entries"]]
    status, doc2 = await _lookup(url, "project=pkg-b")
    entries += [base64.b64decode(e["entry"]) for e in doc2["entries"]]
    tree = MemoryTree(merkle.leaf_hash(e) for e in entries)
    assert tree.root() == final.root
    for old in [0, 1, *sizes]:
        for new in [s for s in sizes if s >= old]:
            status, body, _ = await get(f"{url}/proof/consistency?old={old}&new={new}")
            assert status == 200
            proof = [base64.b64decode(h) for h in json.loads(body)["hashes"]]
            merkle.check_consistency(old, new, tree.root(old), tree.root(new), proof)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "sha256=abc",
        "sha256=" + "A" * 64,
        "project=a&sha256=" + "0" * 64,
        "project=",
        "project=-bad-",
        "project=x&version=not.a.version!",
        "project=x&limit=0",
        "project=x&limit=1001",
        "project=x&limit=01",
        "project=x&cursor=-1",
        "project=x&evil=1",
        "sha256=" + "0" * 64 + "&version=1.0",
    ],
)
async def test_bad_lookups(log_server: LogProcess, query: str) -> None:
    status, doc = await _lookup(log_server.url, query)
    assert status == 400
    assert doc["error"] == "bad_query" and doc["message"]


@pytest.mark.parametrize(
    "query", ["old=1&new=0", "old=0", "old=0&new=5", "old=x&new=1", "old=0&new=0&x=1"]
)
async def test_bad_consistency_queries(log_server: LogProcess, query: str) -> None:
    status, body, _ = await get(f"{log_server.url}/proof/consistency?{query}")
    assert status == 400
    assert json.loads(body)["error"] == "bad_query"


async def _post_lookup(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/lookup", data=body, headers={"Content-Type": "application/json"}) as r,
    ):
        return r.status, await r.json()


async def test_batch_lookup_with_related_entries(log_server: LogProcess) -> None:
    url, vkey = log_server.url, log_server.vkey
    alice, bob = Signer.generate("alice"), Signer.generate("bob")
    async with LogClient(url) as log:
        await log.add([signed(alice, "pkg", f"1.{i}", content=f"c{i}".encode()) for i in range(20)])
        await log.add([signed(bob, "pkg", "1.3", content=b"other bytes")])
    wanted = [hashlib.sha256(f"c{i}".encode()).hexdigest() for i in (1, 3, 5)]
    status, doc = await _post_lookup(url, json.dumps({"sha256": wanted}).encode())
    assert status == 200
    found = _check_answer(doc, vkey)
    assert sorted(i for i, _ in found) == [1, 3, 5]
    status, doc = await _post_lookup(url, json.dumps({"sha256": wanted, "related": True}).encode())
    found = _check_answer(doc, vkey)
    assert sorted(i for i, _ in found) == [1, 3, 5, 20]  # bob's other hash for pkg 1.3
    for body in [
        b"[]",
        b"{}",
        b'{"sha256": []}',
        b'{"sha256": ["AB"]}',
        json.dumps({"sha256": ["0" * 64] * 1001}).encode(),
        b'{"sha256": ["' + b"0" * 64 + b'"], "related": 1}',
        b"not json",
    ]:
        status, doc = await _post_lookup(url, body)
        assert status == 400, body[:40]
        assert doc["error"] == "bad_query"
