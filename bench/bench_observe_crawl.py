"""Benchmark of ``sigledger observe``: a crawler catching up on an index of 10,000 files.

Run from the repository root::

    .venv/bin/python bench/bench_observe_crawl.py                  # 10,000 files, a few minutes
    .venv/bin/python bench/bench_observe_crawl.py --files 500      # smoke test

1. **The index.** ``--files`` small release files are generated into a folder
   (``--per-project`` per project: wheels of successive versions and one sdist,
   a few hundred bytes each) and served by a real pypiserver (its default
   server: one request at a time; its cached-dir backend, see
   :class:`CachedPyPIServer`). A real ``sigledger serve`` log runs on
   loopback with its per-key rate limit off (``SIGLEDGER_SIGNER_RATE=0``): a
   crawler's key is one key submitting the whole index, which the default of
   50 statements/s per key (after a burst of 2,000) would throttle; a log
   operator allowlists a known mirror the same way.
2. **Catch-up.** ``sigledger observe`` (a subprocess, as an operator runs it)
   reads every project page, downloads and hashes every file, and logs one
   signed observation each, batched, with receipts verified against the log
   key. Reported: wall time, observations/s, the run's own time (without
   interpreter start) and the log's tree size afterwards (it must hold every
   file).
3. **No-op rerun.** The same command again: every page is read, nothing is
   downloaded or submitted (the state file remembers). Reported: wall time.
4. **Incremental.** ``--new`` more files are added to the folder and the
   command is run again: only they are observed.

Every phase is bounded (``--timeout`` per command); every process is stopped
on the way out. The output is a table and, with ``--json``, one JSON object
with every figure as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import machine_cpu, print_table  # noqa: E402

from sigledger.client.publish.submit import write_key  # noqa: E402
from sigledger.ledger.note import Signer  # noqa: E402
from tests.helpers import LogProcess, run_cli  # noqa: E402
from tests.index import PyPIServer, sdist, wheel  # noqa: E402

# pypiserver's own cached-dir backend (``pypiserver[cache]``) without its file
# watcher: listings and digests are computed once per process. Its simple-dir
# backend rescans the whole folder on every request, which with 10,000 files
# makes the index, not the observer, the figure measured. Files are only added
# between runs, and the server is restarted then.
_CACHED_PYPISERVER = """
import sys, types
observers = types.ModuleType("watchdog.observers")
class Observer:
    def start(self): pass
    def schedule(self, *args, **kw): pass
observers.Observer = Observer
sys.modules["watchdog"] = types.ModuleType("watchdog")
sys.modules["watchdog.observers"] = observers
from pypiserver.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


class CachedPyPIServer(PyPIServer):
    """A real pypiserver (cached-dir backend) serving ``packages`` on loopback."""

    launcher = ("-c", _CACHED_PYPISERVER)
    backend = "cached-dir"


def generate(folder: Path, files: int, per_project: int, start: int = 0) -> int:
    """Write ``files`` release files, ``per_project`` per project; return how many."""
    written = 0
    project = start
    while written < files:
        name = f"crawl{project:05d}"
        for j in range(min(per_project, files - written)):
            if j == per_project - 1 and per_project > 1:
                filename, data = sdist(name, "1.0")
            else:
                filename, data = wheel(name, f"1.{j}", f"N = {project}\nV = {j}\n")
            (folder / filename).write_bytes(data)
            written += 1
        project += 1
    return project


def observe(args: argparse.Namespace, log: LogProcess, index: str, work: Path) -> dict[str, Any]:
    started = time.monotonic()
    r = run_cli(
        *("observe", "--json", "--index", index, "--log", log.url, "--log-key", log.vkey),
        *("--key", str(work / "observer.key"), "--state", str(work / "observer-state.json")),
        *("--concurrency", str(args.concurrency)),
        timeout=args.timeout,
    )
    wall = time.monotonic() - started
    if r.returncode != 0:
        raise SystemExit(f"observe failed ({r.returncode}): {r.stderr[-2000:]}")
    doc = json.loads(r.stdout)
    doc["wall"] = wall
    return doc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000, help="files in the index")
    p.add_argument("--per-project", type=int, default=5, help="files per project")
    p.add_argument("--new", type=int, default=100, help="files added before the last pass")
    p.add_argument("--concurrency", type=int, default=8, help="observe --concurrency")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per observe run")
    p.add_argument("--json", action="store_true", help="print every figure as JSON last")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-observe-") as tmp:
        work = Path(tmp)
        packages = work / "packages"
        packages.mkdir()
        started = time.monotonic()
        next_project = generate(packages, args.files, args.per_project)
        generated = time.monotonic() - started
        write_key(work / "observer.key", Signer.from_seed("crawler.example/observer", b"c" * 32))
        log = LogProcess(work / "log", env={"SIGLEDGER_SIGNER_RATE": "0"}).start()
        server = CachedPyPIServer(packages)
        try:
            server.start()
            cpu_before = machine_cpu()
            catchup = observe(args, log, server.url, work)
            cpu_load = machine_cpu()
            rerun = observe(args, log, server.url, work)
            generate(packages, args.new, args.per_project, start=next_project)
            server.stop()
            server.start()  # same folder and URL, a fresh listing
            incremental = observe(args, log, server.url, work)
            tree = run_cli("checkpoint", "--json", "--log", log.url, "--log-key", log.vkey)
        finally:
            server.stop()
            log.stop()
    observed = len(catchup["observed"])
    if observed != args.files or catchup["alarms"] or catchup["errors"]:
        raise SystemExit(f"catch-up observed {observed} of {args.files} files: {catchup}")
    if rerun["observed"] or len(incremental["observed"]) != args.new:
        raise SystemExit("the rerun or the incremental pass observed the wrong files")
    try:
        tree_size = json.loads(tree.stdout).get("tree_size")
    except ValueError:
        tree_size = None
    figures = {
        "files": args.files,
        "projects": catchup["projects"],
        "generate_seconds": round(generated, 2),
        "catchup_wall_seconds": round(catchup["wall"], 2),
        "catchup_run_seconds": catchup["seconds"],
        "observations_per_second": round(observed / catchup["wall"], 1),
        "observations_per_second_in_run": round(observed / catchup["seconds"], 1),
        "noop_rerun_wall_seconds": round(rerun["wall"], 2),
        "incremental_files": args.new,
        "incremental_wall_seconds": round(incremental["wall"], 2),
        "log_tree_size": tree_size,
        "machine_cpu_seconds_during_catchup": (
            round(cpu_load - cpu_before, 1)
            if cpu_load is not None and cpu_before is not None
            else None
        ),
        "concurrency": args.concurrency,
    }
    print_table(
        [
            ("files (projects)", f"{args.files:,} ({catchup['projects']:,})"),
            ("catch-up wall time", f"{catchup['wall']:.1f} s"),
            ("observations/s (wall)", f"{observed / catchup['wall']:,.0f}"),
            ("observations/s (in run)", f"{observed / catchup['seconds']:,.0f}"),
            ("no-op rerun", f"{rerun['wall']:.1f} s"),
            (f"incremental ({args.new} new)", f"{incremental['wall']:.1f} s"),
            ("log tree size", str(tree_size)),
            ("machine CPU busy in catch-up", f"{figures['machine_cpu_seconds_during_catchup']} s"),
        ]
    )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
