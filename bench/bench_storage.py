"""Storage size, startup time and memory of a big log, on SQLite and PostgreSQL.

Run from the repository root::

    .venv/bin/python bench/bench_storage.py                  # the 1,000,000-entry log
    .venv/bin/python bench/bench_storage.py --entries 20000  # a quick run
    .venv/bin/python bench/bench_storage.py --engine sqlite  # no PostgreSQL

The log comes from ``bench/make_log.py`` (its cache directory is reused when it
holds a complete log of ``--entries`` entries, else the log is built there). It
measures:

(a) **bytes per entry**: the size of the SQLite database (``log.db`` with its
    WAL, every table and index) divided by the tree size, next to the mean
    size of one encoded entry (the ``data`` column, the bytes the log hashes);
    the target is at most entry bytes + 100 bytes per entry;
(b) for PostgreSQL, the same log copied with ``sigledger migrate`` into a
    throwaway cluster (``tests/postgres.py``, ``fsync=on``; stopped at the end)
    after a ``VACUUM``: ``pg_database_size`` (tables, indexes, TOAST and the
    empty database's own catalog of a few MB) and the log's relations alone
    (``pg_total_relation_size``), per entry; the copy time is shown. When the
    copy takes longer than ``--migrate-timeout`` seconds it is abandoned and
    the PostgreSQL figures are taken on a log of ``--fallback-entries``
    entries instead (said in the output);
(c) **startup**: wall time from starting ``sigledger serve`` (a new Python
    process) until it prints that it listens, ``--starts`` times per engine
    (the median is compared with the target of 1 s), on a copy of the data
    directory so that the cached log stays as built; the page cache is warm;
(d) **RSS** of the server process, in MB, right after it listens and again
    ``--settle`` seconds later, idle (the larger is compared with the target of
    200 MB), and of its verification worker processes together;
(e) for PostgreSQL, the layout that logging itself leaves (``--logged`` entries of
    the same log committed through the storage API in batches of ``--batch``, as
    the sequencer does, each full tile sealed by the commit that fills it, into a
    new database): bytes per entry after a ``VACUUM`` as in (b), per table,
    and the commits' rate.

The output is a table with met/NOT met per target and, as its last line, one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import children, fmt, print_table, rss_mb  # noqa: E402
from make_log import ensure_log  # noqa: E402

from sigledger.ledger.log.postgres import PostgresStorage  # noqa: E402
from sigledger.ledger.log.store import Batch, EntryRow  # noqa: E402
from tests.helpers import LogProcess, sigledger_cmd, tree_env  # noqa: E402
from tests.postgres import PostgresServer, find_bindir  # noqa: E402

TARGET_OVERHEAD = 100  # bytes per entry above the entry itself
TARGET_START_S = 1.0
TARGET_RSS_MB = 200.0


def sqlite_sizes(db: Path) -> dict[str, Any]:
    """File bytes of ``db`` (with WAL and shared memory), tree size and mean entry size."""
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    total = sum(f.stat().st_size for f in files if f.exists())
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        count, data_bytes = conn.execute(
            "SELECT count(*), sum(length(data)) FROM entries"
        ).fetchone()
    finally:
        conn.close()
    return {"entries": count, "db_bytes": total, "entry_bytes": data_bytes / count}


def measure_server(data: Path, args: Sequence[str], starts: int, settle: float) -> dict[str, Any]:
    """Start ``sigledger serve`` ``starts`` times: start-up seconds and RSS figures."""
    times: list[float] = []
    rss_listening: list[float] = []
    rss_settled: list[float] = []
    workers: list[float] = []
    for _ in range(starts):
        server = LogProcess(data, *args)
        t0 = time.monotonic()
        server.start(timeout=300)
        times.append(time.monotonic() - t0)
        assert server.proc is not None
        try:
            pid = server.proc.pid
            rss_listening.append(rss_mb(pid) or 0.0)
            time.sleep(settle)
            rss_settled.append(rss_mb(pid) or 0.0)
            workers.append(sum(rss_mb(c) or 0.0 for c in children(pid)))
        finally:
            rc = server.stop(timeout=60)
        if rc != 0:
            raise RuntimeError(f"the server exited with status {rc}")
    return {
        "start_s": [round(t, 3) for t in times],
        "start_median_s": round(statistics.median(times), 3),
        "rss_listening_mb": round(max(rss_listening), 1),
        "rss_settled_mb": round(max(rss_settled), 1),
        "rss_workers_mb": round(max(workers), 1),
    }


def migrate(source_db: Path, url: str, timeout: float) -> float | None:
    """Copy with ``sigledger migrate``; its wall time, or None when it ran out of time."""
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [*sigledger_cmd(), "migrate", "--from", f"sqlite://{source_db}", "--to", url],
            capture_output=True,
            text=True,
            env=tree_env(),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"sigledger migrate failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - t0


def postgres_sizes(pg: PostgresServer, database: str) -> dict[str, Any]:
    """The database's size and each of the log's tables (with its TOAST and indexes)."""
    pg.sql("VACUUM", database=database)
    total = int(pg.sql("SELECT pg_database_size(current_database())", database=database))
    listing = pg.sql(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC",
        database=database,
    )
    tables = {}
    for line in listing.splitlines():
        name, _, size = line.partition("|")
        tables[name.strip()] = int(size)
    return {"db_bytes": total, "log_relations_bytes": sum(tables.values()), "tables": tables}


async def log_into(db: Path, url: str, count: int, batch: int) -> float:
    """Commit the first ``count`` entries of ``db`` into a new log at ``url``, ``batch``
    at a time (no tiles: they are a fraction of a byte per entry); seconds taken."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    store = await PostgresStorage.open(url)
    try:
        await store.initialize({"origin": "bench"}, bytes(32), 0)
        t0 = time.monotonic()
        for start in range(0, count, batch):
            end = min(count, start + batch)
            rows = conn.execute(
                "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, end),
            ).fetchall()
            entries = [EntryRow.from_leaf(int(i), bytes(d)) for i, d in rows]
            await store.commit_batch(Batch(entries, {}, end, end.to_bytes(32, "big"), end))
        return time.monotonic() - t0
    finally:
        await store.close()
        conn.close()


def copy_data(source: Path, target: Path, with_db: bool) -> None:
    """The key file (and the SQLite database) of ``source`` in a new directory ``target``."""
    target.mkdir(parents=True)
    shutil.copy2(source / "log.key", target / "log.key")
    if with_db:
        shutil.copy2(source / "log.db", target / "log.db")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--entries", type=int, default=1_000_000, help="log size (1000000)")
    p.add_argument("--data", type=Path, default=None, help="log directory (make_log.py's cache)")
    p.add_argument(
        "--engine", choices=("sqlite", "postgresql", "both"), default="both", help="(both)"
    )
    p.add_argument("--starts", type=int, default=3, help="server starts per engine (3)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds idle before RSS (2)")
    p.add_argument(
        "--migrate-timeout", type=float, default=600.0, help="longest copy, seconds (600)"
    )
    p.add_argument(
        "--logged",
        type=int,
        default=None,
        help="entries committed batch by batch into PostgreSQL, 0: none (all of the log)",
    )
    p.add_argument("--batch", type=int, default=200, help="entries per commit there (200)")
    p.add_argument(
        "--fallback-entries",
        type=int,
        default=100_000,
        help="log size for PostgreSQL when the full copy runs out of time (100000)",
    )
    args = p.parse_args(argv)
    if args.entries < 1 or args.starts < 1 or args.settle < 0:
        p.error("--entries and --starts must be >= 1, --settle >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"sigledger storage benchmark: {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, {args.entries:,} entries"
    )
    info = ensure_log(args.entries, args.data)
    data = Path(info.data)
    result: dict[str, Any] = {
        "benchmark": "sigledger-storage",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "entries": args.entries,
    }
    rows: list[tuple[str, str]] = []
    lite = sqlite_sizes(data / "log.db")
    entry_bytes = lite["entry_bytes"]
    budget = entry_bytes + TARGET_OVERHEAD
    per_entry = lite["db_bytes"] / lite["entries"]
    result["sqlite"] = {**lite, "bytes_per_entry": round(per_entry, 1)}
    result["entry_bytes"] = round(entry_bytes, 1)
    rows += [
        ("mean entry size (encoded)", f"{entry_bytes:,.1f} B; target <= {budget:,.1f} B/entry"),
        (
            "SQLite bytes per entry",
            f"{per_entry:,.1f} B  ({lite['db_bytes'] / 1e6:,.1f} MB for {lite['entries']:,})"
            f"  {verdict(per_entry <= budget)}",
        ),
    ]
    if args.engine in ("sqlite", "both"):
        print("SQLite: starting the server ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="sigledger-storage-") as tmp:
            copy = Path(tmp) / "log"
            copy_data(data, copy, with_db=True)
            served = measure_server(copy, (), args.starts, args.settle)
        result["sqlite"].update(served)
        rows += server_rows("SQLite", served)
    if args.engine in ("postgresql", "both"):
        bindir = find_bindir()
        if bindir is None:
            print("PostgreSQL server binaries (initdb, pg_ctl, psql) not found", file=sys.stderr)
            return 2
        pg = PostgresServer(bindir).start()
        try:
            database = pg.create_database()
            print(f"PostgreSQL: sigledger migrate of {args.entries:,} entries ...", flush=True)
            pg_entries = args.entries
            copy_s = migrate(data / "log.db", database, args.migrate_timeout)
            source = data
            if copy_s is None:
                print(
                    f"    not done in {args.migrate_timeout:g} s; measuring PostgreSQL at "
                    f"{args.fallback_entries:,} entries instead",
                    flush=True,
                )
                rows.append(
                    (
                        "PostgreSQL copy",
                        f"{args.entries:,} entries not copied in {args.migrate_timeout:g} s",
                    )
                )
                pg_entries = args.fallback_entries
                source = Path(ensure_log(pg_entries).data)
                database = pg.create_database()
                copy_s = migrate(source / "log.db", database, args.migrate_timeout)
                if copy_s is None:
                    raise RuntimeError("the fallback copy ran out of time too")
            name = database.rsplit("/", 1)[1]
            sizes = postgres_sizes(pg, name)
            small = sqlite_sizes(source / "log.db") if source != data else lite
            pg_budget = small["entry_bytes"] + TARGET_OVERHEAD
            pg_per_entry = sizes["db_bytes"] / pg_entries
            rel_per_entry = sizes["log_relations_bytes"] / pg_entries
            result["postgresql"] = {
                "entries": pg_entries,
                "migrate_s": round(copy_s, 1),
                **sizes,
                "bytes_per_entry": round(pg_per_entry, 1),
                "log_relations_bytes_per_entry": round(rel_per_entry, 1),
                "entry_bytes": round(small["entry_bytes"], 1),
            }
            rows += [
                (
                    "PostgreSQL copy (sigledger migrate)",
                    f"{pg_entries:,} entries in {copy_s:,.1f} s",
                ),
                (
                    "PostgreSQL bytes per entry",
                    f"{pg_per_entry:,.1f} B  ({sizes['db_bytes'] / 1e6:,.1f} MB database)"
                    f"  {verdict(pg_per_entry <= pg_budget)}",
                ),
                (
                    "  the log's tables and indexes",
                    f"{rel_per_entry:,.1f} B  ({sizes['log_relations_bytes'] / 1e6:,.1f} MB)",
                ),
                *(
                    (f"    {table}", f"{size / pg_entries:,.1f} B")
                    for table, size in sizes["tables"].items()
                ),
            ]
            print("PostgreSQL: starting the server ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="sigledger-storage-") as tmp:
                copy = Path(tmp) / "log"
                copy_data(source, copy, with_db=False)
                served = measure_server(copy, ("--database", database), args.starts, args.settle)
            result["postgresql"].update(served)
            rows += server_rows(f"PostgreSQL ({pg_entries:,})", served)
            if args.logged != 0:
                count = min(args.logged or pg_entries, pg_entries)
                print(f"PostgreSQL: logging {count:,} entries, {args.batch} a commit ...")
                target = pg.create_database()
                took = asyncio.run(log_into(source / "log.db", target, count, args.batch))
                logged = postgres_sizes(pg, target.rsplit("/", 1)[1])
                per = logged["log_relations_bytes"] / count
                result["postgresql_logged"] = {
                    "entries": count,
                    "batch": args.batch,
                    "seconds": round(took, 1),
                    **logged,
                    "log_relations_bytes_per_entry": round(per, 1),
                    "bytes_per_entry": round(logged["db_bytes"] / count, 1),
                }
                rows += [
                    (
                        f"PostgreSQL, {count:,} entries logged",
                        f"{count / took:,.0f} entries/s in commits of {args.batch}",
                    ),
                    (
                        "  bytes per entry",
                        f"{logged['db_bytes'] / count:,.1f} B database"
                        f"  {verdict(logged['db_bytes'] / count <= pg_budget)}",
                    ),
                    ("  the log's tables and indexes", f"{per:,.1f} B"),
                    *(
                        (f"    {table}", f"{size / count:,.1f} B")
                        for table, size in logged["tables"].items()
                    ),
                ]
        finally:
            pg.stop()
    print()
    print(f"summary ({os.cpu_count()} cores)")
    print_table(rows)
    print(json.dumps(result, separators=(",", ":")))
    return 0


def server_rows(engine: str, served: dict[str, Any]) -> list[tuple[str, str]]:
    start = served["start_median_s"]
    rss = max(served["rss_listening_mb"], served["rss_settled_mb"])
    return [
        (
            f"{engine} serve start (median)",
            f"{start:.3f} s  (each: {', '.join(f'{t:.3f}' for t in served['start_s'])})"
            f"  {verdict(start < TARGET_START_S)}",
        ),
        (
            f"{engine} RSS listening / settled",
            f"{fmt(served['rss_listening_mb'], ' MB')} / {fmt(served['rss_settled_mb'], ' MB')}"
            f"  {verdict(rss < TARGET_RSS_MB)}",
        ),
        ("  verification workers, total", fmt(served["rss_workers_mb"], " MB")),
    ]


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
