"""Benchmark of leader takeover: ``sigledger serve --ha`` processes on one PostgreSQL
database under continuous ``/add`` load, the leader killed with SIGKILL again and again.

Run from the repository root (needs the PostgreSQL server binaries, as the tests)::

    .venv/bin/python bench/bench_takeover.py              # 20 kills, about a minute
    .venv/bin/python bench/bench_takeover.py --kills 5    # smoke test

It starts a throwaway PostgreSQL cluster (``tests/postgres.py``) and ``--servers``
log servers on one database; writers send ``/add`` requests of 1-20 statements to
random live servers (followers forward them to the leader). Every ``--interval``
seconds the leader is killed and a fresh server started in its place. Per kill:

* **takeover**: from the SIGKILL until another server reports itself the leader
  (``/healthz``): the election period plus loading the tree;
* **write gap**: from the SIGKILL until the next acknowledged ``/add`` (what a
  submitter sees, including its retry after a refused or broken request).

At the end, the log is checked exactly as in ``tests/test_ha.py`` (every receipt's
entry at its index, one root per size, every checkpoint seen consistent with the
final tree). Printed: p50/p90/max of both, and acknowledged entries per second over
the whole run; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import fmt, print_table  # noqa: E402
from tests.postgres import PostgresServer, find_bindir  # noqa: E402
from tests.test_ha import Cluster, Load  # noqa: E402


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(kills: int, servers: int, interval: float, writers: int) -> dict[str, object]:
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries (initdb, pg_ctl, psql) not found")
    pg = PostgresServer(bindir).start()
    root = Path(tempfile.mkdtemp(prefix="sigledger-takeover-"))
    cluster = Cluster(root, pg.create_database())
    load = Load(cluster, seed=1)
    takeovers: list[float] = []
    gaps: list[float] = []
    try:
        for _ in range(servers):
            cluster.start()
        load.start(writers)
        started = time.monotonic()
        for _ in range(kills):
            await asyncio.sleep(interval)
            leader, _ = await cluster.leader()
            killed = time.monotonic()
            leader.kill()
            _, took = await cluster.leader()
            takeovers.append(took)
            cluster.start()
            while not any(t > killed for t in load.ack_times):
                await asyncio.sleep(0.01)
            gaps.append(min(t for t in load.ack_times if t > killed) - killed)
        await asyncio.sleep(1.0)
        await load.stop()
        elapsed = time.monotonic() - started
        size = await load.check()
    finally:
        load.stopping = True
        cluster.stop()
        pg.stop()
    return {
        "kills": kills,
        "servers": servers,
        "takeover_p50_s": quantile(takeovers, 0.5),
        "takeover_p90_s": quantile(takeovers, 0.9),
        "takeover_max_s": max(takeovers),
        "takeover_mean_s": statistics.fmean(takeovers),
        "write_gap_p50_s": quantile(gaps, 0.5),
        "write_gap_p90_s": quantile(gaps, 0.9),
        "write_gap_max_s": max(gaps),
        "acknowledged_entries": len(load.acked),
        "entries_per_s": len(load.acked) / elapsed,
        "log_size": size,
        "read_outage_max_s": load.read_outage,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--interval", type=float, default=1.5, help="seconds between kills")
    p.add_argument("--writers", type=int, default=3, help="concurrent /add clients")
    args = p.parse_args()
    figures = asyncio.run(run(args.kills, args.servers, args.interval, args.writers))
    print(f"leader killed {args.kills} times under load ({args.servers} servers):")
    print_table((k, fmt(v)) for k, v in figures.items())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
