"""Benchmark of ``POST /add`` against a real ``sigledger serve`` subprocess.

Run from the repository root::

    .venv/bin/python bench/bench_add.py            # about 1-2 minutes
    .venv/bin/python bench/bench_add.py --quick    # a few seconds, smoke test
    .venv/bin/python bench/bench_add.py --flood    # 512 flooding connections (bench/flood.py)
    .venv/bin/python bench/bench_add.py --engine both   # SQLite and PostgreSQL side by side

It starts a log with default settings (but for the per-client and per-signer
rate limits, which are off: every request comes from one loopback address and
the point is capacity) in a temporary directory on a free loopback port and
measures, in order:

(a) **baseline**: raw Ed25519 verifications per second of this machine
    (PyNaCl ``VerifyKey.verify`` of a 200-byte message, one thread);
(b) **throughput**: several concurrent connections each sending msgpack
    ``/add`` requests of ``--request-size`` statements back to back for
    ``--duration`` seconds (or until the pre-signed pool runs out); entries/s
    acknowledged in a steady-state window, cross-checked with the growth of the
    published tree size, and the ratio to the baseline;
(c) **latency**: single-statement JSON requests offered open-loop at
    ``--latency-rate`` per second for ``--latency-duration`` seconds; latency is
    measured from each request's *scheduled* send time to the receipt (so a
    slow server cannot hide queueing delay), with the latency from the actual
    send shown next to it.

``--engine`` (or ``--database``) picks where the log lives: ``sqlite`` (the
default: ``log.db`` in the data directory), ``postgresql`` (a throwaway
PostgreSQL cluster started by the benchmark, ``tests/postgres.py``, with
``fsync=on``; stopped at the end) or ``both``: phases (b) and (c) then run
against one fresh server per engine, with the same statements, and the summary
shows the engines side by side.

Every statement is unique (each phase uses its own), real (release files of
the projects in ``--projects``, a TSV with header ``rank name version``) and
signed before any timing starts: signing is the publisher's cost, not the
log's. Every response must be 200 with one receipt per statement; anything
else is counted as an error. The output is a table and, as its last line, one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import csv
import gc
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from common import fmt, print_table  # noqa: E402
from flood import run_flood  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402
from packaging.version import InvalidVersion, Version  # noqa: E402

from sigledger.client.publish.submit import sign_statement  # noqa: E402
from sigledger.ledger.entry import SignedStatement, Statement  # noqa: E402
from sigledger.ledger.errors import FormatError  # noqa: E402
from sigledger.ledger.note import Signer  # noqa: E402
from sigledger.ledger.wire import JSON_TYPE, MSGPACK_TYPE, encode_add_request  # noqa: E402
from tests.helpers import LogProcess  # noqa: E402
from tests.postgres import PostgresServer, find_bindir  # noqa: E402

DEFAULT_PROJECTS = "../shared/data/pypi-top-projects.tsv"  # relative to the repository root
NO_RATE_LIMITS = {"SIGLEDGER_CLIENT_RATE": "0", "SIGLEDGER_SIGNER_RATE": "0"}
PUBLISHERS = 32

# The files of one release: an sdist, a pure wheel and binary wheels.
_PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "musllinux_1_2_x86_64",
    "macosx_11_0_arm64",
    "win_amd64",
)
_PYTHONS = ("cp39", "cp310", "cp311", "cp312", "cp313")
VARIANTS: tuple[str, ...] = (
    "sdist",
    "py3-none-any",
    *(f"{py}-{py}-{plat}" for py in _PYTHONS for plat in _PLATFORMS),
)


# -- workload ----------------------------------------------------------------------


def load_projects(path: Path | None) -> tuple[list[tuple[str, str]], str]:
    """(name, version) rows of the projects file, and where they came from."""
    if path is None or not path.is_file():
        return [], "synthetic"
    rows: list[tuple[str, str]] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, [])
        if [h.strip().lower() for h in header[:3]] != ["rank", "name", "version"]:
            print(
                f"warning: {path} does not start with 'rank name version'; using synthetic names",
                file=sys.stderr,
            )
            return [], "synthetic"
        for row in reader:
            if len(row) >= 3 and row[1].strip() and row[2].strip():
                rows.append((row[1].strip(), row[2].strip()))
    return rows, str(path)


def release_specs(
    rows: Sequence[tuple[str, str]], need: int, synthetic: str = "bench-synthetic"
) -> list[tuple[str, str, str]]:
    """At least ``need`` distinct (project, version, filename) triples, release by release.

    Names and versions are canonicalized here; rows that do not canonicalize are
    skipped. When the rows run out, synthetic projects fill up the rest.
    """
    specs: list[tuple[str, str, str]] = []
    seen: set[str] = set()

    def add_release(name: str, version: str) -> None:
        try:
            project = str(canonicalize_name(name))
            ver = str(Version(version))
        except InvalidVersion:
            return
        if project in seen:
            return
        seen.add(project)
        stem = f"{project.replace('-', '_')}-{ver}"
        for variant in VARIANTS:
            filename = f"{stem}.tar.gz" if variant == "sdist" else f"{stem}-{variant}.whl"
            specs.append((project, ver, filename))

    for name, version in rows:
        if len(specs) >= need:
            break
        add_release(name, version)
    n = 0
    while len(specs) < need:
        add_release(f"{synthetic}-{n}", f"1.{n % 50}.{n // 50}")
        n += 1
    return specs


_signers: list[Signer] = []


def _publishers() -> list[Signer]:
    if not _signers:
        for i in range(PUBLISHERS):
            name = f"publisher-{i:02d}@bench.example"
            seed = hashlib.sha256(f"sigledger bench publisher {i}".encode()).digest()
            _signers.append(Signer.from_seed(name, seed))
    return _signers


def sign_specs(specs: Sequence[tuple[str, str, str]]) -> list[SignedStatement]:
    """Build and sign one statement per spec (run in worker processes)."""
    signers = _publishers()
    out: list[SignedStatement] = []
    for project, version, filename in specs:
        digest = hashlib.sha256(f"bench file {filename}".encode()).digest()
        size = 10_000 + int.from_bytes(digest[:3], "big")
        try:
            st = Statement.create(project, version, filename, digest, size)
        except FormatError:
            continue
        signer = signers[zlib.crc32(project.encode()) % len(signers)]
        out.append(sign_statement(signer, st))
    return out


def presign(specs: Sequence[tuple[str, str, str]], workers: int) -> list[SignedStatement]:
    chunks = [specs[i : i + 2000] for i in range(0, len(specs), 2000)]
    if workers <= 1 or len(chunks) <= 1:
        return [s for c in chunks for s in sign_specs(c)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        return [s for part in pool.map(sign_specs, chunks) for s in part]


# -- measurements ------------------------------------------------------------------


def verify_rate(seconds: float) -> tuple[float, int]:
    """Raw single-thread Ed25519 verifications per second (PyNaCl, 200-byte message)."""
    key = SigningKey(hashlib.sha256(b"sigledger bench verify").digest())
    vk = key.verify_key
    message = bytes(range(200))
    signature = key.sign(message).signature
    for _ in range(200):  # warm up
        vk.verify(message, signature)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    for _ in range(100_000):  # bounded: at most 100 million verifications
        for _ in range(1000):
            vk.verify(message, signature)
        done += 1000
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start), done


class ProcCPU:
    """CPU seconds (user+system) used by a process, from /proc (Linux); None elsewhere."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def seconds(self) -> float | None:
        return self._read(self.path)

    def main_thread_seconds(self) -> float | None:
        """CPU seconds of the main thread alone (the server's event loop)."""
        return self._read(self.path.parent / "task" / self.path.parent.name / "stat")

    def _read(self, path: Path) -> float | None:
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick


class SystemCPU:
    """Busy CPU seconds of the whole machine, from /proc/stat (Linux); None elsewhere.

    The machine may be shared: busy time not used by the server or this client is
    other load, which distorts the figures; it is reported as ``other_cpu_pct``.
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def seconds(self) -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                values = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return (sum(values[:8]) - idle) / self.tick


class CPUWatch:
    """CPU used by the server, this client and everything else during one phase."""

    def __init__(self, server: ProcCPU) -> None:
        self.server = server
        self.system = SystemCPU()
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.s0, self.m0, self.c0 = (
            self.server.seconds(),
            self.system.seconds(),
            time.process_time(),
        )
        self.l0 = self.server.main_thread_seconds()

    def stop(self) -> dict[str, float | None]:
        elapsed = time.monotonic() - self.t0
        s1, m1, c1 = self.server.seconds(), self.system.seconds(), time.process_time()
        l1 = self.server.main_thread_seconds()
        loop = l1 - self.l0 if l1 is not None and self.l0 is not None else None
        server = s1 - self.s0 if s1 is not None and self.s0 is not None else None
        machine = m1 - self.m0 if m1 is not None and self.m0 is not None else None
        client = c1 - self.c0
        other = machine - server - client if machine is not None and server is not None else None

        def pct(v: float | None) -> float | None:
            return None if v is None else round(100 * max(v, 0.0) / elapsed, 1)

        return {
            "server_cpu_pct": pct(server),
            "server_loop_cpu_pct": pct(loop),
            "client_cpu_pct": pct(client),
            "other_cpu_pct": pct(other),
            "server_cpu_s": server,
        }


@dataclass
class Errors:
    statuses: Counter[str] = field(default_factory=Counter)
    first: str = ""

    def add(self, what: str, detail: bytes | str = b"") -> None:
        self.statuses[what] += 1
        if not self.first:
            text = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
            self.first = f"{what}: {text[:200]}".rstrip(": ")

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def check_receipts(body: bytes, expected: int) -> str | None:
    """None when ``body`` holds ``expected`` receipts of newly added entries, else why not."""
    try:
        receipts = json.loads(body)["receipts"]
    except (ValueError, KeyError, TypeError):
        return "malformed-body"
    if not isinstance(receipts, list) or len(receipts) != expected:
        return "wrong-receipt-count"
    if any(r.get("status") != "added" for r in receipts):
        return "not-added"
    return None


async def tree_size(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/checkpoint") as resp:
        text = await resp.text()
    return int(text.split("\n")[1])


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(p / 100 * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, rank))]


async def run_throughput(
    url: str,
    bodies: Sequence[tuple[bytes, int]],
    connections: int,
    duration: float,
    warmup: float,
    cpu: ProcCPU,
) -> dict[str, Any]:
    errors = Errors()
    completions: list[tuple[float, int]] = []
    next_body = 0
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Content-Type": MSGPACK_TYPE}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        size_before = await tree_size(session, url)
        watch = CPUWatch(cpu)
        start = time.monotonic()
        deadline = start + duration

        async def worker() -> None:
            nonlocal next_body
            while time.monotonic() < deadline and next_body < len(bodies):
                body, count = bodies[next_body]
                next_body += 1
                try:
                    async with session.post(url + "/add", data=body, headers=headers) as resp:
                        data = await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.add(type(exc).__name__, str(exc))
                    continue
                if status != 200:
                    errors.add(f"HTTP {status}", data)
                    continue
                problem = check_receipts(data, count)
                if problem:
                    errors.add(problem)
                    continue
                completions.append((time.monotonic(), count))

        await asyncio.gather(*(worker() for _ in range(connections)))
        end = time.monotonic()
        usage = watch.stop()
        size_after = await tree_size(session, url)
    stop_issuing = min(deadline, end)
    window_start = start + warmup if stop_issuing - start > 2 * warmup else start
    in_window = sum(n for t, n in completions if window_start <= t <= stop_issuing)
    acked = sum(n for _, n in completions)
    elapsed = end - start
    server_cpu = usage.pop("server_cpu_s")
    return {
        "connections": connections,
        "requests_ok": len(completions),
        "entries_acked": acked,
        "entries_integrated": size_after - size_before,
        "elapsed_s": round(elapsed, 3),
        "pool_exhausted": next_body >= len(bodies),
        "entries_per_s": round(in_window / (stop_issuing - window_start), 1),
        "entries_per_s_overall": round((size_after - size_before) / elapsed, 1),
        "window_s": round(stop_issuing - window_start, 3),
        **usage,
        "server_cpu_ms_per_entry": round(1000 * server_cpu / acked, 4)
        if server_cpu is not None and acked
        else None,
        "errors": errors.total,
        "error_kinds": dict(errors.statuses),
        "first_error": errors.first,
    }


async def run_latency(
    url: str, bodies: Sequence[bytes], rate: float, cpu: ProcCPU, max_connections: int
) -> dict[str, Any]:
    errors = Errors()
    from_schedule: list[float] = []
    from_send: list[float] = []
    last_done = 0.0
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=max_connections)
    headers = {"Content-Type": JSON_TYPE}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open the connections before the clock starts.
        async def touch() -> None:
            async with session.get(url + "/healthz") as resp:
                await resp.read()

        await asyncio.gather(*(touch() for _ in range(8)))
        watch = CPUWatch(cpu)

        async def one(body: bytes, scheduled: float) -> None:
            nonlocal last_done
            sent = time.monotonic()
            try:
                async with session.post(url + "/add", data=body, headers=headers) as resp:
                    data = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.add(type(exc).__name__, str(exc))
                return
            done = time.monotonic()
            if status != 200:
                errors.add(f"HTTP {status}", data)
                return
            problem = check_receipts(data, 1)
            if problem:
                errors.add(problem)
                return
            from_schedule.append(done - scheduled)
            from_send.append(done - sent)
            last_done = max(last_done, done)

        tasks: list[asyncio.Task[None]] = []
        lag_max = 0.0
        start = time.monotonic()
        for i, body in enumerate(bodies):  # open loop: send on schedule, never wait for answers
            scheduled = start + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lag_max = max(lag_max, time.monotonic() - scheduled)
            tasks.append(asyncio.create_task(one(body, scheduled)))
        offered_end = time.monotonic()
        await asyncio.gather(*tasks)
        end = time.monotonic()
        usage = watch.stop()
    from_schedule.sort()
    from_send.sort()
    ok = len(from_schedule)
    server_cpu = usage.pop("server_cpu_s")

    def ms(v: float) -> float | None:
        return None if math.isnan(v) else round(1000 * v, 2)

    return {
        "offered_rate": rate,
        "requests": len(bodies),
        "requests_ok": ok,
        "offered_s": round(offered_end - start, 3),
        "achieved_rate": round(ok / ((last_done or end) - start), 1) if ok else 0.0,
        "p50_ms": ms(percentile(from_schedule, 50)),
        "p90_ms": ms(percentile(from_schedule, 90)),
        "p99_ms": ms(percentile(from_schedule, 99)),
        "max_ms": ms(from_schedule[-1] if ok else math.nan),
        "send_p50_ms": ms(percentile(from_send, 50)),
        "send_p99_ms": ms(percentile(from_send, 99)),
        "send_max_ms": ms(from_send[-1] if ok else math.nan),
        "dispatch_lag_max_ms": ms(lag_max),
        **usage,
        "server_cpu_ms_per_request": round(1000 * server_cpu / ok, 4)
        if server_cpu is not None and ok
        else None,
        "errors": errors.total,
        "error_kinds": dict(errors.statuses),
        "first_error": errors.first,
    }


# -- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds in all (smoke test); shortens every phase",
    )
    p.add_argument(
        "--projects",
        default=None,
        help=f"TSV of projects (rank, name, version); default {DEFAULT_PROJECTS} "
        "relative to the repository root; synthetic names if absent",
    )
    p.add_argument("--verify-seconds", type=float, default=None, help="baseline length (2)")
    p.add_argument("--duration", type=float, default=None, help="throughput phase seconds (20)")
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds at the start of the throughput phase left out of the rate (2)",
    )
    p.add_argument("--connections", type=int, default=8, help="throughput connections (8)")
    p.add_argument(
        "--request-size", type=int, default=100, help="statements per throughput request (100)"
    )
    p.add_argument(
        "--pool",
        type=int,
        default=None,
        help="statements pre-signed for the throughput phase (100000); the phase "
        "ends early if they run out",
    )
    p.add_argument(
        "--latency-rate",
        type=float,
        default=1000.0,
        help="offered single-statement requests per second (1000)",
    )
    p.add_argument(
        "--latency-duration", type=float, default=None, help="latency phase seconds (10)"
    )
    p.add_argument(
        "--latency-connections",
        type=int,
        default=256,
        help="most connections open at once in the latency phase (256)",
    )
    p.add_argument(
        "--engine",
        "--database",
        dest="engine",
        choices=("sqlite", "postgresql", "both"),
        default="sqlite",
        help="where the log lives: sqlite, postgresql (a throwaway cluster) or both (sqlite)",
    )
    p.add_argument(
        "--flood",
        action="store_true",
        help="flood mode instead of (b) and (c): see bench/flood.py",
    )
    p.add_argument("--flood-connections", type=int, default=512, help="flooding connections (512)")
    p.add_argument("--flood-duration", type=float, default=None, help="flood seconds (20)")
    p.add_argument(
        "--flood-processes", type=int, default=2, help="client processes sharing the flood (2)"
    )
    p.add_argument(
        "--sign-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes for pre-signing (CPU count)",
    )
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "verify_seconds": (2.0, 0.5),
        "duration": (20.0, 3.0),
        "warmup": (2.0, 0.5),
        "pool": (100_000, 8_000),
        "latency_duration": (10.0, 2.0),
        "flood_duration": (20.0, 4.0),
    }
    for name, (normal, short) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, short if quick else normal)
    if args.connections < 1 or args.request_size < 1 or args.pool < args.request_size:
        p.error("--connections and --request-size must be >= 1 and --pool >= --request-size")
    if not 0 < args.latency_rate <= 100_000 or args.latency_duration <= 0 or args.duration <= 0:
        p.error("rates and durations must be positive (latency rate at most 100000)")
    return args


def cpu_row(phase: dict[str, Any], note: str) -> tuple[str, str]:
    """Table row: CPU % of one core used by the server (its event-loop thread), the client
    and other processes on the machine during a phase."""
    return (
        "  CPU % server (loop) / client / other",
        f"{fmt(phase['server_cpu_pct'])} ({fmt(phase['server_loop_cpu_pct'])}) / "
        f"{fmt(phase['client_cpu_pct'])} / {fmt(phase['other_cpu_pct'])}  {note}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.flood:
        return main_flood(args)
    projects_path = Path(args.projects) if args.projects else (ROOT / DEFAULT_PROJECTS).resolve()
    rows, source = load_projects(projects_path)
    latency_count = max(1, round(args.latency_rate * args.latency_duration))
    cores = os.cpu_count()
    print(
        f"sigledger /add benchmark: {cores} CPU cores, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    print(f"projects: {source} ({len(rows)} rows)")

    print(f"(a) raw Ed25519 verify rate, {args.verify_seconds:g} s ...", flush=True)
    raw_rate, raw_n = verify_rate(args.verify_seconds)
    print(f"    {raw_rate:,.0f} verifications/s ({raw_n:,} done)")

    print("pre-signing statements ...", flush=True)
    t = time.monotonic()
    # Ask for a little more than needed: rows whose statements do not validate are skipped.
    specs = release_specs(rows, int((args.pool + latency_count) * 1.02) + len(VARIANTS))
    signed = presign(specs, args.sign_workers)
    if len(signed) < args.pool + latency_count:
        more = release_specs(
            [], args.pool + latency_count - len(signed) + len(VARIANTS), synthetic="bench-extra"
        )
        signed += presign(more, args.sign_workers)
    pool, latency_stmts = signed[: args.pool], signed[args.pool : args.pool + latency_count]
    step = args.request_size
    tput_bodies = [
        (encode_add_request(pool[i : i + step], MSGPACK_TYPE), len(pool[i : i + step]))
        for i in range(0, len(pool), step)
    ]
    lat_bodies = [encode_add_request([s], JSON_TYPE) for s in latency_stmts]
    print(
        f"    {len(signed):,} statements signed and encoded in {time.monotonic() - t:.1f} s "
        f"(not timed); {len(tput_bodies):,} msgpack bodies, {len(lat_bodies):,} JSON bodies"
    )
    # Only the encoded bodies are needed from here on. Keep the collector from walking
    # them again and again while timing (full collections would stall the client).
    del signed, pool, latency_stmts, specs
    gc.collect()
    gc.freeze()

    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    results: dict[str, tuple[dict[str, Any], dict[str, Any], int | None, list[str]]] = {}
    postgres: PostgresServer | None = None
    try:
        if "postgresql" in engines:
            bindir = find_bindir()
            if bindir is None:
                print(
                    "PostgreSQL server binaries (initdb, pg_ctl, psql) not found", file=sys.stderr
                )
                return 2
            postgres = PostgresServer(bindir).start()
            print(f"postgresql: throwaway cluster on port {postgres.port} (fsync=on)")
        for engine in engines:
            database = postgres.create_database() if engine == "postgresql" and postgres else None
            results[engine] = run_engine(args, engine, database, tput_bodies, lat_bodies)
    finally:
        if postgres is not None:
            postgres.stop()
    if len(engines) == 1:
        return report_one(args, cores, source, raw_rate, step, *results[engines[0]])
    return report_engines(args, cores, source, raw_rate, step, results)


def run_engine(
    args: argparse.Namespace,
    engine: str,
    database: str | None,
    tput_bodies: Sequence[tuple[bytes, int]],
    lat_bodies: Sequence[bytes],
) -> tuple[dict[str, Any], dict[str, Any], int | None, list[str]]:
    """Phases (b) and (c) against a fresh server on ``engine``: both results, the
    server's exit status and its warnings and errors."""
    step = args.request_size
    extra = ("--database", database) if database else ()
    with tempfile.TemporaryDirectory(prefix="sigledger-bench-") as tmp:
        server = LogProcess(Path(tmp) / "log", *extra, env=NO_RATE_LIMITS)
        server.start()
        assert server.proc is not None
        cpu = ProcCPU(server.proc.pid)
        print(
            f"[{engine}] server: {server.url} (pid {server.proc.pid}), default settings, "
            "no rate limits"
        )
        try:
            print(
                f"[{engine}] (b) throughput: {args.connections} connections x {step} "
                f"statements/request (msgpack), {args.duration:g} s ...",
                flush=True,
            )
            tput = asyncio.run(
                run_throughput(
                    server.url, tput_bodies, args.connections, args.duration, args.warmup, cpu
                )
            )
            print(
                f"[{engine}] (c) latency: {args.latency_rate:g} single-statement JSON "
                f"requests/s open-loop, {args.latency_duration:g} s ...",
                flush=True,
            )
            lat = asyncio.run(
                run_latency(
                    server.url, lat_bodies, args.latency_rate, cpu, args.latency_connections
                )
            )
        finally:
            rc = stop_server(server)
            server_errors = [  # the server's JSON log lines (stdout) at warning or above
                line.strip()
                for log_file in sorted(Path(tmp).glob("*.log"))
                for line in log_file.read_text(errors="replace").splitlines()
                if '"level": "error"' in line or '"level": "warning"' in line
            ]
    return tput, lat, rc, server_errors


def report_engines(
    args: argparse.Namespace,
    cores: int | None,
    source: str,
    raw_rate: float,
    step: int,
    results: dict[str, tuple[dict[str, Any], dict[str, Any], int | None, list[str]]],
) -> int:
    """The engines side by side; the last line is one JSON object with every figure."""
    engines = list(results)

    def row(label: str, value: Any) -> tuple[str, str]:
        return label, "".join(f"{value(*results[e]):>26}" for e in engines)

    print()
    print(f"summary ({cores} cores; server, database and client share them)")
    print_table(
        [
            ("", "".join(f"{e:>26}" for e in engines)),
            row("throughput entries/s (steady)", lambda t, *_: fmt(t["entries_per_s"], " /s")),
            (
                "throughput entries/s (overall)",
                "".join(
                    f"{fmt(results[e][0]['entries_per_s_overall'], ' /s'):>26}" for e in engines
                ),
            ),
            row(
                "throughput / raw verify rate", lambda t, *_: f"{t['entries_per_s'] / raw_rate:.3f}"
            ),
            row("  server CPU ms per entry", lambda t, *_: fmt(t["server_cpu_ms_per_entry"])),
            row("  errors", lambda t, *_: str(t["errors"])),
            row(
                "latency offered / achieved",
                lambda _t, la, *_: f"{la['offered_rate']:g} / {la['achieved_rate']:g} /s",
            ),
            row("latency p50 (from schedule)", lambda _t, la, *_: fmt(la["p50_ms"], " ms")),
            row("latency p99 (from schedule)", lambda _t, la, *_: fmt(la["p99_ms"], " ms")),
            row("latency max (from schedule)", lambda _t, la, *_: fmt(la["max_ms"], " ms")),
            row(
                "  p50 / p99 from actual send",
                lambda _t, la, *_: f"{la['send_p50_ms']} / {la['send_p99_ms']} ms",
            ),
            row("  errors", lambda _t, la, *_: str(la["errors"])),
            row("server exit status", lambda _t, _l, rc, _e: fmt(rc)),
            row("server log errors/warnings", lambda _t, _l, _rc, errs: str(len(errs))),
        ]
    )
    total_errors = 0
    out: dict[str, Any] = {}
    for engine, (tput, lat, rc, server_errors) in results.items():
        for phase in (tput, lat):
            if phase["first_error"]:
                print(f"  [{engine}] first error: {phase['first_error']}")
        for line in server_errors[:5]:
            print(f"  [{engine}] server: {line[:300]}")
        total_errors += tput["errors"] + lat["errors"] + len(server_errors) + (rc != 0)
        out[engine] = {
            "throughput": {
                **tput,
                "request_size": step,
                "ratio_to_raw_verify": round(tput["entries_per_s"] / raw_rate, 4),
            },
            "latency": lat,
            "server_exit_status": rc,
            "server_log_errors": len(server_errors),
        }
    result = {
        "benchmark": "sigledger-add-engines",
        "cpu_count": cores,
        "python": platform.python_version(),
        "quick": args.quick,
        "projects_source": source,
        "raw_verify_per_s": round(raw_rate, 1),
        "engines": out,
        "errors_total": total_errors,
    }
    print(json.dumps(result, separators=(",", ":")))
    return 1 if total_errors else 0


def report_one(
    args: argparse.Namespace,
    cores: int | None,
    source: str,
    raw_rate: float,
    step: int,
    tput: dict[str, Any],
    lat: dict[str, Any],
    rc: int | None,
    server_errors: list[str],
) -> int:
    """One engine's summary; the last line is one JSON object with every figure."""
    ratio = tput["entries_per_s"] / raw_rate if raw_rate else 0.0
    print()
    print(f"summary ({cores} cores; server and client share them)")
    print_table(
        [
            ("raw Ed25519 verify, 1 thread", fmt(round(raw_rate), " /s")),
            (
                "throughput entries/s (steady)",
                fmt(tput["entries_per_s"], " /s")
                + f"  over {tput['window_s']:g} s after {args.warmup:g} s warm-up",
            ),
            (
                "throughput entries/s (overall)",
                fmt(tput["entries_per_s_overall"], " /s")
                + f"  tree grew {tput['entries_integrated']:,} in {tput['elapsed_s']:g} s",
            ),
            ("throughput / raw verify rate", f"{ratio:.3f}"),
            (
                "  connections x statements/req",
                f"{args.connections} x {step}"
                + ("  (pool exhausted: phase ended early)" if tput["pool_exhausted"] else ""),
            ),
            cpu_row(tput, f"{fmt(tput['server_cpu_ms_per_entry'])} ms server CPU per entry"),
            ("  errors", f"{tput['errors']} {tput['error_kinds'] or ''}".strip()),
            (
                "latency offered / achieved",
                f"{fmt(lat['offered_rate'], ' /s')} / {fmt(lat['achieved_rate'], ' /s')}"
                f"  ({lat['requests_ok']:,}/{lat['requests']:,} ok)",
            ),
            (
                "latency p50 / p99 / max",
                f"{lat['p50_ms']} / {lat['p99_ms']} / {lat['max_ms']} ms  (from scheduled send)",
            ),
            (
                "  from actual send p50/p99/max",
                f"{lat['send_p50_ms']} / {lat['send_p99_ms']} / {lat['send_max_ms']} ms",
            ),
            cpu_row(lat, f"{fmt(lat['server_cpu_ms_per_request'])} ms server CPU per request"),
            ("  errors", f"{lat['errors']} {lat['error_kinds'] or ''}".strip()),
            ("server exit status", fmt(rc)),
            ("server log errors/warnings", str(len(server_errors))),
        ]
    )
    for phase in (tput, lat):
        if phase["first_error"]:
            print(f"  first error: {phase['first_error']}")
    for line in server_errors[:5]:
        print(f"  server: {line[:300]}")
    total_errors = tput["errors"] + lat["errors"] + len(server_errors) + (rc != 0)
    result = {
        "benchmark": "sigledger-add",
        "engine": args.engine,
        "cpu_count": cores,
        "python": platform.python_version(),
        "quick": args.quick,
        "projects_source": source,
        "raw_verify_per_s": round(raw_rate, 1),
        "throughput": {**tput, "request_size": step, "ratio_to_raw_verify": round(ratio, 4)},
        "latency": lat,
        "server_exit_status": rc,
        "server_log_errors": len(server_errors),
        "errors_total": total_errors,
    }
    print(json.dumps(result, separators=(",", ":")))
    return 1 if total_errors else 0


def stop_server(server: LogProcess) -> int | None:
    """Stop gracefully and return the exit status; kill (None) if that fails."""
    try:
        return server.stop()
    except Exception:
        server.kill()
        return None


def main_flood(args: argparse.Namespace) -> int:
    projects_path = Path(args.projects) if args.projects else (ROOT / DEFAULT_PROJECTS).resolve()
    rows, source = load_projects(projects_path)
    cores = os.cpu_count()
    print(
        f"sigledger /add flood: {cores} CPU cores, Python {platform.python_version()}, "
        f"{args.flood_connections} connections, {args.flood_duration:g} s"
    )
    print("pre-signing statements ...", flush=True)
    specs = release_specs(rows, int(args.pool * 1.02) + len(VARIANTS))
    signed = presign(specs, args.sign_workers)[: args.pool]
    step = args.request_size
    bodies = [
        (encode_add_request(signed[i : i + step], MSGPACK_TYPE), len(signed[i : i + step]))
        for i in range(0, len(signed), step)
    ]
    print(f"    {len(signed):,} statements in {len(bodies):,} msgpack bodies of {step}")
    del signed, specs
    with tempfile.TemporaryDirectory(prefix="sigledger-flood-") as tmp:
        server = LogProcess(Path(tmp) / "log", env=NO_RATE_LIMITS).start()
        assert server.proc is not None
        print(f"server: {server.url} (pid {server.proc.pid}); flooding ...", flush=True)
        try:
            result = run_flood(
                server.url,
                server.proc.pid,
                bodies,
                args.flood_connections,
                args.flood_duration,
                args.flood_processes,
            )
        finally:
            rc = stop_server(server)
            tracebacks = sum(
                f.read_text(errors="replace").count("Traceback") for f in Path(tmp).glob("*.log")
            )
    passed = result["pass"]
    print()
    print(f"summary ({cores} cores; server, flooding clients and prober share them)")
    print_table(
        [
            ("requests sent / by status", f"{result['requests']:,}  {result['statuses']}"),
            ("entries acknowledged", fmt(result["entries_acked"])),
            ("entries lost (acked, not in log)", fmt(result["entries_lost"])),
            ("server RSS max (main process)", fmt(result["rss_main_max_mb"], " MB")),
            ("  verification workers, total", fmt(result["rss_workers_max_mb"], " MB")),
            (
                "/checkpoint p50 / p99 / max",
                f"{result['checkpoint_p50_ms']} / {result['checkpoint_p99_ms']} / "
                f"{result['checkpoint_max_ms']} ms ({result['checkpoint_probes']} probes)",
            ),
            (
                "/healthz p50 / p99 / max",
                f"{result['healthz_p50_ms']} / {result['healthz_p99_ms']} / "
                f"{result['healthz_max_ms']} ms",
            ),
            ("probe failures", str(result["probe_errors"] or 0)),
            (
                "server event-loop lag",
                ", ".join(
                    f"{k}: {100 * v:.1f}%"
                    for k, v in result["server_loop_lag"].items()
                    if k in ("<= 0.01 s", "<= 0.05 s", "<= 0.1 s", "<= 0.25 s")
                )
                + " of 100 ms ticks",
            ),
            ("5xx other than 503", fmt(result["server_5xx_not_503"])),
            ("server exit status / tracebacks", f"{fmt(rc)} / {tracebacks}"),
            ("pass", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in passed.items())),
        ]
    )
    out = {"benchmark": "sigledger-add-flood", "cpu_count": cores, "projects_source": source}
    out |= {**result, "server_exit_status": rc, "server_tracebacks": tracebacks}
    print(json.dumps(out, separators=(",", ":")))
    return 0 if all(passed.values()) and rc == 0 and not tracebacks else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
