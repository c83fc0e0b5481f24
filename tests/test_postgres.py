"""The log on PostgreSQL, end to end: `sigledger serve --database postgresql://...`,
the single-writer lock, and `sigledger migrate` between SQLite and PostgreSQL.

Every test runs against the real server of ``tests/postgres.py`` (a fresh
database each); the storage contract itself is in ``tests/test_storage_contract.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigledger.client.publish.submit import publish
from sigledger.ledger import merkle
from sigledger.ledger.log.postgres import PostgresStorage
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.sqlite import StorageLockedError
from tests.helpers import LogProcess, get, make_release, read_log, run_cli
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow


def _releases(folder: Path, count: int, project: str = "sampleproject") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_release(folder, project, f"1.{i}.0", "whl") for i in range(count)]


async def test_serve_on_postgresql_publishes_and_survives_a_restart(
    postgres_url: str, tmp_path: Path
) -> None:
    server = LogProcess(tmp_path / "log", "--database", postgres_url).start()
    try:
        vkey = server.vkey
        alice = Signer.generate("alice@example.org")
        results = await publish(
            server.url, alice, _releases(tmp_path / "dist", 300), log_key=Verifier.from_vkey(vkey)
        )
        assert [r.status for r in results] == ["added"] * 300
        size, entries = await read_log(server.url, vkey)
        assert size == 300
        status, body, _ = await get(server.url + "/tile/1/000.p/1")
        assert status == 200
        assert body == merkle.tree_hash([merkle.leaf_hash(e) for e in entries[:256]])
        status, body, _ = await get(server.url + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body, _ = await get(server.url + "/lookup?project=sampleproject&limit=5")
        assert status == 200 and len(json.loads(body)["entries"]) == 5
        assert server.stop() == 0
        # The data directory keeps only the key; the log is in PostgreSQL.
        assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["log.key"]

        server = LogProcess(tmp_path / "log", "--database", postgres_url).start()
        assert server.vkey == vkey
        assert (await read_log(server.url, vkey)) == (300, entries)
        more = await publish(server.url, alice, _releases(tmp_path / "more", 302)[300:])
        assert [r.receipt["log_index"] for r in more if r.receipt] == [300, 301]
        assert (await read_log(server.url, vkey))[0] == 302
    finally:
        server.kill()


async def test_a_second_server_on_the_same_database_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    first = LogProcess(tmp_path / "a", "--database", postgres_url).start()
    try:
        second = run_cli(
            "serve", "--data", str(tmp_path / "b"), "--listen", "127.0.0.1:0",
            "--database", postgres_url,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert "in use by another sigledger process" in second.stderr
        assert "Only one server may write a log" in second.stderr
    finally:
        first.kill()


async def test_the_writer_lock_is_released_on_close(postgres_url: str) -> None:
    first = await PostgresStorage.open(postgres_url)
    try:
        with pytest.raises(StorageLockedError, match="in use by another sigledger process"):
            await PostgresStorage.open(postgres_url)
    finally:
        await first.close()
    again = await PostgresStorage.open(postgres_url)
    await again.close()


def test_unreachable_server_and_bad_urls_say_what_to_fix(tmp_path: Path) -> None:
    data = str(tmp_path / "log")
    down = run_cli("serve", "--data", data, "--database", "postgresql://me:secret@127.0.0.1:1/x")
    assert down.returncode != 0
    assert "cannot connect to PostgreSQL at postgresql://me:***@127.0.0.1:1/x" in down.stderr
    assert "secret" not in down.stderr
    assert "Check that the PostgreSQL server runs" in down.stderr
    bad = run_cli("serve", "--data", data, "--database", "mysql://127.0.0.1/x")
    assert bad.returncode == 2
    assert "sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME" in bad.stderr


async def test_missing_database_is_named(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.url("no_such_db")
    out = run_cli("serve", "--data", str(tmp_path / "log"), "--database", url)
    assert out.returncode != 0
    assert 'database "no_such_db" does not exist' in out.stderr
    assert "Create the database first" in out.stderr
