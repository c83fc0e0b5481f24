"""Benchmark of ``sigledger monitor``: catching up with a whole log from zero.

Run from the repository root::

    .venv/bin/python bench/bench_monitor.py            # under a minute once the log exists
    .venv/bin/python bench/bench_monitor.py --quick    # a 5,000-entry log, seconds

The target: the monitor verifies at least 15,000 entries per second per core,
everything included (tiles authenticated, every entry re-hashed, decoded and its
publisher signature checked, the index written).

1. **Baselines**, in this process: raw Ed25519 verifications per second (PyNaCl,
   one thread), and :func:`sigledger.client.monitor.audit.check_bundle` (re-hash, decode, verify)
   over real bundles of the log: the per-entry work no monitor can skip, so its
   rate bounds what the monitor can reach per core.
2. **The log.** :mod:`make_log` builds a real log of ``--entries`` entries (or
   reuses its cached build), served by ``sigledger serve`` on loopback.
3. **The runs**, each the real CLI as a user runs it,
   ``sigledger monitor --once --log URL --log-key VKEY --state FILE``, from an
   empty state: with ``--workers 0`` (all in the monitor process: the per-core
   figure) and with ``--workers N`` (worker processes: the wall-clock figure);
   then once more on the state the last run left (nothing new: the cost of an
   idle pass). Each must exit 0 with no alarm and index every entry. For each:
   wall time; CPU seconds of the monitor with its worker processes (``wait4``
   of the CLI process, which reaps its workers), of the server (``/proc``) and
   of everything else on the machine ("other load": on a shared machine other
   work distorts the figures). **Per core** is entries per CPU second of the
   monitor.
4. ``--fsck`` also times ``sigledger fsck`` over the same log.

The output is a table and, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import make_log  # noqa: E402
from common import fmt, print_table  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from sigledger.client.monitor.audit import check_bundle  # noqa: E402
from sigledger.ledger import tiles  # noqa: E402
from tests.helpers import LogProcess, sigledger_cmd, tree_env  # noqa: E402

TARGET_PER_CORE = 15_000
DEFAULT_ENTRIES = 100_000
QUICK_ENTRIES = 5_000


class ProcCPU:
    """CPU seconds (user+system) of a running process, from /proc (Linux); None elsewhere."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def seconds(self) -> float | None:
        try:
            fields = self.path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / tick


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# -- baselines ---------------------------------------------------------------------


def verify_rate(seconds: float) -> float:
    """Raw single-thread Ed25519 verifications per second (PyNaCl, 200-byte message)."""
    key = SigningKey(hashlib.sha256(b"sigledger bench monitor").digest())
    vk = key.verify_key
    message = bytes(range(200))
    signature = key.sign(message).signature
    done = 0
    start = time.process_time()
    for _ in range(10_000):  # bounded: at most ten million verifications
        for _ in range(500):
            vk.verify(message, signature)
        done += 500
        if time.process_time() - start >= seconds:
            break
    return done / (time.process_time() - start)


def check_rate(data: Path, bundles: int) -> tuple[float, int]:
    """Entries per CPU second of check_bundle over the log's first bundles (from its database)."""
    with sqlite3.connect(f"file:{data / 'log.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT data FROM entries WHERE idx < ? ORDER BY idx", (bundles * 256,)
        ).fetchall()
    entries = [bytes(r[0]) for r in rows]
    encoded = [tiles.encode_entry_bundle(entries[i : i + 256]) for i in range(0, len(entries), 256)]
    start = time.process_time()
    for body in encoded:
        _, infos, bad = check_bundle(body, 0)
        if bad or None in infos:
            raise RuntimeError("the benchmark log holds entries that do not verify")
    return len(entries) / (time.process_time() - start), len(entries)


# -- runs --------------------------------------------------------------------------


def run_cli(args: Sequence[str], server: ProcCPU, timeout: float) -> dict[str, Any]:
    """Run the CLI; wall time, its CPU with reaped children (wait4), server and other CPU."""
    s0, m0 = server.seconds(), machine_busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*sigledger_cmd(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tree_env(),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    wall = time.perf_counter() - t0
    s1, m1 = server.seconds(), machine_busy_seconds()
    # communicate() reaped the child; its rusage is in this process's RUSAGE_CHILDREN.
    return {
        "rc": proc.returncode,
        "stdout": out,
        "stderr": err,
        "wall_s": wall,
        "server_cpu_s": _minus(s1, s0),
        "machine_cpu_s": _minus(m1, m0),
    }


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (a finished CLI and its workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def monitor_run(
    name: str,
    url: str,
    vkey: str,
    state: Path,
    workers: int,
    entries: int,
    new_entries: int,
    server: ProcCPU,
) -> dict[str, Any]:
    before = children_cpu()
    r = run_cli(
        [
            "monitor",
            "--once",
            "--log",
            url,
            "--log-key",
            vkey,
            "--state",
            str(state),
            "--workers",
            str(workers),
        ],
        server,
        timeout=600,
    )
    cpu = children_cpu() - before
    problems = []
    if r["rc"] != 0:
        problems.append(f"exit status {r['rc']}: {r['stderr'].strip()[-300:]}")
    if r["stdout"].strip():
        problems.append(f"alarms: {r['stdout'][:300]}")
    with sqlite3.connect(state) as db:
        indexed = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    if indexed != entries:
        problems.append(f"indexed {indexed} entries, expected {entries}")
    other = None
    if r["machine_cpu_s"] is not None and r["server_cpu_s"] is not None:
        other = max(0.0, r["machine_cpu_s"] - r["server_cpu_s"] - cpu)
    return {
        "run": name,
        "workers": workers,
        "entries": new_entries,
        "wall_s": round(r["wall_s"], 3),
        "monitor_cpu_s": round(cpu, 3),
        "server_cpu_s": None if r["server_cpu_s"] is None else round(r["server_cpu_s"], 3),
        "other_cpu_s": None if other is None else round(other, 3),
        "entries_per_s": round(new_entries / r["wall_s"], 1),
        "entries_per_cpu_s": round(new_entries / cpu, 1) if cpu > 0 else None,
        "problems": problems,
    }


def fsck_run(url: str, vkey: str, workers: int, server: ProcCPU) -> dict[str, Any]:
    before = children_cpu()
    r = run_cli(
        ["fsck", url, "--log-key", vkey, "--json", "--workers", str(workers)], server, timeout=600
    )
    cpu = children_cpu() - before
    problems = []
    try:
        report = json.loads(r["stdout"])
    except ValueError:
        report = {}
    if r["rc"] != 0 or not report.get("ok"):
        problems.append(f"exit status {r['rc']}: {r['stderr'].strip()[-300:]}")
    entries = int(report.get("entries_checked", 0))
    return {
        "run": "fsck",
        "workers": workers,
        "entries": entries,
        "wall_s": round(r["wall_s"], 3),
        "monitor_cpu_s": round(cpu, 3),
        "server_cpu_s": None if r["server_cpu_s"] is None else round(r["server_cpu_s"], 3),
        "entries_per_s": round(entries / r["wall_s"], 1),
        "entries_per_cpu_s": round(entries / cpu, 1) if cpu > 0 else None,
        "problems": problems,
    }


# -- output ------------------------------------------------------------------------


def run_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    label = f"{run['run']} (--workers {run['workers']})"
    return [
        (
            label,
            f"{fmt(run['entries'])} entries in {fmt(run['wall_s'], ' s')}: "
            f"{fmt(run['entries_per_s'], ' entries/s')}",
        ),
        (
            "  CPU s monitor / server / other",
            f"{fmt(run['monitor_cpu_s'])} / {fmt(run['server_cpu_s'])} / "
            f"{fmt(run.get('other_cpu_s'))}",
        ),
        ("  per core (entries per monitor CPU s)", fmt(run["entries_per_cpu_s"], " entries/s")),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help=f"a {QUICK_ENTRIES:,}-entry log")
    p.add_argument(
        "--entries", type=int, default=None, help=f"log size ({DEFAULT_ENTRIES:,}; built once)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes of the parallel run (CPU count)",
    )
    p.add_argument("--fsck", action="store_true", help="also time sigledger fsck")
    p.add_argument("--verify-seconds", type=float, default=1.0, help="baseline length (1)")
    args = p.parse_args(argv)
    if args.entries is None:
        args.entries = QUICK_ENTRIES if args.quick else DEFAULT_ENTRIES
    if args.entries < 1:
        p.error("--entries must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cores = os.cpu_count() or 1
    print(
        f"sigledger monitor benchmark: {cores} CPU cores, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    info = make_log.ensure_log(args.entries)
    data = Path(info.data)
    n = info.entries

    print(f"(a) baselines, {args.verify_seconds:g} s ...", flush=True)
    raw = verify_rate(args.verify_seconds)
    floor, sampled = check_rate(data, bundles=min(40, (n + 255) // 256))
    print(f"    {raw:,.0f} Ed25519 verifications/s; check_bundle {floor:,.0f} entries/s")

    runs: list[dict[str, Any]] = []
    server = LogProcess(data)
    server.start()
    assert server.proc is not None
    cpu = ProcCPU(server.proc.pid)
    print(f"server: {server.url} (pid {server.proc.pid}) on {data}")
    try:
        with tempfile.TemporaryDirectory(prefix="sigledger-bench-monitor-") as tmp:
            one = Path(tmp) / "single.db"
            many = Path(tmp) / "parallel.db"
            print("(b) catch-up from zero, --workers 0 ...", flush=True)
            runs.append(monitor_run("catch-up", server.url, server.vkey, one, 0, n, n, cpu))
            print(f"(c) catch-up from zero, --workers {args.workers} ...", flush=True)
            runs.append(
                monitor_run("catch-up", server.url, server.vkey, many, args.workers, n, n, cpu)
            )
            print("(d) an idle pass (nothing new) ...", flush=True)
            runs.append(
                monitor_run("idle pass", server.url, server.vkey, many, args.workers, n, 0, cpu)
            )
            if args.fsck:
                print(f"(e) fsck, --workers {args.workers} ...", flush=True)
                runs.append(fsck_run(server.url, server.vkey, args.workers, cpu))
    finally:
        rc = server.stop()

    single = runs[0]
    per_core = single["entries_per_cpu_s"] or 0.0
    # Start-up (interpreter, imports, state, checkpoint) is what an idle pass costs.
    startup = runs[2]["monitor_cpu_s"]
    steady = round(n / max(single["monitor_cpu_s"] - startup, 1e-9), 1)
    rows: list[tuple[str, str]] = [
        ("log", f"{n:,} entries ({'reused' if info.reused else 'built'}) at {data}"),
        ("raw Ed25519 verify (one core)", fmt(round(raw, 1), " /s")),
        ("check_bundle floor (one core)", f"{fmt(round(floor, 1), ' entries/s')} ({sampled:,})"),
    ]
    for run in runs:
        rows.extend(run_rows(run))
    rows.append(
        (
            "per core vs target",
            f"{fmt(per_core, ' entries/s')} vs {TARGET_PER_CORE:,}: "
            + ("MET" if per_core >= TARGET_PER_CORE else "NOT MET")
            + f"  ({per_core / floor:.0%} of the check_bundle floor,"
            f" {per_core / raw:.0%} of bare verify)",
        )
    )
    rows.append(("  per core without start-up", fmt(steady, " entries/s")))
    print_table(rows)
    problems = [p for run in runs for p in run["problems"]]
    for p in problems:
        print(f"  problem: {p}")
    result = {
        "benchmark": "sigledger-monitor",
        "cpu_count": cores,
        "python": platform.python_version(),
        "entries": n,
        "log_reused": info.reused,
        "raw_verify_per_s": round(raw, 1),
        "check_bundle_per_cpu_s": round(floor, 1),
        "runs": runs,
        "per_core_entries_per_s": per_core,
        "per_core_without_startup": steady,
        "target_per_core": TARGET_PER_CORE,
        "target_met": per_core >= TARGET_PER_CORE,
        "server_exit_status": rc,
        "errors_total": len(problems) + (rc != 0),
    }
    print(json.dumps(result, separators=(",", ":")))
    return 1 if result["errors_total"] else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
