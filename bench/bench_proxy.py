"""Benchmark of ``sigledger proxy``: real installs through it, and its cached pages under load.

Run from the repository root::

    .venv/bin/python bench/bench_proxy.py                     # about 3 minutes
    .venv/bin/python bench/bench_proxy.py --packages 5 --repeat 1 --duration 2   # smoke test

The targets: installing through the proxy, warm, takes at most 1.3 times as long
as installing straight from the upstream index; the proxy answers at least
1,000 requests/s for cached project pages.

1. **The index.** ``--packages`` tiny pure wheels are built (one module each, a
   few KB of code and data), published in one request to a real
   ``sigledger serve`` log and served by a real pypiserver; a policy trusts the
   log and requires, per project, the publisher's signature. Every process
   listens on a free port of 127.0.0.1.
2. **Installs.** Real pip (``pip install --isolated --no-cache-dir --target``
   a fresh directory, all packages named on the command line) is timed end to
   end, as a user runs it:

   * *direct*: from pypiserver (the baseline);
   * *cold*: through a ``sigledger proxy`` just started with an empty cache and
     state (every page is checked against the log, every file downloaded,
     hashed and cached);
   * *warm*: again through the same proxy (its file cache filled, its pages
     remembered for ``--page-ttl``); pip's own cache is off in every run, so only
     the proxy's cache differs.

   The three alternate round by round (``--repeat`` rounds; a fresh proxy for
   each cold run), so load from elsewhere on the machine hits them alike; the
   medians are compared. Every run must exit 0 and install every package. The
   same is done with uv (``uv pip install --no-cache --target``) unless
   ``--no-uv``. pip and uv see no configuration of this machine
   (``PIP_CONFIG_FILE`` is the null device, ``--isolated``, no ``PIP_*`` or
   ``UV_*`` variables, ``UV_NO_CONFIG=1``, a private ``HOME``).

   pypiserver runs with its default server, which without waitress (or another
   server it knows) installed is wsgiref: one request at a time, a listen
   backlog of 5. pip asks for one thing at a time and is served well; uv opens
   many connections at once, so its *direct* times are mostly spent waiting
   for pypiserver (connections retried), and its ratios say more about
   pypiserver than about the proxy. The pip ratios are the ones the target is
   about; for uv, the absolute times through the proxy are the useful figures.
3. **Pages under load.** A proxy with every project page cached (each fetched
   once before; its page TTL longer than the phase) is sent ``GET
   /simple/<project>/`` for all the projects in turn, HTML then JSON, for
   ``--duration`` seconds each, from a separate load-generator process:
   ``wrk`` when it is installed, else an aiohttp client with ``--connections``
   concurrent keep-alive connections. The same HTML pages straight from
   pypiserver are the baseline (pypiserver serves no PEP 691 JSON pages).
   Reported: requests/s, latency p50 and p99 (from the aiohttp client; wrk
   reports its own percentiles), the server's CPU seconds per 1,000 requests
   and non-200 answers (there must be none).

Every phase is bounded in time; every process is stopped on the way out. The
output is a table and, with ``--json``, one JSON object with every figure as
its last line. On a machine shared with other work the wall times, and most of
all the requests/s of a load generator sharing the cores with the server, are
lower than on an idle one: the "other load" column says how busy the rest of
the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from common import machine_cpu, print_table, proc_cpu  # noqa: E402

from sigledger.client.install.policy import LogTrust, Policy, SignerRule, dump_policy  # noqa: E402
from sigledger.client.publish.submit import sign_statement  # noqa: E402
from sigledger.ledger.entry import Statement  # noqa: E402
from sigledger.ledger.note import Verifier  # noqa: E402
from tests.helpers import LogProcess, ProxyProcess, post_add  # noqa: E402
from tests.index import ALICE, PyPIServer, installer_env, wheel  # noqa: E402

TARGET_RATIO = 1.3
TARGET_RPS = 1000.0
JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML = "text/html"
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60.0
VERSION = "1.0"


# -- the index -----------------------------------------------------------------------


def module_body(name: str, rng: random.Random) -> str:
    """A few KB of Python: some functions and a block of data that does not compress."""
    blob = rng.randbytes(3072).hex()
    data = "\n".join(f'    "{blob[i : i + 64]}"' for i in range(0, len(blob), 64))
    funcs = "\n\n".join(
        f"def f{k}(x: int) -> int:\n    return x * {k} + {rng.randrange(1000)}\n" for k in range(20)
    )
    return f'"""{name}: benchmark package."""\n\nNAME = {name!r}\nDATA = (\n{data}\n)\n\n{funcs}'


@dataclass
class Index:
    """The published wheels, the log, pypiserver and the policy trusting the log."""

    names: list[str]
    files: dict[str, bytes]  # filename -> bytes
    log: LogProcess
    server: PyPIServer
    policy_file: Path


def publish_all(log_url: str, files: dict[str, bytes]) -> None:
    statements = [
        sign_statement(ALICE, Statement.for_file(name, hashlib.sha256(data).digest(), len(data)))
        for name, data in files.items()
    ]
    for start in range(0, len(statements), 500):  # the log takes up to 1,000 per request
        status, body, _ = asyncio.run(post_add(log_url, statements[start : start + 500]))
        if status != 200:
            raise AssertionError(f"the log refused the statements ({status}): {body}")


def write_policy(path: Path, log: LogProcess, names: Sequence[str]) -> None:
    verifier = Verifier.from_vkey(log.vkey)
    rule = SignerRule(frozenset({ALICE.vkey}), 1)
    policy = Policy(
        (LogTrust(log.url, verifier, verifier.name),), projects=dict.fromkeys(names, rule)
    )
    path.write_text(dump_policy(policy))


# -- processes -----------------------------------------------------------------------


# -- installs ------------------------------------------------------------------------


def uv_path() -> str | None:
    uv = Path(sys.executable).parent / "uv"
    return str(uv) if uv.exists() else shutil.which("uv")


@dataclass
class Install:
    tool: str
    mode: str  # direct, cold, warm
    wall_s: float
    other_cores: float | None  # CPU of everything else on the machine, in cores


def run_install(
    tool: str,
    mode: str,
    index: str,
    tmp: Path,
    names: Sequence[str],
    run_no: int,
    servers: Sequence[int],
) -> Install:
    """One timed install of every package into a fresh target; it must succeed in full.
    ``servers``: the pids of the bench's servers (their CPU is not "other load")."""
    target = tmp / f"target-{tool}-{mode}-{run_no}"
    if tool == "pip":
        cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir"]
        cmd += ["--disable-pip-version-check", "--no-input"]
    else:
        uv = uv_path()
        assert uv is not None
        cmd = [uv, "pip", "install", "--no-cache", "--python", sys.executable]
    cmd += ["--index-url", index, "--target", str(target), *names]
    env = installer_env(tmp)
    m0, c0, s0 = machine_cpu(), _children_cpu(), _servers_cpu(servers)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_S, check=False
    )
    wall = time.perf_counter() - t0
    m1, c1, s1 = machine_cpu(), _children_cpu(), _servers_cpu(servers)
    if proc.returncode != 0:
        raise AssertionError(
            f"{tool} install ({mode}) exited {proc.returncode}:\n"
            f"{(proc.stdout + proc.stderr)[-4000:]}"
        )
    missing = [n for n in names if not (target / n.replace("-", "_") / "__init__.py").is_file()]
    if missing:
        raise AssertionError(f"{tool} install ({mode}) did not install {missing[:5]}")
    shutil.rmtree(target, ignore_errors=True)
    other = None
    if m0 is not None and m1 is not None:
        other = max(0.0, (m1 - m0) - (c1 - c0) - (s1 - s0)) / wall
    return Install(tool, mode, wall, other)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _servers_cpu(pids: Sequence[int]) -> float:
    return sum(proc_cpu(pid) or 0.0 for pid in pids)


def summarize(runs: Sequence[Install]) -> dict[str, Any]:
    walls = [r.wall_s for r in runs]
    others = [r.other_cores for r in runs if r.other_cores is not None]
    return {
        "runs": len(walls),
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
        "walls_s": [round(w, 3) for w in walls],
        "other_load_cores": round(statistics.mean(others), 2) if others else None,
    }


def install_rounds(
    tool: str, index: Index, tmp: Path, repeat: int, proxy_args: Sequence[str]
) -> tuple[dict[str, list[Install]], list[dict[str, Any]]]:
    """``repeat`` rounds of direct, cold (a fresh proxy) and warm (the same proxy again)."""
    runs: dict[str, list[Install]] = {"direct": [], "cold": [], "warm": []}
    proxies: list[dict[str, Any]] = []
    for r in range(repeat):
        print(f"  {tool} round {r + 1}/{repeat}: direct ...", end="", flush=True)
        base = [_pid(index), _log_pid(index)]
        runs["direct"].append(
            run_install(tool, "direct", index.server.url, tmp, index.names, r, base)
        )
        print(f" {runs['direct'][-1].wall_s:.2f} s; cold ...", end="", flush=True)
        proxy = ProxyProcess(
            index.server.url, index.policy_file, tmp / f"proxy-{tool}-{r}", *proxy_args
        )
        try:
            proxy.start()
            cpu0 = proc_cpu(proxy.pid)
            pids = [*base, proxy.pid]
            runs["cold"].append(run_install(tool, "cold", proxy.index, tmp, index.names, r, pids))
            cpu1 = proc_cpu(proxy.pid)
            cached = proxy.cached_files()
            if cached != len(index.names):
                raise AssertionError(f"the proxy cached {cached} files, not {len(index.names)}")
            print(f" {runs['cold'][-1].wall_s:.2f} s; warm ...", end="", flush=True)
            runs["warm"].append(run_install(tool, "warm", proxy.index, tmp, index.names, r, pids))
            cpu2 = proc_cpu(proxy.pid)
            print(f" {runs['warm'][-1].wall_s:.2f} s", flush=True)
        finally:
            rc = proxy.stop()
        proxies.append(
            {
                "cold_cpu_s": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3),
                "warm_cpu_s": None if cpu1 is None or cpu2 is None else round(cpu2 - cpu1, 3),
                "exit_status": rc,
            }
        )
    return runs, proxies


# -- pages under load ----------------------------------------------------------------


async def _load(
    urls: Sequence[str], accept: str, connections: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    received = 0
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    headers = {"Accept": accept}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        end = start + duration

        async def worker(k: int) -> None:
            nonlocal received
            i = k
            while (t0 := time.perf_counter()) < end:
                url = urls[i % len(urls)]
                i += connections
                try:
                    async with session.get(url, headers=headers, allow_redirects=False) as r:
                        body = await r.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[r.status] += 1
                received += len(body)

        await asyncio.gather(*(worker(k) for k in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "elapsed_s": elapsed,
        "latencies": latencies,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "bytes": received,
    }


def _load_process(
    urls: Sequence[str], accept: str, connections: int, duration: float, out: Connection
) -> None:
    try:
        out.send(asyncio.run(_load(urls, accept, connections, duration)))
    except BaseException as exc:
        out.send({"failed": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        out.close()


def _pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def aiohttp_load(
    urls: Sequence[str], accept: str, connections: int, duration: float
) -> dict[str, Any]:
    """The aiohttp load generator, in a separate process, bounded in time."""
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_load_process, args=(list(urls), accept, connections, duration, writer)
    )
    proc.start()
    writer.close()
    try:
        if not reader.poll(duration + 60):
            raise TimeoutError("the load generator did not finish in time")
        doc: dict[str, Any] = reader.recv()
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=10)
    if "failed" in doc:
        raise RuntimeError(f"the load generator failed: {doc['failed']}")
    latencies = doc.pop("latencies")
    ok = doc["statuses"].get(200, 0)
    doc.update(
        requests=len(latencies),
        ok=ok,
        rps=ok / doc["elapsed_s"],
        p50_ms=_ms(_pct(latencies, 50)),
        p99_ms=_ms(_pct(latencies, 99)),
    )
    return doc


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


_WRK_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], {["Accept"] = "%s"})
end
done = function(summary, latency, requests)
  io.write(string.format("SUMMARY %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def wrk_load(
    wrk: str, urls: Sequence[str], accept: str, connections: int, duration: float, tmp: Path
) -> dict[str, Any]:
    """``wrk`` in a separate process, bounded in time (its script rotates the paths)."""
    base = urls[0].split("/simple/", 1)[0]
    paths = ", ".join(json.dumps("/simple/" + u.split("/simple/", 1)[1]) for u in urls)
    script = tmp / "pages.lua"
    script.write_text(_WRK_LUA % (paths, accept))
    threads = max(1, min(connections, (os.cpu_count() or 2) // 2))
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    proc = subprocess.run(
        [*cmd, "-s", str(script), base + "/"],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    m = re.search(r"^SUMMARY (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    requests, errors, bad_status, p50_us, p99_us, duration_us = map(int, m.groups())
    ok = requests - bad_status
    return {
        "elapsed_s": duration_us / 1e6,
        "requests": requests,
        "ok": ok,
        "statuses": {"non-2xx/3xx": bad_status} if bad_status else {200: ok},
        "errors": {"socket": errors} if errors else {},
        "rps": ok / (duration_us / 1e6),
        "p50_ms": round(p50_us / 1000, 2),
        "p99_ms": round(p99_us / 1000, 2),
    }


@dataclass
class LoadResult:
    label: str
    doc: dict[str, Any]
    server_cpu_s: float | None
    other_cores: float | None

    def cpu_per_1k(self) -> float | None:
        if self.server_cpu_s is None or not self.doc["ok"]:
            return None
        return self.server_cpu_s / int(self.doc["ok"]) * 1000


def load_phase(
    label: str,
    urls: Sequence[str],
    accept: str,
    server_pid: int,
    args: argparse.Namespace,
    tmp: Path,
    *,
    strict: bool = True,
) -> LoadResult:
    """``strict``: every answer must be a 200 (the proxy's; the baseline's failures are
    only counted)."""
    wrk = shutil.which("wrk")
    print(f"  {label}: {args.duration:g} s ...", end="", flush=True)
    s0, m0 = proc_cpu(server_pid), machine_cpu()
    if wrk:
        doc = wrk_load(wrk, urls, accept, args.connections, args.duration, tmp)
    else:
        doc = aiohttp_load(urls, accept, args.connections, args.duration)
    s1, m1 = proc_cpu(server_pid), machine_cpu()
    server_cpu = None if s0 is None or s1 is None else s1 - s0
    other = None
    if m0 is not None and m1 is not None and server_cpu is not None:
        # everything but the server, the load generator included
        other = max(0.0, m1 - m0 - server_cpu) / doc["elapsed_s"]
    result = LoadResult(label, doc, server_cpu, other)
    print(f" {doc['rps']:,.0f} req/s", flush=True)
    if strict and (doc["ok"] != doc["requests"] or doc["errors"]):
        raise AssertionError(
            f"{label}: {doc['requests'] - doc['ok']} answers other than 200 "
            f"({doc['statuses']}), errors {doc['errors']}"
        )
    return result


def fetch(url: str, accept: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def pages_under_load(index: Index, tmp: Path, args: argparse.Namespace) -> list[LoadResult]:
    ttl = str(max(3600.0, 10 * args.duration))
    proxy = ProxyProcess(
        index.server.url, index.policy_file, tmp / "proxy-pages", "--page-ttl", ttl
    )
    results: list[LoadResult] = []
    try:
        proxy.start()
        proxy_urls = [f"{proxy.index}{name}/" for name in index.names]
        for url in proxy_urls:  # build and cache every page
            for accept in (HTML, JSON_V1):
                status, body = fetch(url, accept)
                if status != 200 or b"sha256" not in body:
                    raise AssertionError(f"{url} ({accept}) answered {status}: {body[:300]!r}")
        direct_urls = [f"{index.server.url}{name}/" for name in index.names]
        results.append(
            load_phase("pypiserver, HTML", direct_urls, HTML, _pid(index), args, tmp, strict=False)
        )
        results.append(load_phase("proxy, HTML (cached)", proxy_urls, HTML, proxy.pid, args, tmp))
        results.append(
            load_phase("proxy, JSON (cached)", proxy_urls, JSON_V1, proxy.pid, args, tmp)
        )
    finally:
        proxy.stop()
    return results


def _pid(index: Index) -> int:
    assert index.server.proc is not None
    return index.server.proc.pid


def _log_pid(index: Index) -> int:
    assert index.log.proc is not None
    return index.log.proc.pid


# -- output --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--packages", type=int, default=50, help="packages installed (50)")
    p.add_argument("--repeat", type=int, default=3, help="rounds of direct/cold/warm (3)")
    p.add_argument(
        "--duration", type=float, default=10.0, help="seconds of load per page kind (10)"
    )
    p.add_argument(
        "--connections", type=int, default=32, help="concurrent connections of the load (32)"
    )
    p.add_argument(
        "--page-ttl",
        type=float,
        default=None,
        help="the proxy's --page-ttl for the installs (default: the proxy's own)",
    )
    p.add_argument("--no-uv", action="store_true", help="time pip only")
    p.add_argument("--seed", type=int, default=1, help="random seed of the wheels' content (1)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    args = p.parse_args(argv)
    if args.packages < 1 or args.repeat < 1 or args.duration <= 0 or args.connections < 1:
        p.error("--packages, --repeat, --connections must be at least 1, --duration above 0")
    return args


@dataclass
class Results:
    installs: dict[str, dict[str, list[Install]]] = field(default_factory=dict)
    proxies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pages: list[LoadResult] = field(default_factory=list)


def build_index(tmp: Path, args: argparse.Namespace) -> Index:
    rng = random.Random(args.seed)
    packages = tmp / "packages"
    packages.mkdir()
    names = [f"benchpkg-{i:03d}" for i in range(args.packages)]
    files: dict[str, bytes] = {}
    for name in names:
        filename, data = wheel(name, VERSION, module_body(name, rng))
        (packages / filename).write_bytes(data)
        files[filename] = data
    log = LogProcess(tmp / "log")
    server = PyPIServer(packages)
    return Index(names, files, log, server, tmp / "policy.toml")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cores = os.cpu_count()
    print(
        f"sigledger proxy benchmark: {cores} CPU cores, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    started = time.monotonic()
    tools = ["pip"] + ([] if args.no_uv or uv_path() is None else ["uv"])
    proxy_args = [] if args.page_ttl is None else ["--page-ttl", str(args.page_ttl)]
    results = Results()
    with tempfile.TemporaryDirectory(prefix="sigledger-bench-proxy-") as tmp_name:
        tmp = Path(tmp_name)
        index = build_index(tmp, args)
        sizes = [len(d) for d in index.files.values()]
        try:
            index.log.start(timeout=START_TIMEOUT_S)
            publish_all(index.log.url, index.files)
            write_policy(index.policy_file, index.log, index.names)
            index.server.start()
            print(
                f"{len(index.names)} wheels of {statistics.mean(sizes) / 1024:.1f} KiB on average "
                f"published to {index.log.url}, served by pypiserver at {index.server.url}",
                flush=True,
            )
            for tool in tools:
                print(f"{args.repeat} rounds of {tool} installs: direct, cold, warm ...")
                runs, proxies = install_rounds(tool, index, tmp, args.repeat, proxy_args)
                results.installs[tool] = runs
                results.proxies[tool] = proxies
            print(f"cached project pages under load ({args.connections} connections):")
            results.pages = pages_under_load(index, tmp, args)
        finally:
            index.server.stop()
            log_rc = index.log.stop()
    report(args, results, tools, started, log_rc, cores)
    return 0 if log_rc == 0 else 1


def report(
    args: argparse.Namespace,
    results: Results,
    tools: Sequence[str],
    started: float,
    log_rc: int,
    cores: int | None,
) -> None:
    rows: list[tuple[str, str]] = []
    doc: dict[str, Any] = {
        "benchmark": "sigledger-proxy",
        "cpu_count": cores,
        "python": platform.python_version(),
        "packages": args.packages,
        "repeat": args.repeat,
        "page_ttl": args.page_ttl,
        "installs": {},
        "pages": {},
    }
    ratios_met = True
    for tool in tools:
        s = {mode: summarize(runs) for mode, runs in results.installs[tool].items()}
        direct = s["direct"]["median_s"]
        cold_ratio = s["cold"]["median_s"] / direct
        warm_ratio = s["warm"]["median_s"] / direct
        met = warm_ratio <= TARGET_RATIO
        ratios_met &= met
        for mode in ("direct", "cold", "warm"):
            m = s[mode]
            ratio = "" if mode == "direct" else f"  = {m['median_s'] / direct:.2f}x direct"
            rows.append(
                (
                    f"{tool} install, {mode}",
                    f"median {m['median_s']:.2f} s  min {m['min_s']:.2f}  max {m['max_s']:.2f}"
                    f"{ratio}  ({m['runs']} runs; other load {_num(m['other_load_cores'])} "
                    "cores)",
                )
            )
        cpu = results.proxies[tool]
        rows.append(
            (
                "  proxy CPU s, cold / warm",
                " / ".join(
                    _num(statistics.median(v) if v else None)
                    for v in (
                        [p["cold_cpu_s"] for p in cpu if p["cold_cpu_s"] is not None],
                        [p["warm_cpu_s"] for p in cpu if p["warm_cpu_s"] is not None],
                    )
                )
                + " (medians)",
            )
        )
        rows.append(
            (
                f"  target {tool} warm <= {TARGET_RATIO}x direct",
                ("met" if met else "MISSED") + f" ({warm_ratio:.2f}x; cold {cold_ratio:.2f}x)",
            )
        )
        doc["installs"][tool] = {
            **s,
            "cold_ratio": round(cold_ratio, 3),
            "warm_ratio": round(warm_ratio, 3),
            "target_met": met,
            "proxy": cpu,
        }
    rps_met = True
    for page in results.pages:
        d = page.doc
        proxied = page.label.startswith("proxy")
        if proxied:
            rps_met &= d["rps"] >= TARGET_RPS
        rows.append(
            (
                page.label,
                f"{d['rps']:,.0f} req/s  p50 {_num(d['p50_ms'])} ms  p99 {_num(d['p99_ms'])} ms"
                f"  ({d['ok']:,} requests{_failures(d)}; server {_num(page.cpu_per_1k())} CPU s "
                f"per 1,000; rest of the machine, load generator included, "
                f"{_num(page.other_cores)} cores)",
            )
        )
        doc["pages"][page.label] = {
            **{k: v for k, v in d.items() if k != "statuses"},
            "statuses": {str(k): v for k, v in d["statuses"].items()},
            "server_cpu_s": None if page.server_cpu_s is None else round(page.server_cpu_s, 3),
            "server_cpu_s_per_1k": _round(page.cpu_per_1k()),
            "other_load_cores": _round(page.other_cores),
        }
    rows.append(
        (
            f"target pages >= {TARGET_RPS:,.0f} req/s",
            ("met" if rps_met else "MISSED")
            + f" (load from {'wrk' if shutil.which('wrk') else 'an aiohttp client'}, "
            f"{args.connections} connections, {args.duration:g} s per kind)",
        )
    )
    runtime = time.monotonic() - started
    rows.append(("log exit status / run time", f"{log_rc} / {runtime:.1f} s"))
    doc.update(
        target_ratio_met=ratios_met,
        target_rps_met=rps_met,
        load_generator="wrk" if shutil.which("wrk") else "aiohttp",
        connections=args.connections,
        duration_s=args.duration,
        log_exit_status=log_rc,
        runtime_s=round(runtime, 1),
    )
    print()
    print(
        f"summary: {args.packages} packages, {args.repeat} rounds "
        f"({cores} cores; installers, proxy, pypiserver, log and load share them)"
    )
    print_table(rows)
    if args.json:
        print(json.dumps(doc, separators=(",", ":")))


def _failures(d: dict[str, Any]) -> str:
    failed = d["requests"] - d["ok"] + sum(d["errors"].values())
    return f", {failed:,} failed" if failed else ""


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
