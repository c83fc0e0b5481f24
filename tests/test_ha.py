"""Highly available sequencing on PostgreSQL (``sigledger serve --ha``): fencing of a
deposed leader at the storage level, then real server processes on one database
of the real server of ``tests/postgres.py``: followers serving reads and forwarding
/add and lookups that make the log observe (a real pypiserver upstream), the leader
killed with SIGKILL again and again under load, the leader cut off from the
database by a TCP proxy that is stopped, and PostgreSQL restarted under load.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.entry import decode_entry
from sigledger.ledger.log.postgres import WRITER_LOCK, FencedError, PostgresStorage
from sigledger.ledger.log.store import Batch
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.sqlite import StorageConflictError
from sigledger.ledger.wire import JSON_TYPE, ConsistencyAnswer, encode_add_request
from tests.helpers import LogProcess, get, read_log, run_cli, signed
from tests.index import PyPIServer, wheel
from tests.memtree import MemoryTree
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

TAKEOVER_LIMIT = 5.0  # seconds from a leader's death until another leads


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_a_deposed_leader_is_fenced(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    a = await PostgresStorage.open(url, standby=True)
    b = await PostgresStorage.open(url, standby=True)
    try:
        await a.initialize({"origin": "o", "vkey": "v"}, merkle.EMPTY_ROOT, 1000)
        assert await a.try_lead("http://a") == 1
        assert await b.try_lead("http://b") is None  # one leader at a time
        await a.commit_batch(Batch([], {}, 1, b"\1" * 32, 2000))
        assert await b.leader() == (1, "http://a")

        # A newer epoch (as a takeover writes it) fences the old leader's transactions:
        # nothing of them is stored.
        postgres_server.sql("UPDATE leader SET epoch = epoch + 1", _database(url))
        with pytest.raises(FencedError):
            await a.commit_batch(Batch([], {}, 2, b"\2" * 32, 3000))
        with pytest.raises(FencedError):
            await a.save_notes([(1, b"note", True)])
        with pytest.raises(FencedError):
            await a.check_leader()
        head = await b.latest_head()
        assert head is not None and (head.size, head.note) == (1, None)

        # The leader's session ends (a partition, a restarted server): the lock is
        # free, another takes over, and the old leader's next write is refused.
        hi, lo = WRITER_LOCK >> 32, WRITER_LOCK & 0xFFFFFFFF
        postgres_server.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            f" AND classid = {hi} AND objid = {lo}",
            _database(url),
        )
        epoch = None
        for _ in range(50):
            if (epoch := await b.try_lead("http://b")) is not None:
                break
            await asyncio.sleep(0.1)
        assert epoch == 3
        with pytest.raises(FencedError):
            await a.commit_batch(Batch([], {}, 2, b"\2" * 32, 3000))
        # The new leader writes; a second root for a size is refused whoever writes it.
        await b.commit_batch(Batch([], {}, 2, b"\3" * 32, 3000))
        with pytest.raises(StorageConflictError):
            await b.commit_batch(Batch([], {}, 2, b"\4" * 32, 4000))
        await a.resign()
        assert await a.try_lead("http://a") is None
    finally:
        await a.close()
        await b.close()


def test_ha_settings_are_checked(tmp_path: Path) -> None:
    # The embedded SQLite log has no election: --ha there is a configuration error.
    sqlite = run_cli("serve", "--ha", "--data", str(tmp_path / "log"), "--listen", "127.0.0.1:0")
    assert sqlite.returncode == 2
    assert "needs a PostgreSQL database" in sqlite.stderr
    bad = run_cli("serve", "--data", str(tmp_path / "log"), env={"SIGLEDGER_HA": "maybe"})
    assert bad.returncode == 2 and "ha must be true or false" in bad.stderr
    url = run_cli("serve", "--ha", "--internal-url", "10.0.0.5:8080", "--data", str(tmp_path))
    assert url.returncode == 2 and "must be an http(s) URL" in url.stderr


# -- a cluster of real servers -----------------------------------------------------


class Cluster:
    """``sigledger serve --ha`` processes sharing one database and one log key."""

    def __init__(
        self, root: Path, database: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.database = database
        self.args = args
        self.env = env or {}
        self.servers: list[LogProcess] = []
        self.names = itertools.count()
        self.vkey = ""

    def start(self, database: str | None = None) -> LogProcess:
        data = self.root / f"s{next(self.names)}"
        if self.servers:  # every server signs with the log's one key
            data.mkdir(parents=True)
            shutil.copy(self.servers[0].data / "log.key", data / "log.key")
        env = {
            "SIGLEDGER_BATCH_MAX_AGE": "0.005",
            "SIGLEDGER_CHECKPOINT_PERIOD": "0.3",
            **self.env,
        }
        server = LogProcess(
            data, "--ha", "--database", database or self.database, *self.args, env=env
        )
        server.start()
        self.vkey = self.vkey or server.vkey
        assert server.vkey == self.vkey
        self.servers.append(server)
        return server

    def alive(self) -> list[LogProcess]:
        return [s for s in self.servers if s.proc is not None and s.proc.poll() is None]

    async def leader(self, timeout: float = 10.0) -> tuple[LogProcess, float]:
        """The server that leads (waiting up to ``timeout``) and how long that took."""
        started = time.monotonic()
        while True:
            for s in self.alive():
                try:
                    _status, body, _ = await get(s.url + "/healthz")
                except aiohttp.ClientError:
                    continue
                if json.loads(body).get("leader"):
                    return s, time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"no leader after {timeout} s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        for s in self.servers:
            s.kill()


class Load:
    """Clients adding entries through any live server, and readers checking that each
    server's successive checkpoints are consistent (with that server's own proofs)."""

    def __init__(self, cluster: Cluster, seed: int) -> None:
        self.cluster = cluster
        self.signer = Signer.generate("ha-test")
        self.counter = itertools.count()
        self.rng = random.Random(seed)
        self.acked: dict[int, bytes] = {}
        self.notes: set[bytes] = set()
        self.read_outage = 0.0  # longest time a live server's reads failed
        self.ack_times: list[float] = []  # time.monotonic() of each acknowledged /add
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, writers: int = 3) -> None:
        self.tasks = [asyncio.create_task(self._write()) for _ in range(writers)]
        self.tasks.append(asyncio.create_task(self._read()))

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.wait_for(asyncio.gather(*self.tasks), 60)

    async def _write(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            while not self.stopping:
                live = self.cluster.alive()
                if not live:
                    await asyncio.sleep(0.05)
                    continue
                server = self.rng.choice(live)
                batch = [
                    signed(self.signer, version=f"{next(self.counter)}.0")
                    for _ in range(self.rng.randint(1, 20))
                ]
                try:
                    async with session.post(
                        server.url + "/add",
                        data=encode_add_request(batch, JSON_TYPE),
                        headers={"Content-Type": JSON_TYPE},
                    ) as resp:
                        if resp.status != 200:
                            assert resp.status in (429, 503), await resp.text()
                            await asyncio.sleep(0.05)
                            continue
                        doc = await resp.json()
                except (TimeoutError, aiohttp.ClientError):
                    continue  # that server died under us: nothing was acknowledged
                self.ack_times.append(time.monotonic())
                for receipt in doc["receipts"]:
                    self.acked[receipt["log_index"]] = base64.b64decode(receipt["entry"])
                    self.notes.add(receipt["inclusion_proof"]["checkpoint"].encode())

    async def _read(self) -> None:
        verifier = Verifier.from_vkey(self.cluster.vkey)
        seen: dict[str, tuple[int, bytes]] = {}
        failing: dict[str, float] = {}
        while not self.stopping:
            for server in self.cluster.alive():
                try:
                    status, note, _ = await get(server.url + "/checkpoint")
                    assert status == 200
                except (aiohttp.ClientError, AssertionError):
                    since = failing.setdefault(server.url, time.monotonic())
                    self.read_outage = max(self.read_outage, time.monotonic() - since)
                    continue
                failing.pop(server.url, None)
                cp, _ = open_checkpoint(note, verifier)
                self.notes.add(note)
                old = seen.get(server.url)
                if old is not None and old[0] != cp.size:
                    assert cp.size > old[0], f"{server.url} went back to size {cp.size}"
                    try:
                        status, body, _ = await get(
                            f"{server.url}/proof/consistency?old={old[0]}&new={cp.size}"
                        )
                    except aiohttp.ClientError:
                        continue  # killed since its checkpoint answered
                    if status == 503:  # retry later: a server between roles, or cut off
                        continue
                    assert status == 200, body
                    proof = ConsistencyAnswer.from_json(json.loads(body)).hashes
                    merkle.check_consistency(old[0], cp.size, old[1], cp.root, proof)
                seen[server.url] = (cp.size, cp.root)
            await asyncio.sleep(0.1)

    async def check(self) -> int:
        """Everything acknowledged is in the final log at its index, every checkpoint
        seen is consistent with it, and no size ever had two roots. The final size."""
        leader, _ = await self.cluster.leader()
        size, entries = await read_log(leader.url, self.cluster.vkey)
        for index, entry in self.acked.items():
            assert index < size
            assert entries[index] == entry, f"entry {index} changed or was lost"
        tree = MemoryTree(merkle.leaf_hash(e) for e in entries)
        verifier = Verifier.from_vkey(self.cluster.vkey)
        roots: dict[int, bytes] = {}
        for note in self.notes:
            cp, _ = open_checkpoint(note, verifier)
            assert roots.setdefault(cp.size, cp.root) == cp.root, "two roots for one size"
            assert cp.size <= size and tree.root(cp.size) == cp.root
        return size


async def test_followers_serve_reads_and_forward_adds(postgres_url: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, postgres_url)
    try:
        a = cluster.start()
        b = cluster.start()
        leader, _ = await cluster.leader()
        assert leader is a
        follower_health = json.loads((await get(b.url + "/healthz"))[1])
        assert follower_health["status"] == "ok" and follower_health["leader"] is False
        signer = Signer.generate("alice")
        # /add through the follower: forwarded, answered with the leader's receipts.
        async with aiohttp.ClientSession() as session:
            batch = [signed(signer, version=f"{i}.0") for i in range(5)]
            async with session.post(
                b.url + "/add",
                data=encode_add_request(batch, JSON_TYPE),
                headers={"Content-Type": JSON_TYPE},
            ) as resp:
                assert resp.status == 200, await resp.text()
                receipts = (await resp.json())["receipts"]
        assert sorted(r["log_index"] for r in receipts) == list(range(5))
        # The follower shows the published head within a moment, and serves tiles,
        # entries, lookups and proofs from the database.
        for _ in range(100):
            size, entries = await read_log(b.url, cluster.vkey)
            if size == 5:
                break
            await asyncio.sleep(0.05)
        assert (size, entries) == await read_log(a.url, cluster.vkey)
        status, body, _ = await get(b.url + "/lookup?project=sampleproject&limit=10")
        assert status == 200 and len(json.loads(body)["entries"]) == 5
        # The leader dies; the follower takes over and sequences.
        a.kill()
        leader, took = await cluster.leader()
        assert leader is b and took < TAKEOVER_LIMIT
        batch = [signed(signer, version="9.0")]
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                b.url + "/add",
                data=encode_add_request(batch, JSON_TYPE),
                headers={"Content-Type": JSON_TYPE},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["receipts"][0]["log_index"] == 5
    finally:
        cluster.stop()


async def test_followers_forward_observing_lookups(postgres_url: str, tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    files = {}
    for version in ("1.0", "2.0", "3.0", "4.0", "5.0"):
        for tag in ("py3-none-any", "cp312-cp312-win_amd64")[: 2 if version < "4" else 1]:
            name, data = wheel("fresh", version, f"V = {version!r}\n", tag=tag)
            (packages / name).write_bytes(data)
            files[name] = data
    index = PyPIServer(packages).start()
    env = {
        "SIGLEDGER_CLIENT_IP_HEADER": "X-Forwarded-For",
        "SIGLEDGER_OBSERVE_CLIENT_RATE": "0.01",
        "SIGLEDGER_OBSERVE_CLIENT_BURST": "2",
    }
    cluster = Cluster(tmp_path, postgres_url, "--observe-index", index.url, env=env)
    try:
        a = cluster.start()
        b = cluster.start()
        leader, _ = await cluster.leader()
        assert leader is a

        async def lookup(server: LogProcess, client: str, version: str, **headers: str) -> Any:
            # A version ending in .whl is a filename.
            what = {"filename": version} if version.endswith(".whl") else {"version": version}
            async with (
                aiohttp.ClientSession() as s,
                s.get(
                    server.url + "/lookup",
                    params={"project": "Fresh", **what},
                    headers={"X-Forwarded-For": client, **headers},
                ) as r,
            ):
                return r.status, await r.json()

        # A release nobody observed, asked of the follower: the leader observes it and
        # the follower relays the answer with inclusion proofs.
        status, answer = await lookup(b, "192.0.2.1", "1.0")
        assert status == 200, answer
        cp, _ = open_checkpoint(answer["checkpoint"].encode(), Verifier.from_vkey(cluster.vkey))
        observer_vkey = (await get(a.url + "/observer"))[1].decode().strip()
        got = {}
        for item in answer["entries"]:
            data = base64.b64decode(item["entry"])
            proof = [base64.b64decode(h) for h in item["inclusion_proof"]]
            merkle.check_inclusion(
                item["log_index"], cp.size, merkle.leaf_hash(data), proof, cp.root
            )
            entry = decode_entry(data)
            assert entry.signed.signer_vkey() == observer_vkey
            got[entry.statement.filename] = entry.statement.sha256
        want = {n: hashlib.sha256(d).digest() for n, d in files.items() if "-1.0-" in n}
        assert got == want and cp.size == 2
        # Asked again (of either server): answered from what is logged, nothing new.
        for server in (a, b):
            status, again = await lookup(server, "192.0.2.1", "1.0")
            assert status == 200 and len(again["entries"]) == 2 and again["tree_size"] == 2
        # The leader said the release is complete: once the follower has read the new
        # entries, it answers lookups of the release itself, without the leader.
        for _ in range(100):
            if (await read_log(b.url, cluster.vkey))[0] == 2:
                break
            await asyncio.sleep(0.05)

        async def leader_lookups() -> float:
            _status, body, _ = await get(a.url + "/metrics")
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in body.decode().splitlines()
                if line.startswith("sigledger_http_requests_total{") and '"/lookup"' in line
            )

        before = await leader_lookups()
        assert before >= 3
        for _ in range(5):
            status, again = await lookup(b, "192.0.2.1", "1.0")
            assert status == 200 and len(again["entries"]) == 2
        assert await leader_lookups() == before

        # The leader applies the per-client limit to the client the follower vouches
        # for: 192.0.2.1 has one observing lookup left, 192.0.2.2 its own two.
        status, _ = await lookup(b, "192.0.2.1", "2.0")
        assert status == 200
        status, refused = await lookup(b, "192.0.2.1", "3.0")
        assert (status, refused.get("limit")) == (429, "observe"), refused
        # A forged vouch sent to the leader counts against the address that sent it.
        forged = {"X-Sigledger-Client": "192.0.2.2", "X-Sigledger-Forwarded": "AAAA"}
        status, refused = await lookup(a, "192.0.2.1", "3.0", **forged)
        assert status == 429, refused
        status, answer = await lookup(b, "192.0.2.2", "3.0")
        assert status == 200 and answer["tree_size"] == 6, answer
        # By filename (another query, the vouch covers it): 192.0.2.2's second, then
        # its limit.
        status, answer = await lookup(b, "192.0.2.2", "fresh-4.0-py3-none-any.whl")
        assert status == 200 and answer["tree_size"] == 7, answer
        status, refused = await lookup(b, "192.0.2.2", "fresh-5.0-py3-none-any.whl")
        assert (status, refused.get("limit")) == (429, "observe"), refused
        _size, entries = await read_log(a.url, cluster.vkey)
        logged = [decode_entry(e).statement for e in entries]
        observed = sorted(n for n in files if "-5.0-" not in n)
        assert sorted(st.filename for st in logged) == observed  # each file once
        assert all(st.sha256 == hashlib.sha256(files[st.filename]).digest() for st in logged)
    finally:
        cluster.stop()
        index.stop()


async def test_killing_the_leader_under_load_loses_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path, postgres_url)
    load = Load(cluster, seed=20261202)
    takeovers: list[float] = []
    try:
        for _ in range(3):
            cluster.start()
        load.start()
        for _ in range(5):
            await asyncio.sleep(1.5)
            leader, _ = await cluster.leader()
            leader.kill()  # SIGKILL: no shutdown code runs
            _, took = await cluster.leader()
            takeovers.append(took)
            cluster.start()  # the cluster stays three strong
        await asyncio.sleep(1.0)
        await load.stop()
        size = await load.check()
    finally:
        load.stopping = True
        cluster.stop()
    print(f"takeovers {[round(t, 2) for t in takeovers]} s, {size} entries")
    assert len(load.acked) > 100, "the test must acknowledge entries between the kills"
    assert max(takeovers) < TAKEOVER_LIMIT
    assert load.read_outage < TAKEOVER_LIMIT


PROXY = """
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    async def serve(r, w):
        ur, uw = await asyncio.open_connection(host, port)
        await asyncio.gather(pipe(r, uw), pipe(ur, w))
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


async def test_a_leader_cut_off_from_the_database_stops_signing(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    proxy = subprocess.Popen(
        [sys.executable, "-c", PROXY, "127.0.0.1", str(postgres_server.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    cluster = Cluster(tmp_path, postgres_url)
    load = Load(cluster, seed=7)
    try:
        assert proxy.stdout is not None
        port = int(proxy.stdout.readline())
        a = cluster.start(postgres_url.replace(f":{postgres_server.port}/", f":{port}/"))
        cluster.start()
        cluster.start()
        assert (await cluster.leader())[0] is a
        load.start()
        await asyncio.sleep(1.5)
        proxy.kill()  # the leader's connections to the database are cut
        proxy.wait()
        deadline = time.monotonic() + TAKEOVER_LIMIT
        while True:
            leader, _ = await cluster.leader()
            if leader is not a:
                break
            assert time.monotonic() < deadline, "the cut-off leader still leads"
            await asyncio.sleep(0.05)
        _, last, _ = await get(a.url + "/checkpoint")
        await asyncio.sleep(2.0)  # load goes on through the new leader
        _, still, _ = await get(a.url + "/checkpoint")
        assert still == last, "the cut-off server published a new checkpoint"
        health = json.loads((await get(a.url + "/healthz"))[1])
        assert health["leader"] is False
        load.notes.add(last)
        await load.stop()
        size = await load.check()
        assert open_checkpoint(last, Verifier.from_vkey(cluster.vkey))[0].size < size
    finally:
        load.stopping = True
        proxy.kill()
        proxy.wait()
        if proxy.stdout is not None:
            proxy.stdout.close()
        cluster.stop()


async def test_postgresql_restarted_under_load(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path, postgres_url)
    load = Load(cluster, seed=11)
    try:
        cluster.start()
        cluster.start()
        load.start()
        await asyncio.sleep(1.5)
        before = len(load.acked)
        await asyncio.to_thread(postgres_server.restart)
        deadline = time.monotonic() + 30
        while len(load.acked) <= before + 50:  # the log takes entries again
            assert time.monotonic() < deadline, "the log did not recover"
            await asyncio.sleep(0.1)
        await load.stop()
        await load.check()
    finally:
        load.stopping = True
        cluster.stop()
