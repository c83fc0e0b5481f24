"""Read throughput of the embedded log server against nginx serving the same files.

Run from the repository root::

    .venv/bin/python bench/bench_reads.py                 # 1,000,000 entries (make_log cache)
    .venv/bin/python bench/bench_reads.py --quick         # 20,000 entries, short runs

1. **The log.** :mod:`make_log` builds (or reuses) a real log of ``--entries`` entries.
2. **The servers.** ``sigledger serve`` runs on it with ``--publish-dir`` (loopback, free
   port), so the static publication writer lays out every tile and bundle as files;
   once the published checkpoint file names the whole tree, nginx serves that directory
   with the deploy configuration (``deploy/nginx-static-reads.conf``, one worker).
3. **Tiles.** One list of paths, a seeded random mix of full entry bundles and full
   hash tiles of every level (``--paths``), is loaded against both servers with the
   same client, settings and duration: ``wrk`` when it is on ``PATH`` (one thread),
   else an aiohttp client in a separate process. Each server is warmed up first with
   one pass over the paths (nginx gets the page cache, the log server its cache of
   full tiles), then measured. The figures are requests/s, p50/p99 latency and the
   ratio embedded/nginx, both measured in the same run on the same machine.
4. **Lookups.** ``GET /lookup`` on the embedded server by ``sha256``, by release
   (``project`` and ``version``) and by ``project`` alone (a first page of up to 100
   entries, each with its own proof), for randomly chosen logged entries. The target
   (3,000/s) is for the common questions, by hash and by release.

The machine's other load distorts every figure; the ratio is the figure to compare
across machines. Prints tables and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import make_log  # noqa: E402
from common import fmt, print_table  # noqa: E402

from sigledger.ledger.entry import decode_entry  # noqa: E402
from sigledger.ledger.tiles import TILE_WIDTH, format_index  # noqa: E402
from tests.helpers import LogProcess  # noqa: E402
from tests.test_static_nginx import Nginx, nginx_binary  # noqa: E402

QUICK_ENTRIES = 20_000
TARGET_RATIO = 0.4
TARGET_LOOKUPS = 3000.0
_WRK_LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
    i = i %% #paths + 1
    return wrk.format("GET", paths[i])
end
"""


@dataclass
class Load:
    """One load run: what was asked, how fast it was answered."""

    label: str
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None


# -- paths -------------------------------------------------------------------------


def tile_paths(size: int, count: int, seed: int) -> list[str]:
    """``count`` request paths of full tiles and bundles of a tree of ``size``: half
    entry bundles, half hash tiles (level 0 mostly, higher levels by their share)."""
    rng = random.Random(seed)
    bundles = size // TILE_WIDTH
    levels = []
    level = 0
    while size >> (8 * level) >= TILE_WIDTH:
        levels.append((level, (size >> (8 * level)) // TILE_WIDTH))
        level += 1
    if not bundles or not levels:
        raise SystemExit(f"a tree of {size} entries has no full tiles; use more entries")
    out = []
    for i in range(count):
        if i % 2 == 0:
            out.append(f"/tile/entries/{format_index(rng.randrange(bundles))}")
        else:
            lv, full = rng.choices(levels, weights=[n for _, n in levels])[0]
            out.append(f"/tile/{lv}/{format_index(rng.randrange(full))}")
    return out


def lookup_paths(
    db: Path, size: int, count: int, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """``count`` ``/lookup`` paths by sha256, by release (project and version: an
    installer's question) and by project (the first page, 100 entries), of random
    logged entries (read from the database before any server opens it)."""
    rng = random.Random(seed)
    picks = [rng.randrange(size) for _ in range(count)]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [
            decode_entry(
                con.execute("SELECT data FROM entries WHERE idx = ?", (i,)).fetchone()[0]
            ).statement
            for i in picks
        ]
    finally:
        con.close()
    by_hash = [f"/lookup?sha256={r.sha256.hex()}" for r in rows]
    by_release = [f"/lookup?project={r.project}&version={r.version}" for r in rows]
    by_project = [f"/lookup?project={r.project}" for r in rows]
    return by_hash, by_release, by_project


# -- load --------------------------------------------------------------------------

_WRK_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_WRK_TOTAL = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(m?s)", re.MULTILINE)
_WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*")
_WRK_PCT = re.compile(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s)$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    wrk: str, label: str, base: str, paths: Sequence[str], seconds: float, connections: int
) -> Load:
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        listing = Path(tmp) / "paths"
        listing.write_text("\n".join(paths) + "\n")
        script = Path(tmp) / "paths.lua"
        script.write_text(_WRK_LUA % listing)
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
        out = subprocess.run(
            [*cmd, base], capture_output=True, text=True, check=True, timeout=seconds + 60
        ).stdout
    total = _WRK_TOTAL.search(out)
    rps = _WRK_RPS.search(out)
    if total is None or rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    pct = {m[1]: float(m[2]) * _UNIT_MS[m[3]] for m in _WRK_PCT.finditer(out)}
    errors = sum(int(m[1]) for m in _WRK_ERRORS.finditer(out) if m[1])
    elapsed = float(total[2]) / (1000 if total[3] == "ms" else 1)
    return Load(label, int(total[1]), errors, elapsed, float(rps[1]), pct.get("50"), pct.get("99"))


async def _client(base: str, paths: Sequence[str], seconds: float, connections: int) -> Any:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal errors
        i = offset
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.get(base + paths[i % len(paths)]) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)
            i += connections

    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn, auto_decompress=False) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session, k) for k in range(connections)))
        elapsed = time.monotonic() - started
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "seconds": elapsed,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, n * 99 // 100)] if n else None,
    }


def run_client(
    label: str, base: str, paths: Sequence[str], seconds: float, connections: int
) -> Load:
    """The aiohttp load client, in its own process (it must not share the servers' CPU
    accounting or event loop)."""
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as fh:
        fh.write("\n".join(paths))
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--client", base, fh.name, str(seconds), str(connections)],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(fh.name)
    r = json.loads(out)
    rps = r["requests"] / r["seconds"]
    return Load(label, r["requests"], r["errors"], r["seconds"], rps, r["p50_ms"], r["p99_ms"])


# -- servers -----------------------------------------------------------------------


def wait_published(public: Path, size: int, timeout: float) -> float:
    """Seconds until ``public/checkpoint`` names a tree of ``size`` entries."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            lines = (public / "checkpoint").read_text().splitlines()
            if len(lines) > 1 and int(lines[1]) >= size:
                return time.monotonic() - started
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the static publication did not reach size {size} in {timeout:.0f} s")


def tree_size(url: str) -> int:
    with urllib.request.urlopen(url + "/checkpoint", timeout=10) as resp:
        return int(resp.read().decode().splitlines()[1])


def server_cache(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = dict(
        re.findall(r'^sigledger_read_cache\{measure="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    )
    if not found:
        return "n/a"
    return (
        f"{float(found['hits']):,.0f} hits, {float(found['misses']):,.0f} misses, "
        f"{float(found['bytes']) / 2**20:,.1f} MiB held"
    )


# -- main --------------------------------------------------------------------------


def load_row(r: Load) -> tuple[str, str]:
    errors = f", {r.errors:,} errors" if r.errors else ""
    return (
        r.label,
        f"{fmt(r.rps)} req/s  p50 {fmt(r.p50_ms, ' ms')}  p99 {fmt(r.p99_ms, ' ms')}  "
        f"({r.requests:,} requests in {r.seconds:.1f} s{errors})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--entries",
        type=int,
        help=f"log entries ({make_log.DEFAULT_ENTRIES:,}; --quick {QUICK_ENTRIES:,})",
    )
    p.add_argument("--quick", action="store_true", help="small log, short runs")
    p.add_argument(
        "--data", metavar="DIR", help="log data directory (default: make_log's cache for N)"
    )
    p.add_argument("--seconds", type=float, help="seconds per measured run (10; --quick 3)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    p.add_argument("--paths", type=int, default=4000, help="distinct tile paths (4000)")
    p.add_argument("--lookups", type=int, default=1000, help="distinct lookup queries (1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        base, listing, seconds, conns = args.client
        paths = Path(listing).read_text().splitlines()
        print(json.dumps(asyncio.run(_client(base, paths, float(seconds), int(conns)))))
        return 0
    entries = args.entries or (QUICK_ENTRIES if args.quick else make_log.DEFAULT_ENTRIES)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    nginx = nginx_binary()
    if nginx is None:
        print("error: nginx is required (apt-get install nginx)", file=sys.stderr)
        return 2
    wrk = shutil.which("wrk")
    client = "wrk (1 thread)" if wrk else "aiohttp client process"

    def load(label: str, base: str, paths: Sequence[str]) -> Load:
        if wrk:
            return run_wrk(wrk, label, base, paths, seconds, args.connections)
        return run_client(label, base, paths, seconds, args.connections)

    def warm(base: str, paths: Sequence[str]) -> None:
        # One pass over every path, plus a little more: caches are filled.
        load("warm-up", base, paths)

    info = make_log.ensure_log(entries, Path(args.data) if args.data else None)
    data = Path(info.data)
    by_hash, by_release, by_project = lookup_paths(
        data / "log.db", entries, args.lookups, args.seed
    )
    paths = tile_paths(entries, args.paths, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        public = Path(tmp) / "public"
        server = LogProcess(data, "--publish-dir", str(public)).start(timeout=300)
        web: Nginx | None = None
        try:
            size = tree_size(server.url)
            publish_s = wait_published(public, size, timeout=1800)
            web = Nginx(nginx, Path(tmp) / "nginx", public, server.url.removeprefix("http://"))
            web.start()
            for base in (server.url, web.url):
                warm(base, paths)
            embedded = load("embedded: tiles + bundles", server.url, paths)
            static = load("nginx: tiles + bundles", web.url, paths)
            warm(server.url, by_hash[:200])
            lookup_hash = load("embedded: /lookup?sha256=", server.url, by_hash)
            lookup_release = load("embedded: /lookup?project=&version=", server.url, by_release)
            lookup_project = load("embedded: /lookup?project= (100)", server.url, by_project)
            cache = server_cache(server.url)
        finally:
            if web is not None:
                web.stop()
            server.stop()
    ratio = embedded.rps / static.rps if static.rps else 0.0
    print(
        f"\nreads of a log of {size:,} entries ({client}, {args.connections} connections, "
        f"{seconds:g} s per run; {len(paths):,} paths, half bundles; CPUs {os.cpu_count()})"
    )
    print_table(
        [
            load_row(embedded),
            load_row(static),
            ("ratio embedded/nginx", f"{ratio:.2f}x (target >= {TARGET_RATIO}x)"),
            ("tile cache", cache),
            load_row(lookup_hash),
            load_row(lookup_release),
            load_row(lookup_project),
            ("lookup target", f">= {TARGET_LOOKUPS:,.0f} req/s"),
            ("static publication", f"{publish_s:.1f} s until the checkpoint file named the tree"),
        ]
    )
    summary = {
        "bench": "reads",
        "entries": size,
        "client": client,
        "connections": args.connections,
        "seconds": seconds,
        "runs": [
            asdict(r) for r in (embedded, static, lookup_hash, lookup_release, lookup_project)
        ],
        "ratio": round(ratio, 3),
        "ratio_ok": ratio >= TARGET_RATIO,
        "lookup_ok": min(lookup_hash.rps, lookup_release.rps) >= TARGET_LOOKUPS,
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
