"""Benchmark of on-demand observation: time to first proof for a release the log never saw.

Run from the repository root::

    .venv/bin/python bench/bench_observe.py                      # about half a minute
    .venv/bin/python bench/bench_observe.py --rounds 2 --file-kb 16   # smoke test

1. **The index.** ``--rounds`` releases of one project (versions 1.0, 2.0, ...),
   each of ``--files`` wheels (one per platform tag) of about ``--file-kb`` KB
   (a module holding random, incompressible data), served by a real pypiserver
   (PEP 503 HTML pages, its own single-threaded server) on a free port of
   127.0.0.1. Nothing is published to the log.
2. **The log.** A real ``sigledger serve`` with ``--observe-index`` naming that
   pypiserver and its defaults otherwise (``observe_max_files`` 20, so a
   10-file release is observed within the request; ``observe_concurrency`` 4
   unless ``--concurrency``).
3. **Cold lookups.** For each release in turn, ``GET /lookup?project=P&version=V``
   is timed from sending the request to holding the whole answer: the log reads
   the project page, downloads and hashes every file, signs one observation per
   file, integrates them (one batch, one checkpoint) and answers with every
   inclusion proof. That is the *time to first proof*. Each answer is then
   checked: the checkpoint signed by the log key, ``--files`` entries, each an
   observation by the log's observer key with the hash of the bytes served and
   a valid inclusion proof.
4. **Warm lookups.** The same lookup again for each release: already observed,
   answered from the log without touching the index.

Reported: the median, min and max of each, the bytes downloaded per second
during cold lookups, and the log's CPU seconds per cold lookup. The output is a
table and, with ``--json``, one JSON object with every figure as its last line.
On a machine shared with other work the times are longer than on an idle one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from common import print_table, proc_cpu  # noqa: E402

from sigledger.ledger import merkle  # noqa: E402
from sigledger.ledger.checkpoint import open_checkpoint  # noqa: E402
from sigledger.ledger.entry import SignedObservation, decode_entry  # noqa: E402
from sigledger.ledger.note import Verifier  # noqa: E402
from tests.helpers import LogProcess  # noqa: E402
from tests.index import PyPIServer, wheel  # noqa: E402

PROJECT = "observed-bench"
PLATFORMS = (
    "manylinux_2_17_x86_64",
    "manylinux_2_17_aarch64",
    "musllinux_1_2_x86_64",
    "macosx_11_0_arm64",
    "macosx_10_9_x86_64",
    "win_amd64",
    "win32",
    "win_arm64",
    "manylinux_2_28_ppc64le",
    "manylinux_2_28_s390x",
)


def build_release(
    packages: Path, version: str, files: int, kb: int, rng: random.Random
) -> dict[str, bytes]:
    """``files`` wheels of ``PROJECT`` ``version``, one per tag, of about ``kb`` KB each."""
    out = {}
    for n in range(files):
        tag = f"cp312-cp312-{PLATFORMS[n % len(PLATFORMS)]}"
        if n >= len(PLATFORMS):
            tag = f"cp3{n}-cp3{n}-{PLATFORMS[n % len(PLATFORMS)]}"
        body = f"DATA = {base64.b85encode(rng.randbytes(kb * 1024 * 4 // 5)).decode()!r}\n"
        filename, data = wheel(PROJECT, version, body, tag=tag)
        (packages / filename).write_bytes(data)
        out[filename] = data
    return out


async def lookup(
    session: aiohttp.ClientSession, url: str, version: str
) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    async with session.get(url + "/lookup", params={"project": PROJECT, "version": version}) as r:
        body = await r.read()
        status = r.status
    wall = time.perf_counter() - t0
    if status != 200:
        raise AssertionError(f"lookup of {PROJECT} {version} answered {status}: {body[:500]!r}")
    return wall, json.loads(body)


def check(
    answer: dict[str, Any], log_vkey: str, observer_vkey: str, files: dict[str, bytes]
) -> None:
    """Every file of the release is in the answer as a proven observation of its bytes."""
    cp, _ = open_checkpoint(answer["checkpoint"].encode(), Verifier.from_vkey(log_vkey))
    seen = {}
    for item in answer["entries"]:
        data = base64.b64decode(item["entry"])
        proof = [base64.b64decode(h) for h in item["inclusion_proof"]]
        merkle.check_inclusion(item["log_index"], cp.size, merkle.leaf_hash(data), proof, cp.root)
        e = decode_entry(data)
        if not isinstance(e.signed, SignedObservation) or e.signed.signer_vkey() != observer_vkey:
            raise AssertionError(f"entry {item['log_index']} is not the log's observation")
        if not e.signed.verify():
            raise AssertionError(f"entry {item['log_index']}: the signature does not verify")
        seen[e.statement.filename] = e.statement.sha256
    want = {n: hashlib.sha256(d).digest() for n, d in files.items()}
    if seen != want:
        raise AssertionError(f"the answer holds {sorted(seen)}, not {sorted(want)}")


async def measure(
    log: LogProcess, releases: list[tuple[str, dict[str, bytes]]]
) -> tuple[list[float], list[float], list[float | None]]:
    assert log.proc is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(log.url + "/observer") as r:
            observer_vkey = (await r.text()).strip()
        cold, cpu = [], []
        for version, files in releases:
            c0 = proc_cpu(log.proc.pid)
            wall, answer = await lookup(session, log.url, version)
            c1 = proc_cpu(log.proc.pid)
            check(answer, log.vkey, observer_vkey, files)
            cold.append(wall)
            cpu.append(None if c0 is None or c1 is None else c1 - c0)
            print(f"  {PROJECT} {version}: first proof after {wall * 1000:.0f} ms", flush=True)
        warm = []
        for version, files in releases:
            wall, answer = await lookup(session, log.url, version)
            check(answer, log.vkey, observer_vkey, files)
            warm.append(wall)
    return cold, warm, cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--files", type=int, default=10, help="files per release (default 10)")
    p.add_argument("--file-kb", type=int, default=256, help="size of each file, KB (256)")
    p.add_argument("--rounds", type=int, default=5, help="releases observed, one each (5)")
    p.add_argument("--concurrency", type=int, default=None, help="the log's observe_concurrency")
    p.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = p.parse_args()
    started = time.monotonic()
    rng = random.Random(14)
    with tempfile.TemporaryDirectory(prefix="bench-observe-") as tmp_name:
        tmp = Path(tmp_name)
        packages = tmp / "packages"
        packages.mkdir()
        releases = [
            (f"{r + 1}.0", build_release(packages, f"{r + 1}.0", args.files, args.file_kb, rng))
            for r in range(args.rounds)
        ]
        total_bytes = [sum(len(d) for d in files.values()) for _v, files in releases]
        server = PyPIServer(packages).start()
        env = {"SIGLEDGER_OBSERVE_INDEX": server.url}
        if args.concurrency is not None:
            env["SIGLEDGER_OBSERVE_CONCURRENCY"] = str(args.concurrency)
        log = LogProcess(tmp / "log", env=env)
        try:
            log.start()
            print(f"observing {args.rounds} releases of {args.files} files from {server.url}")
            cold, warm, cpu = asyncio.run(measure(log, releases))
        finally:
            rc = log.stop() if log.proc is not None else None
            server.stop()
    rate = [b / w / 1e6 for b, w in zip(total_bytes, cold, strict=True)]
    cpus = [c for c in cpu if c is not None]
    rows = [
        (
            "time to first proof (cold)",
            f"median {statistics.median(cold) * 1000:.0f} ms  min {min(cold) * 1000:.0f}"
            f"  max {max(cold) * 1000:.0f}  ({len(cold)} releases of {args.files} files, "
            f"{statistics.mean(total_bytes) / 1e6:.2f} MB each)",
        ),
        (
            "lookup, already observed (warm)",
            f"median {statistics.median(warm) * 1000:.1f} ms  min {min(warm) * 1000:.1f}"
            f"  max {max(warm) * 1000:.1f}",
        ),
        ("downloaded and hashed, cold", f"median {statistics.median(rate):.1f} MB/s"),
        (
            "log CPU per cold lookup",
            f"median {statistics.median(cpus):.3f} s" if cpus else "n/a",
        ),
        ("log exit status / run time", f"{rc} / {time.monotonic() - started:.1f} s"),
    ]
    print()
    print_table(rows)
    if args.json:
        doc = {
            "benchmark": "sigledger-observe",
            "python": platform.python_version(),
            "files": args.files,
            "file_kb": args.file_kb,
            "rounds": args.rounds,
            "release_bytes": total_bytes,
            "cold_s": [round(w, 4) for w in cold],
            "warm_s": [round(w, 4) for w in warm],
            "cold_median_s": round(statistics.median(cold), 4),
            "warm_median_s": round(statistics.median(warm), 4),
            "cold_mb_per_s": [round(r, 2) for r in rate],
            "log_cpu_s": [None if c is None else round(c, 3) for c in cpu],
            "log_exit_status": rc,
        }
        print(json.dumps(doc, separators=(",", ":")))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
