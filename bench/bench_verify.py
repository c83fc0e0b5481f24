"""Benchmark of the installer side: ``sigledger verify`` of a lock file against a big log.

Run from the repository root::

    .venv/bin/python bench/bench_verify.py            # about a minute once the log exists
    .venv/bin/python bench/bench_verify.py --quick    # a 20,000-entry log, fewer runs

The target: verifying a 300-pin lock file against a log of a million entries
takes under 1 s warm and under 3 s cold, on loopback.

1. **The log.** :mod:`make_log` builds a real log of ``--entries`` entries (or
   reuses its cached build; building a million takes minutes, once).
2. **The lock.** ``--pins`` random logged release files, one per project (an
   entry index is drawn at random, so popular projects, which have more
   entries, are drawn more often, as in real lock files); for each, the wheel
   or the sdist of that release. They are written as a PEP 751
   ``pylock.toml`` (checked with :func:`sigledger.client.install.lockfiles.read_pylock`), as a
   hash-pinned ``requirements.txt``, and a ``policy.toml`` trusting the log key
   and, per project, the signers that logged those files
   (:func:`sigledger.client.install.policy.pin_projects`), as ``sigledger policy pin`` would.
3. **The runs.** ``sigledger serve`` runs on the log (loopback, free port).
   The real CLI is timed end to end, as a user runs it,
   ``sigledger verify --lock pylock.toml --policy policy.toml``, with
   ``SIGLEDGER_STATE_DIR`` (verified checkpoints) and ``SIGLEDGER_CACHE_DIR``
   (verified tiles) pointing to

   * *first*: an empty directory, first requests to a just-started server
     (its tile cache is cold);
   * *cold*: an empty directory (first use: trust on first use);
   * *warm*: the directory the cold run just left (the stored checkpoint is
     checked against the log's);

   and ``sigledger verify -r requirements.txt`` warm. After the first run the
   modes alternate round by round (``--runs`` rounds), so load from elsewhere
   on the machine hits them alike. Every run must exit 0 with every pin
   verified; one more run with ``--json`` checks every result is ok. For each
   run: the wall time; the CPU time of the CLI process, of the server, and of
   everything else on the machine ("other load", in cores: on a shared
   machine, other work inflates the wall times); and the HTTP requests the
   server answered (``sigledger_http_requests_total`` from ``/metrics``,
   before and after).
4. **Where the time goes.** The same check through the Python API in this
   process (:func:`sigledger.client.install.verdicts.check_artifacts` with a
   :class:`sigledger.client.trust.VerifiedLog` opened as the CLI opens it; imports
   done, files parsed), cold then warm, plus the start-up of a bare
   interpreter, of ``sigledger --version`` and of importing the client
   modules, and the parsing of the lock and policy files: what separates
   interpreter start-up and imports from the verification itself.
   ``--profile FILE`` writes a cProfile of one warm API run. The interpreter's
   bytecode settings are left as the environment has them (and reported).

The output is a table and, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import json
import os
import platform
import pstats
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import make_log  # noqa: E402
import tomli_w  # noqa: E402
from common import machine_cpu, print_table, proc_cpu  # noqa: E402

from sigledger.client.checkpoints import FileCheckpointStore  # noqa: E402
from sigledger.client.install.lockfiles import (  # noqa: E402
    Pin,
    read_pylock,
    read_requirements,
)
from sigledger.client.install.policy import LogTrust, Policy, dump_policy, load_policy, pin_projects  # noqa: E402
from sigledger.client.install.verdicts import Outcome, check_artifacts  # noqa: E402
from sigledger.client.trust import VerifiedLog  # noqa: E402
from sigledger.ledger.entry import decode_entry  # noqa: E402
from sigledger.ledger.log.storage import Storage  # noqa: E402
from sigledger.ledger.log.store import EntryQuery  # noqa: E402
from sigledger.ledger.note import Verifier  # noqa: E402
from sigledger.ledger.service.config import ServerConfig  # noqa: E402
from tests.helpers import LogProcess, sigledger_cmd, tree_env  # noqa: E402

TARGET_WARM_S = 1.0
TARGET_COLD_S = 3.0
QUICK_ENTRIES = 20_000
CLIENT_MODULES = ", ".join(
    f"sigledger.client.{m}"
    for m in ("cli.main", "install.verdicts", "trust", "install.lockfiles", "install.policy")
)
_SUMMARY = re.compile(r"^(\d+) of (\d+) verified", re.MULTILINE)
_REQUESTS = re.compile(r"^sigledger_http_requests_total\{(.*)\} ([0-9.e+]+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


# -- the lock ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """One logged release file that goes into the lock."""

    project: str
    version: str
    filename: str
    sha256: bytes
    size: int
    signer: str
    index: int


async def _pick_releases(data: Path, entries: int, count: int, seed: int) -> list[Pick]:
    rng = random.Random(seed)
    storage = await Storage.open(ServerConfig(data=str(data)).db_path)
    picks: dict[str, Pick] = {}
    try:
        for _ in range(count * 100):  # bounded: distinct projects run out on tiny logs
            if len(picks) == count:
                break
            index = rng.randrange(entries)
            [raw] = await storage.read_entries(index, index + 1)
            st = decode_entry(raw).statement
            if st.project in picks:
                continue
            rows = await storage.lookup(
                EntryQuery(below=entries, project=st.project, version=st.version)
            )
            index, raw = rng.choice(rows)  # the wheel or the sdist of this release
            entry = decode_entry(raw)
            st = entry.statement
            picks[st.project] = Pick(
                st.project,
                st.version,
                st.filename,
                st.sha256,
                st.size,
                entry.signed.signer_vkey(),
                index,
            )
    finally:
        await storage.close()
    if len(picks) < count:
        raise SystemExit(f"the log has only {len(picks)} projects; ask for fewer --pins")
    return sorted(picks.values(), key=lambda p: p.project)


def pick_releases(data: Path, entries: int, count: int, seed: int) -> list[Pick]:
    """``count`` random logged release files of distinct projects, read from the database
    (so no server may run on it yet)."""
    return asyncio.run(_pick_releases(data, entries, count, seed))


def _file_url(p: Pick) -> str:
    h = hashlib.blake2b(p.filename.encode(), digest_size=30).hexdigest()
    return f"https://files.pythonhosted.org/packages/{h[:2]}/{h[2:4]}/{h[4:]}/{p.filename}"


def write_pylock(path: Path, picks: Sequence[Pick]) -> None:
    packages: list[dict[str, Any]] = []
    for p in picks:
        file = {
            "name": p.filename,
            "url": _file_url(p),
            "size": p.size,
            "hashes": {"sha256": p.sha256.hex()},
        }
        package: dict[str, Any] = {"name": p.project, "version": p.version}
        if p.filename.endswith(".whl"):
            package["wheels"] = [file]
        else:
            package["sdist"] = file
        packages.append(package)
    doc = {
        "lock-version": "1.0",
        "created-by": "sigledger-bench",
        "requires-python": ">=3.11",
        "packages": packages,
    }
    path.write_text(tomli_w.dumps(doc))


def write_requirements(path: Path, picks: Sequence[Pick]) -> None:
    lines = ["# hash-pinned, as pip-compile --generate-hashes writes them"]
    for p in picks:
        lines.append(f"{p.project}=={p.version} \\")
        lines.append(f"    --hash=sha256:{p.sha256.hex()}")
    path.write_text("\n".join(lines) + "\n")


def write_policy(path: Path, url: str, log_vkey: str, picks: Sequence[Pick]) -> Policy:
    verifier = Verifier.from_vkey(log_vkey)
    trust = LogTrust(url, verifier, verifier.name)
    signers: dict[str, set[str]] = {}
    for p in picks:
        signers.setdefault(p.project, set()).add(p.signer)
    policy = pin_projects(Policy(logs=(), source=str(path)), trust, signers)
    path.write_text(dump_policy(policy))
    loaded = load_policy(path)
    if loaded != policy:
        raise AssertionError("the policy file does not read back equal")
    return loaded


def check_lock_files(pylock: Path, requirements: Path, picks: Sequence[Pick]) -> list[Pin]:
    """Parse both files with the client's readers; return the pylock's artifacts."""
    pins, unhashed = read_pylock(pylock)
    want = {(p.project, p.version, p.filename, p.sha256, p.size) for p in picks}
    got = {(x.project, x.version, x.filename, x.sha256, x.size) for x in pins}
    if unhashed or len(pins) != len(picks) or got != want:
        raise AssertionError(f"{pylock} does not read back as the {len(picks)} picked files")
    req = read_requirements(requirements)
    if {(x.project, x.version, x.sha256) for x in req} != {
        (p.project, p.version, p.sha256) for p in picks
    }:
        raise AssertionError(f"{requirements} does not read back as the picked files")
    return list(pins)


# -- measuring ---------------------------------------------------------------------


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CPUWatch:
    """CPU seconds used while timing: by the client (this process and its children), the
    server, and everything else on the machine (other load distorts the timings)."""

    server_pid: int
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    other_cpu_s: float | None = None

    def __enter__(self) -> CPUWatch:
        self._t0 = time.perf_counter()
        self._c0 = children_cpu() + time.process_time()
        self._s0 = proc_cpu(self.server_pid)
        self._m0 = machine_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.client_cpu_s = children_cpu() + time.process_time() - self._c0
        s1, m1 = proc_cpu(self.server_pid), machine_cpu()
        if s1 is not None and self._s0 is not None:
            self.server_cpu_s = s1 - self._s0
        if m1 is not None and self._m0 is not None and self.server_cpu_s is not None:
            self.other_cpu_s = max(0.0, m1 - self._m0 - self.server_cpu_s - self.client_cpu_s)


def http_requests(url: str) -> Counter[str]:
    """Requests the server has answered so far, by route (``/metrics`` itself left out)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    counts: Counter[str] = Counter()
    for labels, value in _REQUESTS.findall(text):
        fields = dict(_LABEL.findall(labels))
        if fields.get("route") != "/metrics":
            counts[f"{fields.get('route')} {fields.get('code')}"] += int(float(value))
    return counts


def client_env(state: Path) -> dict[str, str]:
    """The CLI's environment: its state (verified checkpoints) and cache (verified tiles)
    both in ``state``, nothing from the user's own configuration."""
    env = {k: v for k, v in tree_env().items() if not k.startswith("SIGLEDGER_")}
    env["SIGLEDGER_STATE_DIR"] = str(state)
    env["SIGLEDGER_CACHE_DIR"] = str(state / "cache")
    return env


@dataclass
class Run:
    """One timed ``sigledger verify`` (or API check)."""

    mode: str
    cpu: CPUWatch
    requests: dict[str, int]


@dataclass
class Series:
    mode: str
    runs: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        walls = [r.cpu.wall_s for r in self.runs]
        server = [r.cpu.server_cpu_s for r in self.runs if r.cpu.server_cpu_s is not None]
        other = [
            r.cpu.other_cpu_s / r.cpu.wall_s for r in self.runs if r.cpu.other_cpu_s is not None
        ]
        return {
            "runs": len(walls),
            "median_s": round(statistics.median(walls), 4),
            "min_s": round(min(walls), 4),
            "max_s": round(max(walls), 4),
            "client_cpu_s": round(statistics.median(r.cpu.client_cpu_s for r in self.runs), 3),
            "server_cpu_s": round(statistics.median(server), 3) if server else None,
            "other_load_cores": round(statistics.median(other), 2) if other else None,
            "requests": self.runs[-1].requests,
            "requests_total": sum(self.runs[-1].requests.values()),
        }


def run_verify(
    mode: str,
    args: Sequence[str],
    state: Path,
    server: LogProcess,
    expect: int,
) -> Run:
    """Run ``sigledger verify ARGS`` once as a user would; check it verified all ``expect``."""
    assert server.proc is not None
    env = client_env(state)
    before = http_requests(server.url)
    with CPUWatch(server.proc.pid) as cpu:
        proc = subprocess.run(
            [*sigledger_cmd(), "verify", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
    after = http_requests(server.url)
    summary = _SUMMARY.findall(proc.stderr)
    ok_lines = sum(line.startswith("OK: ") for line in proc.stderr.splitlines())
    if proc.returncode != 0 or summary != [(str(expect), str(expect))] or ok_lines != expect:
        raise AssertionError(
            f"sigledger verify {' '.join(args)} exited {proc.returncode} "
            f"(summary {summary}, {ok_lines} OK lines):\n{proc.stderr[-3000:]}"
        )
    return Run(mode, cpu, dict(after - before))


def check_json_run(args: Sequence[str], state: Path, expect: int, entries: int) -> None:
    """One ``--json`` run: every result ok, against the whole log."""
    proc = subprocess.run(
        [*sigledger_cmd(), "verify", "--json", *args],
        capture_output=True,
        text=True,
        env=client_env(state),
        timeout=300,
        check=False,
    )
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    results = doc.get("results", [])
    if (
        proc.returncode != 0
        or doc.get("ok") is not True
        or len(results) != expect
        or not all(r.get("ok") is True and not r.get("alarm") for r in results)
        or doc.get("log", {}).get("tree_size") != entries
    ):
        raise AssertionError(f"--json run failed ({proc.returncode}): {proc.stderr[-2000:]}")


def time_command(cmd: Sequence[str], repeat: int) -> float:
    """Fastest of ``repeat`` runs of a short command (start-up cost), in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, timeout=60)
        best = min(best, time.perf_counter() - start)
    return best


async def _api_check(
    trust: LogTrust, policy: Policy, artifacts: Sequence[Pin], state: Path
) -> tuple[float, list[Outcome]]:
    start = time.perf_counter()
    async with VerifiedLog(  # as the CLI opens it
        trust.url,
        trust.verifier,
        FileCheckpointStore(state),
        trust.origin,
        tile_cache=state / "cache" / "tiles",
        witnesses=policy.witnesses.verifiers,
        witness_quorum=policy.witnesses.quorum,
    ) as log:
        outcomes = await check_artifacts(log, policy, artifacts)
    return time.perf_counter() - start, outcomes


def api_check(
    mode: str,
    server: LogProcess,
    trust: LogTrust,
    policy: Policy,
    artifacts: Sequence[Pin],
    state: Path,
) -> Run:
    """One check through the Python API in this process; every outcome must be ok."""
    assert server.proc is not None
    before = http_requests(server.url)
    with CPUWatch(server.proc.pid) as cpu:
        seconds, outcomes = asyncio.run(_api_check(trust, policy, artifacts, state))
    after = http_requests(server.url)
    cpu.wall_s = seconds  # the check itself, without creating and closing the event loop
    bad = [o for o in outcomes if not o.ok]
    if bad or len(outcomes) != len(artifacts):
        raise AssertionError(f"API check failed: {bad[0].reason if bad else len(outcomes)}")
    return Run(mode, cpu, dict(after - before))


# -- output ------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def series_row(label: str, s: dict[str, Any]) -> tuple[str, str]:
    return (
        label,
        f"median {fmt_s(s['median_s'])}  min {fmt_s(s['min_s'])}  max {fmt_s(s['max_s'])}"
        f"  ({s['runs']} runs; CPU s client {_num(s['client_cpu_s'])}, server "
        f"{_num(s['server_cpu_s'])}; other load {_num(s['other_load_cores'])} cores)",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--entries",
        type=int,
        default=None,
        help=f"log entries ({make_log.DEFAULT_ENTRIES:,}; --quick {QUICK_ENTRIES:,})",
    )
    p.add_argument("--pins", type=int, default=300, help="files in the lock (300)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per mode (5; --quick 2)")
    p.add_argument("--quick", action="store_true", help="small log, few runs: a smoke test")
    p.add_argument(
        "--data", metavar="DIR", help="log data directory (default: make_log's cache for N)"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed for the picked files (1)")
    p.add_argument(
        "--keep", metavar="DIR", help="write the lock, requirements and policy files here"
    )
    p.add_argument("--profile", metavar="FILE", help="write a cProfile of one warm API run")
    args = p.parse_args(argv)
    if args.entries is None:
        args.entries = QUICK_ENTRIES if args.quick else make_log.DEFAULT_ENTRIES
    if args.runs is None:
        args.runs = 2 if args.quick else 5
    if args.entries < 2 or args.pins < 1 or args.runs < 1:
        p.error("--entries must be at least 2, --pins and --runs at least 1")
    return args


@dataclass
class Measurements:
    server_start_s: float = 0.0
    first: Series = field(default_factory=lambda: Series("first"))
    cold: Series = field(default_factory=lambda: Series("cold"))
    warm: Series = field(default_factory=lambda: Series("warm"))
    requirements: Series = field(default_factory=lambda: Series("requirements-warm"))
    api_cold: Series = field(default_factory=lambda: Series("api-cold"))
    api_warm: Series = field(default_factory=lambda: Series("api-warm"))
    parse_s: float = 0.0
    python_start_s: float = 0.0
    cli_version_s: float = 0.0
    imports_s: float = 0.0
    startup_repeat: int = 0
    server_cpu_total_s: float | None = None


def measure(
    args: argparse.Namespace,
    server: LogProcess,
    tmp: Path,
    pylock: Path,
    requirements: Path,
    policy_path: Path,
    artifacts: Sequence[Pin],
) -> Measurements:
    """Every timed run against the running ``server``."""
    assert server.proc is not None
    m = Measurements()
    policy = load_policy(policy_path)
    trust = policy.logs[0]
    lock_args = ["--lock", str(pylock), "--policy", str(policy_path)]
    req_args = ["-r", str(requirements), "--policy", str(policy_path)]
    n = len(artifacts)
    counter = iter(range(1_000_000))

    def fresh_state() -> Path:
        return tmp / f"state-{next(counter)}"

    print("sigledger verify --lock, first run (fresh server, empty state) ...", flush=True)
    m.first.runs.append(run_verify("first", lock_args, fresh_state(), server, n))
    # Modes alternate round by round, so load from elsewhere on the machine hits them alike.
    print(
        f"{args.runs} rounds of: sigledger verify --lock cold (empty state), then warm (the "
        "state that run left), then -r requirements.txt warm ...",
        flush=True,
    )
    state = tmp
    for _ in range(args.runs):
        state = fresh_state()
        m.cold.runs.append(run_verify("cold", lock_args, state, server, n))
        m.warm.runs.append(run_verify("warm", lock_args, state, server, n))
        m.requirements.runs.append(run_verify("requirements-warm", req_args, state, server, n))
    check_json_run(lock_args, state, n, args.entries)

    print("start-up and imports ...", flush=True)
    m.startup_repeat = repeat = 3 if args.quick else 5
    m.cli_version_s = time_command([*sigledger_cmd(), "--version"], repeat)
    m.imports_s = time_command([sys.executable, "-c", f"import {CLIENT_MODULES}"], repeat)
    m.python_start_s = time_command([sys.executable, "-c", "pass"], repeat)

    print(f"{args.runs} rounds of: Python API check_artifacts cold, then warm ...", flush=True)
    t = time.perf_counter()
    read_pylock(pylock)
    load_policy(policy_path)
    m.parse_s = time.perf_counter() - t
    for _ in range(args.runs):
        state = fresh_state()
        m.api_cold.runs.append(api_check("api-cold", server, trust, policy, artifacts, state))
        m.api_warm.runs.append(api_check("api-warm", server, trust, policy, artifacts, state))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        api_check("api-profile", server, trust, policy, artifacts, state)
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"wrote a cProfile of one warm API run to {args.profile}; top by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    m.server_cpu_total_s = proc_cpu(server.proc.pid)
    return m


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cores = os.cpu_count()
    print(
        f"sigledger verify benchmark: {cores} CPU cores, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    info = make_log.ensure_log(args.entries, Path(args.data) if args.data else None)
    data = Path(info.data)
    started = time.monotonic()

    t = time.monotonic()
    picks = pick_releases(data, args.entries, args.pins, args.seed)
    signers = {p.signer for p in picks}
    n = len(picks)
    print(
        f"picked {n} logged files of {n} projects "
        f"({sum(p.filename.endswith('.whl') for p in picks)} wheels, "
        f"{len(signers)} distinct signers) in {time.monotonic() - t:.2f} s",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="sigledger-bench-verify-") as tmp_name:
        tmp = Path(tmp_name)
        files = Path(args.keep) if args.keep else tmp
        files.mkdir(parents=True, exist_ok=True)
        pylock, requirements, policy_path = (
            files / "pylock.toml",
            files / "requirements.txt",
            files / "policy.toml",
        )
        write_pylock(pylock, picks)
        write_requirements(requirements, picks)
        artifacts = check_lock_files(pylock, requirements, picks)

        server = LogProcess(data)
        t = time.monotonic()
        server.start(timeout=120)
        assert server.proc is not None
        server_start = time.monotonic() - t
        try:
            if server.vkey != info.vkey:
                raise AssertionError(f"the server runs log key {server.vkey}, not {info.vkey}")
            write_policy(policy_path, server.url, server.vkey, picks)
            print(
                f"server: {server.url} (pid {server.proc.pid}) on {data}, "
                f"started in {server_start:.2f} s",
                flush=True,
            )
            m = measure(args, server, tmp, pylock, requirements, policy_path, artifacts)
        except BaseException:
            server.kill()
            raise
        m.server_start_s = server_start
        rc = server.stop()

    first_s, cold_s, warm_s, req_s = (
        m.first.summary(),
        m.cold.summary(),
        m.warm.summary(),
        m.requirements.summary(),
    )
    api_cold_s, api_warm_s = m.api_cold.summary(), m.api_warm.summary()
    ok_warm = warm_s["median_s"] < TARGET_WARM_S
    ok_cold = max(cold_s["median_s"], first_s["median_s"]) < TARGET_COLD_S
    runtime = time.monotonic() - started
    bytecode_off = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    print()
    print(
        f"summary: {n}-pin pylock.toml against a log of {args.entries:,} entries "
        f"({cores} cores; CLI, server and this script share them)"
    )
    build = (
        "reused cache"
        if info.reused
        else f"built now in {info.build_seconds:,.1f} s = {info.build_entries_per_s:,.0f} /s"
    )
    print_table(
        [
            ("log", f"{info.entries:,} entries, {info.db_bytes / 1e6:,.0f} MB database, {build}"),
            ("lock", f"{n} files of {n} projects; {len(signers)} signers in the policy"),
            series_row("verify --lock, first run", first_s),
            series_row("verify --lock, cold (empty state)", cold_s),
            series_row("verify --lock, warm", warm_s),
            series_row("verify -r requirements.txt, warm", req_s),
            (
                "  HTTP requests per verify",
                f"{warm_s['requests_total']}: "
                + ", ".join(f"{k} x{v}" for k, v in sorted(warm_s["requests"].items())),
            ),
            series_row("API check_artifacts, cold", api_cold_s),
            series_row("API check_artifacts, warm", api_warm_s),
            ("  parse pylock.toml + policy.toml", fmt_s(m.parse_s)),
            (
                "start-up: python / --version / imports",
                f"{fmt_s(m.python_start_s)} / {fmt_s(m.cli_version_s)} / {fmt_s(m.imports_s)}"
                f"  (fastest of {m.startup_repeat})",
            ),
            (
                "  CLI warm minus API warm",
                fmt_s(warm_s["median_s"] - api_warm_s["median_s"])
                + "  (start-up, imports, parsing, report)",
            ),
            (
                f"target warm < {TARGET_WARM_S:g} s",
                ("met" if ok_warm else "MISSED") + f" (median {fmt_s(warm_s['median_s'])})",
            ),
            (
                f"target cold < {TARGET_COLD_S:g} s",
                ("met" if ok_cold else "MISSED")
                + f" (first {fmt_s(first_s['median_s'])}, median {fmt_s(cold_s['median_s'])})",
            ),
            (
                "python bytecode cache",
                "off (PYTHONDONTWRITEBYTECODE is set: the project's modules compile each run)"
                if bytecode_off
                else "on",
            ),
            ("server start / exit status", f"{fmt_s(m.server_start_s)} / {rc}"),
            ("benchmark run time", f"{runtime:.1f} s (log build not counted)"),
        ]
    )
    result = {
        "benchmark": "sigledger-verify",
        "cpu_count": cores,
        "python": platform.python_version(),
        "quick": args.quick,
        "entries": args.entries,
        "pins": n,
        "signers": len(signers),
        "seed": args.seed,
        "log": {
            "reused": info.reused,
            "db_bytes": info.db_bytes,
            "build_seconds": info.build_seconds,
            "build_entries_per_s": info.build_entries_per_s,
            "projects_source": info.projects_source,
        },
        "server_start_s": round(m.server_start_s, 3),
        "first": first_s,
        "cold": cold_s,
        "warm": warm_s,
        "requirements_warm": req_s,
        "api_cold": api_cold_s,
        "api_warm": api_warm_s,
        "parse_s": round(m.parse_s, 4),
        "python_start_s": round(m.python_start_s, 4),
        "cli_version_s": round(m.cli_version_s, 4),
        "client_imports_s": round(m.imports_s, 4),
        "bytecode_cache": not bytecode_off,
        "server_cpu_total_s": m.server_cpu_total_s,
        "target_warm_met": ok_warm,
        "target_cold_met": ok_cold,
        "server_exit_status": rc,
        "runtime_s": round(runtime, 1),
    }
    print(json.dumps(result, separators=(",", ":")))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
