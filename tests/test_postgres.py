"""The log on PostgreSQL, end to end: `sigledger serve --database postgresql://...`,
the single-writer lock, and `sigledger migrate` between SQLite and PostgreSQL.

Every test runs against the real server of ``tests/postgres.py`` (a fresh
database each); the storage contract itself is in ``tests/test_storage_contract.py``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
from pathlib import Path

import asyncpg
import pytest

from sigledger.client.publish.submit import publish
from sigledger.ledger import merkle
from sigledger.ledger.checkpoint import open_checkpoint
from sigledger.ledger.errors import ConfigError, VerificationError
from sigledger.ledger.log.database import describe, parse_database_url, sqlite_url
from sigledger.ledger.log.indexed import IndexKeys
from sigledger.ledger.log.migrate import prove_copy
from sigledger.ledger.log.packed import RUN_MAX
from sigledger.ledger.log.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStorage
from sigledger.ledger.log.store import Batch, EntryQuery, Page
from sigledger.ledger.note import Signer, Verifier
from sigledger.ledger.service.sqlite import StorageLockedError
from tests.helpers import LogProcess, get, make_release, read_log, run_cli
from tests.memtree import MemoryTree
from tests.postgres import PostgresServer
from tests.test_crash import _hammer
from tests.test_storage_contract import ALICE, BOB, CAROL, MANY, _commit_many, row

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
        # The explorer's pages run every read query of the engine.
        for page in (
            "/",
            "/entries",
            "/project/sampleproject",
            "/entry/7",
            "/signer/" + alice.vkey,
        ):
            status, body, _ = await get(server.url + page)
            assert status == 200, page
            assert b"sampleproject" in body, page
        assert server.stop() == 0
        # The data directory keeps only the key; the log is in PostgreSQL.
        assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["log.key", "observer.key"]

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
    assert "sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or postgresql://" in bad.stderr


async def test_missing_database_is_named(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.url("no_such_db")
    out = run_cli("serve", "--data", str(tmp_path / "log"), "--database", url)
    assert out.returncode != 0
    assert 'database "no_such_db" does not exist' in out.stderr
    assert "Create the database first" in out.stderr


async def _run_log(
    data: Path, *args: str, publish_counts: tuple[int, ...] = ()
) -> tuple[str, bytes]:
    """Start a log, publish batches of releases (one call each), stop it; its vkey and root."""
    server = LogProcess(data, *args).start()
    try:
        signer = Signer.generate("alice@example.org")
        done = 0
        for n in publish_counts:
            files = _releases(data.parent / f"dist-{done}", done + n)[done:]
            results = await publish(server.url, signer, files)
            assert [r.status for r in results] == ["added"] * n
            done += n
        size, entries = await read_log(server.url, server.vkey)
        assert size == done
        status, note, _ = await get(server.url + "/checkpoint")
        assert status == 200
        cp, _ = open_checkpoint(note, Verifier.from_vkey(server.vkey))
        assert server.stop() == 0
        return server.vkey, cp.root
    finally:
        server.kill()


def _migrate(source: str, target: str, *extra: str) -> dict[str, object]:
    out = run_cli("migrate", "--from", source, "--to", target, "--json", *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


async def test_migrate_sqlite_to_postgresql_and_back(
    postgres_url: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    data = tmp_path / "log"
    vkey, root = await _run_log(data, publish_counts=(300, 5, 290))
    sqlite_url = f"sqlite:///{data / 'log.db'}"
    doc = _migrate(sqlite_url, postgres_url, "--batch", "100")
    assert doc["tree_size"] == 595 and doc["entries"] == 595
    assert doc["root"] == base64.b64encode(root).decode()
    assert doc["tiles"] == 4  # 0/000, 0/001, 0/002 (partial) and 1/000 (partial)
    # The same log (same key, same checkpoint) now serves from PostgreSQL.
    server = LogProcess(data, "--database", postgres_url).start()
    try:
        assert server.vkey == vkey
        size, entries = await read_log(server.url, vkey)
        assert size == 595
        more = await publish(server.url, Signer.generate("bob"), _releases(tmp_path / "b", 2))
        assert [r.receipt["log_index"] for r in more if r.receipt] == [595, 596]
        assert server.stop() == 0
    finally:
        server.kill()

    # Back into a new SQLite file, proven against the PostgreSQL log.
    back = tmp_path / "back"
    back.mkdir()
    doc = _migrate(postgres_url, f"sqlite:///{back / 'log.db'}")
    assert doc["tree_size"] == 597
    (back / "log.key").write_bytes((data / "log.key").read_bytes())
    (back / "log.key").chmod(0o600)
    server = LogProcess(back).start()
    try:
        assert server.vkey == vkey
        size, again = await read_log(server.url, vkey)
        assert (size, again[:595]) == (597, entries)
    finally:
        server.kill()

    # A target that holds anything is refused, and left as it was.
    out = run_cli("migrate", "--from", sqlite_url, "--to", postgres_url)
    assert out.returncode == 2
    assert "is not empty" in out.stderr
    # Two full bundles sealed by the copy, the rest in the unsealed tail.
    counts = "SELECT (SELECT count(*) FROM bundles) || ' ' || (SELECT count(*) FROM entries)"
    assert postgres_server.sql(counts, postgres_url.rsplit("/", 1)[1]) == "2 85\n"


async def test_migrate_proves_the_copy(
    postgres_url: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    data = tmp_path / "log"
    await _run_log(data, publish_counts=(260,))
    _migrate(f"sqlite:///{data / 'log.db'}", postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    store = await PostgresStorage.open(postgres_url)
    try:
        head = await store.latest_head()
        assert head is not None
        assert await prove_copy(store, head) == head.root
    finally:
        await store.close()

    async def proof_fails(tamper: str, undo: str, match: str, **expect: int) -> None:
        postgres_server.sql(f"BEGIN; {tamper}; COMMIT", database)
        store = await PostgresStorage.open(postgres_url)
        try:
            assert head is not None
            with pytest.raises(VerificationError, match=match):
                await prove_copy(store, head, **expect)
        finally:
            await store.close()
            postgres_server.sql(f"BEGIN; {undo}; COMMIT", database)

    flip = "UPDATE {} SET data = set_byte(data, 5, get_byte(data, 5) # 1) WHERE {}"
    tile = flip.format("tiles", "level = 1 AND n = 0")  # level 0 is the entries
    await proof_fails(tile, tile, "hash tile 1/0 differs")
    entry = flip.format("entries", "idx = 258")  # the unsealed tail
    await proof_fails(entry, entry, "does not have the root")
    sealed = flip.format("bundles", "n = 0").replace("5", "2000")  # past the offsets
    await proof_fails(sealed, sealed, "does not have the root")
    # A copy without its metadata (as an interrupted migrate leaves it) is not served.
    postgres_server.sql(
        "DELETE FROM meta WHERE key NOT IN ('schema_version', 'index_salt')", database
    )
    out = run_cli("serve", "--data", str(tmp_path / "new"), "--database", postgres_url)
    assert out.returncode == 2 and "an interrupted sigledger migrate?" in out.stderr
    assert not (tmp_path / "new" / "log.key").exists()
    heads = int(postgres_server.sql("SELECT count(*) FROM checkpoints", database))
    await proof_fails(
        "CREATE TABLE saved AS SELECT * FROM checkpoints WHERE size = 0;"
        " DELETE FROM checkpoints WHERE size = 0",
        "INSERT INTO checkpoints SELECT * FROM saved; DROP TABLE saved",
        f"holds {heads - 1} tree heads, the source {heads}",
        heads=heads,
    )
    store = await PostgresStorage.open(postgres_url)
    try:
        assert await prove_copy(store, head, heads=heads) == head.root
    finally:
        await store.close()


def test_migrate_refuses_bad_sources(tmp_path: Path, postgres_url: str) -> None:
    out = run_cli("migrate", "--from", f"sqlite:///{tmp_path / 'none.db'}", "--to", postgres_url)
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = run_cli("migrate", "--from", postgres_url, "--to", postgres_url)
    assert out.returncode == 2 and "same database" in out.stderr
    out = run_cli("migrate", "--from", postgres_url, "--to", f"sqlite:///{tmp_path / 'x.db'}")
    assert out.returncode == 2 and "holds no log" in out.stderr


async def test_a_lost_writer_connection_is_replaced_and_the_lock_retaken(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    store = await PostgresStorage.open(postgres_url)
    try:
        await store.initialize({"origin": "o"}, merkle.EMPTY_ROOT, 1000)
        database = postgres_url.rsplit("/", 1)[1]
        # The server ends every session of the log (an administrator, a failover).
        postgres_server.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = '{database}'"
        )
        for _ in range(100):  # until the client has seen its connection go
            if store._w.is_closed():
                break
            await asyncio.sleep(0.05)
        await store.set_meta({"after": "reconnect"})
        assert await store.get_meta("after") == "reconnect"
        # The new writer session holds the lock again.
        with pytest.raises(StorageLockedError):
            await PostgresStorage.open(postgres_url)
    finally:
        await store.close()


async def test_a_new_database_next_to_a_sqlite_log_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "log"
    await _run_log(data, publish_counts=(3,))
    out = run_cli(
        "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--database", postgres_url
    )
    assert out.returncode == 2
    assert "holds a log but the database" in out.stderr
    assert "sigledger migrate --from sqlite:///" in out.stderr
    # Nothing was created: after migrating, the server starts on the copy.
    _migrate(f"sqlite:///{data / 'log.db'}", postgres_url)
    server = LogProcess(data, "--database", postgres_url).start()
    try:
        assert (await read_log(server.url, server.vkey))[0] == 3
    finally:
        server.kill()


async def test_kill9_on_postgresql_loses_nothing_acknowledged(
    postgres_url: str, tmp_path: Path
) -> None:
    # As tests/test_crash.py does for SQLite: kill -9 under load; a restart must find
    # every acknowledged entry (and take over the writer lock of the killed server).
    data = tmp_path / "log"
    signer = Signer.generate("crash-test")
    counter = itertools.count()
    rng = random.Random(20261202)
    acked: dict[int, bytes] = {}
    notes: set[bytes] = set()
    env = {"SIGLEDGER_BATCH_MAX_AGE": "0.005"}
    vkey = ""
    for _ in range(3):
        server = LogProcess(data, "--database", postgres_url, env=env).start()
        vkey = vkey or server.vkey
        try:
            workers = [
                asyncio.create_task(_hammer(server.url, signer, counter, rng, acked, notes, 6))
                for _ in range(4)
            ]
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            server.kill()
            await asyncio.wait_for(asyncio.gather(*workers), 30)
        finally:
            server.kill()
    assert len(acked) > 20
    final = LogProcess(data, "--database", postgres_url).start()
    try:
        size, entries = await read_log(final.url, vkey)
    finally:
        final.kill()
    for index, entry in acked.items():
        assert entries[index] == entry, f"entry {index} changed or was lost"
    tree = MemoryTree(merkle.leaf_hash(e) for e in entries)
    for note in notes:
        cp, _ = open_checkpoint(note, Verifier.from_vkey(vkey))
        assert cp.size <= size and tree.root(cp.size) == cp.root


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("sqlite:///var/lib/sigledger/log.db", ("sqlite", "/var/lib/sigledger/log.db")),
        ("sqlite:////var/lib/sigledger/log.db", ("sqlite", "/var/lib/sigledger/log.db")),
        ("sqlite:log-data/log.db", ("sqlite", "log-data/log.db")),
        ("postgresql://log@db:5432/log", ("postgresql", "postgresql://log@db:5432/log")),
        (
            "postgres://log@db/log?sslmode=require",
            ("postgresql", "postgres://log@db/log?sslmode=require"),
        ),
    ],
)
def test_database_urls(url: str, parsed: tuple[str, str]) -> None:
    assert parse_database_url(url) == parsed
    if parsed[0] == "sqlite":
        assert parse_database_url(sqlite_url(parsed[1])) == parsed


@pytest.mark.parametrize(
    "url", ["sqlite:", "sqlite://", "sqlite:///", "sqlite://host/log.db", "postgresql://", "/x.db"]
)
def test_bad_database_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="is not a database URL"):
        parse_database_url(url)


def test_passwords_never_show() -> None:
    assert describe("postgresql://me:s3cret@db:5432/log") == "postgresql://me:***@db:5432/log"
    with pytest.raises(ConfigError) as info:
        parse_database_url("mysql://me:s3cret@db/log")
    assert "s3cret" not in str(info.value) and "mysql://me:***@db/log" in str(info.value)


async def test_the_default_file_named_explicitly_is_the_same_log(tmp_path: Path) -> None:
    data = tmp_path / "log"
    server = LogProcess(data, "--database", f"sqlite://{data / 'log.db'}").start()
    try:
        vkey = server.vkey
        await publish(server.url, Signer.generate("alice"), _releases(tmp_path / "dist", 2))
        assert server.stop() == 0
    finally:
        server.kill()
    server = LogProcess(data).start()  # the default: the same file
    try:
        assert server.vkey == vkey
        assert (await read_log(server.url, vkey))[0] == 2
    finally:
        server.kill()


def test_a_user_without_rights_is_told_to_own_the_database(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    postgres_server.sql("CREATE DATABASE not_ours")  # owned by the superuser
    postgres_server.sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC", "not_ours")
    out = run_cli("serve", "--data", str(tmp_path), "--database", postgres_server.url("not_ours"))
    assert out.returncode != 0
    assert "permission denied" in out.stderr and "createdb -O USER DBNAME" in out.stderr


async def test_schema_2_is_compacted_with_its_violations(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """A database of schema 2 (text columns per entry, level-0 tiles stored) that holds
    two hashes of one file by one key (possible before the identity rule) migrates to
    schema 3: the same entries, found by every lookup, the violation recorded."""
    rows = [
        row(0, "demo", "1.0", "demo-1.0.tar.gz"),
        row(1, "demo", "1.0", "Demo-1.0.tar.gz"),  # alice again, another hash
        row(2, "demo", "1.0", "demo-1.0-py3-none-any.whl", signer="b"),
    ]
    conn = await asyncpg.connect(postgres_url)
    try:
        for script in MIGRATIONS[:2]:
            assert isinstance(script, str)
            await conn.execute(script)
        await conn.execute("INSERT INTO meta VALUES ('schema_version', '2'), ('origin', 'o')")
        await conn.execute("INSERT INTO signers (vkey) VALUES ($1), ($2)", ALICE, BOB)
        for r in rows:
            await conn.execute(
                "INSERT INTO entries (idx, time_ms, signer, sha256, project, version, filename,"
                " identity, data) SELECT $1, $2, id, $3, $4, $5, $6, $7, $8 FROM signers"
                " WHERE vkey = $9",
                r.index, r.time_ms, r.sha256, r.project, r.version, r.filename, r.identity,
                r.data, r.signer,
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO tiles (level, n, data) VALUES (0, 0, '\\x00'), (1, 0, '\\x01')"
        )
    finally:
        await conn.close()
    store = await PostgresStorage.open(postgres_url)
    try:
        assert await store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert await store.read_entry_rows(0, 3) == rows
        assert await store.identity_violations() == [(ALICE, rows[0].identity, [0, 1])]
        found = await store.lookup(EntryQuery(below=3, sha256=rows[2].sha256))
        assert [i for i, _ in found] == [2]
        assert [i for i, _ in await store.lookup(EntryQuery(below=3, project="demo"))] == [0, 1, 2]
        # Level 0 comes from the entries now; higher levels stay as stored.
        leaves = b"".join(merkle.leaf_hash(r.data) for r in rows)
        assert await store.read_tiles([(0, 0), (1, 0)]) == {(0, 0): leaves, (1, 0): b"\x01"}
    finally:
        await store.close()


async def test_sealed_entries_are_read_one_by_one_or_whole(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """Full tiles are sealed in the commit that fills them: one bundle row each, their
    rows gone from ``entries``; a lookup reads a sealed entry alone (two slices of its
    bundle), a range read the whole bundle, which is then kept."""
    store = await PostgresStorage.open(postgres_url)
    try:
        await store.initialize({"origin": "o"}, b"\0" * 32, 1000)
        await _commit_many(store, [300, 600])
    finally:
        await store.close()
    database = postgres_url.rsplit("/", 1)[1]
    counts = "SELECT (SELECT count(*) FROM bundles) || ' ' || (SELECT min(idx) FROM entries)"
    assert postgres_server.sql(counts, database) == "2 512\n"
    store = await PostgresStorage.open(postgres_url)
    try:
        for i in (3, 300, 511, 599):
            found = await store.lookup(EntryQuery(below=600, sha256=MANY[i].sha256))
            assert found == [(i, MANY[i].data)]
        assert not store._bundles
        assert await store.read_entries(250, 260) == [r.data for r in MANY[250:260]]
        assert sorted(store._bundles) == [0, 1]
    finally:
        await store.close()


async def test_schema_3_is_sealed(postgres_url: str, postgres_server: PostgresServer) -> None:
    """A schema-3 database (every entry a row) migrates to schema 4 with every full tile
    sealed and the rest left in ``entries``; it reads as before and logs on."""
    conn = await asyncpg.connect(postgres_url)
    try:
        async with conn.transaction():
            for step in MIGRATIONS[:3]:
                await (conn.execute(step) if isinstance(step, str) else step(conn))
            await conn.execute(
                "INSERT INTO meta VALUES ('schema_version', '3'), ('origin', 'o');"
                " INSERT INTO checkpoints (size, root, time_ms) VALUES (0, '\\x00', 1)"
            )
        keys = IndexKeys.from_meta(
            await conn.fetchval("SELECT value FROM meta WHERE key = 'index_salt'")
        )
        await conn.execute(
            "INSERT INTO signers (vkey) SELECT unnest($1::text[])", [ALICE, BOB, CAROL]
        )
        for r in MANY[:600]:
            hkey, fkey = keys.of_row(r)
            await conn.execute(
                "INSERT INTO entries (idx, hkey, fkey, signer, data)"
                " SELECT $1, $2, $3, id, $4 FROM signers WHERE vkey = $5",
                r.index, hkey, fkey, r.data, r.signer,
            )  # fmt: skip
    finally:
        await conn.close()
    store = await PostgresStorage.open(postgres_url)
    try:
        assert await store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert await store.count_entries() == 600
        assert await store.read_entries(0, 600) == [r.data for r in MANY[:600]]
        for i in (0, 511, 512, 599):
            found = await store.lookup(EntryQuery(below=600, sha256=MANY[i].sha256))
            assert [j for j, _ in found] == [i]
        mine = await store.signer_entries(BOB, Page(600, limit=1000))
        assert sorted(j for j, _ in mine) == [r.index for r in MANY[:600] if r.signer == BOB]
        await store.commit_batch(Batch(MANY[600:700], {}, 700, b"\1" * 32, 2000))
        assert await store.read_entries(0, 700) == [r.data for r in MANY]
    finally:
        await store.close()
    database = postgres_url.rsplit("/", 1)[1]
    counts = "SELECT (SELECT count(*) FROM bundles) || ' ' || (SELECT count(*) FROM entries)"
    assert postgres_server.sql(counts, database) == "2 188\n"


async def test_key_runs_split_and_stay_whole_over_many_seals(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """Seventeen bundles sealed one commit at a time: runs split as they fill, every
    later seal lands in the runs that cover its keys, every key is found, and the
    store has vacuumed what the seals left behind."""
    rows = [row(i, f"p{i % 97}", f"{i % 4}.0", f"p{i % 97}-{i % 4}.0-{i}-py3-none-any.whl",
                signer="abc"[i % 3]) for i in range(4400)]  # fmt: skip
    store = await PostgresStorage.open(postgres_url)
    try:
        await store.initialize({"origin": "o"}, b"\0" * 32, 1000)
        for end in range(256, 4353, 256):
            await store.commit_batch(Batch(rows[end - 256 : end], {}, end, b"\1" * 32, 2000))
        await store.commit_batch(Batch(rows[4352:], {}, 4400, b"\2" * 32, 3000))
        assert store._vacuum is not None
        await store._vacuum  # (close would cancel it)
    finally:
        await store.close()
    database = postgres_url.rsplit("/", 1)[1]
    runs = postgres_server.sql(
        "SELECT kind, count(*), sum(length(items)) / 12 FROM key_runs GROUP BY kind ORDER BY kind",
        database,
    )
    for line in runs.splitlines():
        kind, count, items = map(int, line.split("|"))
        assert items == 4352 and count > 4352 // RUN_MAX, line
    vacuumed = postgres_server.sql(
        "SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_stat_user_tables"
        " WHERE last_vacuum IS NOT NULL",
        database,
    )
    assert vacuumed.split() == ["entries", "key_runs"]
    store = await PostgresStorage.open(postgres_url)
    try:
        for i in range(0, 4400, 37):
            found = await store.lookup(EntryQuery(below=4400, sha256=rows[i].sha256))
            assert found == [(i, rows[i].data)]
        release = await store.lookup(EntryQuery(below=4400, project="p5", version="1.0"))
        assert [i for i, _ in release] == [
            r.index for r in rows if (r.project, r.version) == ("p5", "1.0")
        ]
        mine = await store.signer_entries(CAROL, Page(4400, limit=5000))
        assert sorted(i for i, _ in mine) == [r.index for r in rows if r.signer == CAROL]
    finally:
        await store.close()


async def test_a_project_read_page_by_page_reads_its_runs_once(postgres_url: str) -> None:
    """The sealed indexes of a project are kept between the pages of one listing and
    brought up to date from the bundles sealed meanwhile, not read from the runs again."""
    store = await PostgresStorage.open(postgres_url)
    try:
        await store.initialize({"origin": "o"}, b"\0" * 32, 1000)
        await _commit_many(store, [300])
        query = EntryQuery(below=300, project="proj3", limit=1000)
        assert [i for i, _ in await store.lookup(query)] == [
            r.index for r in MANY[:300] if r.project == "proj3"
        ]
        await _commit_many(store, [520, 700], done=300)

        async def runs_again(*args: object) -> object:
            raise AssertionError("the runs were read again")

        store._sealed_items = runs_again  # type: ignore[method-assign]
        page = await store.lookup(EntryQuery(below=700, project="proj3", start=250, limit=1000))
        assert [i for i, _ in page] == [
            r.index for r in MANY if r.project == "proj3" and r.index >= 250
        ]
        assert [n for n, _ in store._file_ranges.values()] == [2]
    finally:
        await store.close()
