"""Build a large, real sigledger log directly, without HTTP, for benchmarks.

Run from the repository root::

    .venv/bin/python bench/make_log.py --entries 1000000          # cached; see below
    .venv/bin/python bench/make_log.py --entries 20000 --data DIR

Submitting a million statements over ``POST /add`` takes many minutes, so this
drives the log's own write path in-process instead: :func:`sigledger.ledger.log.app.open_log`
creates the data directory exactly as ``sigledger serve`` does on first start
(key file, metadata, empty tree head), then :class:`sigledger.ledger.log.sequencer.Sequencer`
integrates large batches of signed statements (binding rule, durable commit,
tiles, signed checkpoints). The result is an ordinary data directory:
``sigledger serve --data DIR`` serves it.

The workload is deterministic apart from the log key and integration times:

* projects and their latest versions come from ``--projects`` (a TSV with
  header ``rank name version``, by default the shared top-PyPI list); release
  counts fall off with popularity (weight ``rank ** -0.5``), so the most
  popular projects have hundreds to thousands of releases and the tail a few;
* older releases get plausible, distinct versions below the latest one;
* every release has an sdist and a pure wheel (two entries), with a SHA-256
  and a size derived from the file name (:func:`file_digest`);
* ``--publishers`` keys (default 3000) sign them; each project has one key at
  a time and moves to another every 50 releases (key rotation), so a key
  signs for a handful of projects;
* releases are logged in an interleaved "timeline" order, as a real log
  would see them, not project by project.

Statements are signed in worker processes (both cores) while the main
process integrates; signing is the publishers' cost and is reported apart.

The built directory is a cache: ``--data`` (default: a directory under the
system temporary directory named by the entry count and :data:`FORMAT`) is
reused when it already holds a complete log of exactly ``--entries`` entries
built by this format. That is checked by opening the database and comparing
the tree size, the stored log key and the key file. A build goes to
``DIR.partial`` first and is renamed when complete, so an interrupted build is
never taken for a finished one.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import csv
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from packaging.utils import canonicalize_name  # noqa: E402
from packaging.version import InvalidVersion, Version  # noqa: E402

from sigledger.client.publish.submit import sign_statement  # noqa: E402
from sigledger.ledger.entry import SignedStatement, Statement  # noqa: E402
from sigledger.ledger.errors import FormatError, LedgerError  # noqa: E402
from sigledger.ledger.log.app import open_log  # noqa: E402
from sigledger.ledger.log.sequencer import Sequencer, SequencerConfig  # noqa: E402
from sigledger.ledger.log.storage import Storage  # noqa: E402
from sigledger.ledger.note import Signer  # noqa: E402
from sigledger.ledger.service.config import ServerConfig  # noqa: E402
from sigledger.ledger.service.keys import read_key_file  # noqa: E402
from sigledger.ledger.service.sqlite import StorageLockedError  # noqa: E402

FORMAT = 3  # bump whenever the workload or layout changes: it names the cache directory
DEFAULT_ENTRIES = 1_000_000
DEFAULT_PROJECTS = "../shared/data/pypi-top-projects.tsv"  # relative to the repository root
DEFAULT_PUBLISHERS = 3000
ROTATE_EVERY = 50  # releases signed by one key before the project moves to another
BATCH = 4096  # statements per submit and per sequencer batch
CONCURRENT_SUBMITS = 4
MARKER = "bench-log.json"  # in the data directory: what was built, and how fast

Spec = tuple[str, str, str, int]  # (project, version, filename, publisher number)


# -- workload ----------------------------------------------------------------------


def default_data_dir(entries: int) -> Path:
    """Where the log of ``entries`` entries is cached unless ``--data`` says otherwise."""
    return Path(tempfile.gettempdir()) / f"sigledger-bench-log-v{FORMAT}-{entries}" / "log"


def load_projects(path: Path | None) -> tuple[list[tuple[str, str]], str]:
    """Canonical (project, latest version) rows that make valid statements, and their source.

    Falls back to synthetic projects when the file is missing or malformed.
    """
    rows: list[tuple[str, str]] = []
    source = "synthetic"
    if path is not None and path.is_file():
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = next(reader, [])
            if [h.strip().lower() for h in header[:3]] == ["rank", "name", "version"]:
                source = str(path)
                seen: set[str] = set()
                for row in reader:
                    if len(row) < 3:
                        continue
                    checked = _checked_project(row[1].strip(), row[2].strip())
                    if checked is not None and checked[0] not in seen:
                        seen.add(checked[0])
                        rows.append(checked)
            else:
                print(
                    f"warning: {path} does not start with 'rank name version'; "
                    "using synthetic projects",
                    file=sys.stderr,
                )
    if not rows:
        rows = [(f"bench-synthetic-{i}", f"1.{i % 50}.{i // 50}") for i in range(15_000)]
    return rows, source


def _checked_project(name: str, version: str) -> tuple[str, str] | None:
    """(canonical name, normalized version) when both release files make valid statements."""
    try:
        project = str(canonicalize_name(name, validate=True))
        ver = str(Version(version))
        for filename in release_files(project, ver):
            Statement.create(project, ver, filename, bytes(32), 0)
    except (InvalidVersion, FormatError, ValueError):
        return None
    return project, ver


def release_files(project: str, version: str) -> tuple[str, str]:
    """The sdist and the pure wheel of one release."""
    stem = f"{project.replace('-', '_')}-{version}"
    return f"{stem}.tar.gz", f"{stem}-py3-none-any.whl"


def older_versions(latest: str, count: int) -> list[str]:
    """``count`` distinct versions below ``latest``, newest first (X.Y.Z steps, then devN)."""
    release = [*Version(latest).release, 0, 0]
    major, minor, patch = release[0], release[1], release[2]
    out: list[str] = []
    while len(out) < count:
        if patch > 0:
            patch -= 1
        elif minor > 0:
            minor, patch = minor - 1, 9
        elif major > 0:
            major, minor, patch = major - 1, 9, 9
        else:
            break
        out.append(f"{major}.{minor}.{patch}")
    dev = 0
    while len(out) < count:  # below 0.0.0: development releases of 0.0.0
        out.append(f"0.0.0.dev{dev}")
        dev += 1
    return out


def release_counts(projects: int, releases: int) -> list[int]:
    """Releases per project (by rank), weight rank ** -0.5, summing to ``releases``."""
    weights = [(rank + 1) ** -0.5 for rank in range(projects)]
    total = sum(weights)
    exact = [releases * w / total for w in weights]
    counts = [int(x) for x in exact]
    short = releases - sum(counts)
    by_remainder = sorted(range(projects), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[:short]:
        counts[i] += 1
    return counts


def workload(rows: Sequence[tuple[str, str]], entries: int, publishers: int) -> Iterator[Spec]:
    """Exactly ``entries`` specs in timeline order: each project's releases oldest first,
    spread over the whole log, the sdist then the wheel of each release."""
    counts = release_counts(len(rows), (entries + 1) // 2)
    timeline: list[tuple[float, int, int]] = []  # (position, project rank, release number)
    for rank, count in enumerate(counts):
        timeline.extend(((k + 0.5) / count, rank, k) for k in range(count))
    timeline.sort()
    versions: dict[int, list[str]] = {}
    produced = 0
    for _pos, rank, k in timeline:
        project, latest = rows[rank]
        count = counts[rank]
        if rank not in versions:
            versions[rank] = [*reversed(older_versions(latest, count - 1)), latest]
        version = versions[rank][k]
        if k == count - 1:
            del versions[rank]  # last release of this project: free its list
        key = zlib.crc32(f"{project}:{k // ROTATE_EVERY}".encode()) % publishers
        for filename in release_files(project, version):
            if produced == entries:
                return
            yield project, version, filename, key
            produced += 1


def file_digest(filename: str) -> tuple[bytes, int]:
    """The SHA-256 and size this workload gives a release file (a function of its name)."""
    digest = hashlib.sha256(f"sigledger bench file {filename}".encode()).digest()
    base = 40_000 if filename.endswith(".whl") else 60_000
    return digest, base + int.from_bytes(digest[:3], "big") % 4_000_000


def publisher(number: int) -> Signer:
    """Publisher key ``number`` (deterministic)."""
    seed = hashlib.sha256(f"sigledger bench publisher {number}".encode()).digest()
    return Signer.from_seed(f"publisher-{number:04d}@bench.example", seed)


_publisher_cache: dict[int, Signer] = {}


def sign_specs(specs: Sequence[Spec]) -> list[SignedStatement]:
    """Build and sign the statements of ``specs`` (runs in worker processes)."""
    out: list[SignedStatement] = []
    for project, version, filename, key in specs:
        signer = _publisher_cache.get(key)
        if signer is None:
            signer = _publisher_cache[key] = publisher(key)
        digest, size = file_digest(filename)
        out.append(
            sign_statement(signer, Statement.create(project, version, filename, digest, size))
        )
    return out


def _chunks(specs: Iterator[Spec], size: int) -> Iterator[list[Spec]]:
    chunk: list[Spec] = []
    for spec in specs:
        chunk.append(spec)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- building ----------------------------------------------------------------------


@dataclass
class LogInfo:
    """A built log: where it is, its key, and how it was built."""

    data: str
    entries: int
    origin: str
    vkey: str
    format: int
    projects_source: str
    projects: int
    publishers: int
    build_seconds: float
    build_entries_per_s: float
    sign_cpu_seconds: float  # worker CPU spent building and signing statements
    db_bytes: int
    reused: bool = False


def _cfg(data: Path) -> ServerConfig:
    return ServerConfig(data=str(data))


async def _integrate(
    data: Path,
    specs: Iterator[Spec],
    entries: int,
    workers: int,
    progress: bool,
) -> tuple[str, str, float]:
    """Sign (in ``workers`` processes) and integrate every spec; return origin, vkey, sign CPU."""
    storage, log_signer, origin = await open_log(_cfg(data))
    seq = Sequencer(
        storage,
        log_signer,
        origin,
        SequencerConfig(
            batch_max_size=BATCH, batch_max_age=0.05, queue_max=BATCH * (CONCURRENT_SUBMITS + 1)
        ),
    )
    await seq.start()
    sign_cpu = 0.0
    done = 0
    started = time.monotonic()
    next_report = 0.1
    submitting: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(CONCURRENT_SUBMITS)
    failures: list[BaseException] = []
    window: deque[asyncio.Future[tuple[list[_Flat], float]]] = deque()

    async def submit(chunk: list[SignedStatement]) -> None:
        nonlocal done, next_report
        try:
            receipts = await seq.submit(chunk)
            if len(receipts) != len(chunk) or any(r.existing for r in receipts):
                raise RuntimeError("the sequencer did not add every statement as a new entry")
            done += len(chunk)
            if progress and done >= next_report * entries:
                rate = done / (time.monotonic() - started)
                print(f"    {done:>10,} entries  {rate:>8,.0f} entries/s", flush=True)
                next_report += 0.1
        except BaseException as exc:
            failures.append(exc)
        finally:
            slots.release()

    async def submit_oldest() -> None:
        """Wait for the oldest chunk's signatures, then hand it to the sequencer (in order)."""
        nonlocal sign_cpu
        flat, cpu = await window.popleft()
        sign_cpu += cpu
        signed = _unflatten(flat)
        await slots.acquire()
        if failures:
            raise failures[0]
        task = asyncio.create_task(submit(signed))
        submitting.add(task)
        task.add_done_callback(submitting.discard)

    try:
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            ahead = 2 * workers + 2  # chunks being signed while earlier ones integrate
            for chunk in _chunks(specs, BATCH):
                window.append(asyncio.wrap_future(pool.submit(_timed_sign, chunk)))
                if len(window) >= ahead:
                    await submit_oldest()
            while window:
                await submit_oldest()
            await asyncio.gather(*submitting)
            if failures:
                raise failures[0]
    finally:
        for task in submitting:
            task.cancel()
        for future in window:
            future.cancel()
        await seq.stop()
        await storage.close()
    if done != entries:
        raise RuntimeError(f"integrated {done} entries, expected {entries}")
    return origin, log_signer.vkey, sign_cpu


# A signed statement as plain values: unpickling frozen slotted dataclasses costs more
# than signing them, so workers send these and the main process rebuilds the objects.
_Flat = tuple[str, str, str, bytes, int, str, bytes, bytes]


def _timed_sign(specs: Sequence[Spec]) -> tuple[list[_Flat], float]:
    start = time.process_time()
    out = [
        (
            st.project,
            st.version,
            st.filename,
            st.sha256,
            st.size,
            s.key_name,
            s.public_key,
            s.signature,
        )
        for s in sign_specs(specs)
        for st in (s.statement,)
    ]
    return out, time.process_time() - start


def _unflatten(flat: Sequence[_Flat]) -> list[SignedStatement]:
    return [
        SignedStatement(Statement(p, v, f, sha, size), name, key, sig)
        for p, v, f, sha, size, name, key, sig in flat
    ]


def build_log(
    data: Path,
    entries: int,
    *,
    projects_path: Path | None = None,
    publishers: int = DEFAULT_PUBLISHERS,
    workers: int | None = None,
    progress: bool = True,
) -> LogInfo:
    """Build a log of exactly ``entries`` entries in ``data`` (which must not exist yet).

    Builds in ``data.partial`` and renames it when complete.
    """
    if entries < 1:
        raise ValueError("entries must be at least 1")
    if data.exists():
        raise FileExistsError(f"{data} already exists")
    rows, source = load_projects(projects_path)
    partial = data.with_name(data.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    if progress:
        print(
            f"building a log of {entries:,} entries in {data} "
            f"({len(rows):,} projects from {source}, {publishers:,} publisher keys, "
            f"{workers} signing processes, {BATCH} statements per batch)",
            flush=True,
        )
    started = time.monotonic()
    origin, vkey, sign_cpu = asyncio.run(
        _integrate(partial, workload(rows, entries, publishers), entries, workers, progress)
    )
    seconds = time.monotonic() - started
    info = LogInfo(
        data=str(data),
        entries=entries,
        origin=origin,
        vkey=vkey,
        format=FORMAT,
        projects_source=source,
        projects=len(rows),
        publishers=publishers,
        build_seconds=round(seconds, 2),
        build_entries_per_s=round(entries / seconds, 1),
        sign_cpu_seconds=round(sign_cpu, 2),
        db_bytes=_cfg(partial).db_path.stat().st_size,
    )
    (partial / MARKER).write_text(json.dumps(asdict(info), indent=2) + "\n")
    partial.rename(data)
    if progress:
        print(
            f"    built {entries:,} entries in {seconds:.1f} s = "
            f"{entries / seconds:,.0f} entries/s (statement signing: {sign_cpu:.1f} s CPU "
            f"in workers); database {info.db_bytes / 1e6:,.0f} MB",
            flush=True,
        )
    return info


async def _stored_state(data: Path) -> tuple[int, int, str | None, bool]:
    """(tree size, entry count, stored log vkey, newest head signed) of the log in ``data``."""
    storage = await Storage.open(_cfg(data).db_path)
    try:
        head = await storage.latest_head()
        count = await storage.count_entries()
        vkey = await storage.get_meta("vkey")
    finally:
        await storage.close()
    if head is None:
        return 0, count, vkey, False
    return head.size, count, vkey, head.note is not None


def check_log(data: Path, entries: int) -> LogInfo:
    """The info of the complete log of ``entries`` entries in ``data``; raises ValueError
    (why not) when ``data`` holds anything else, including a log the current code cannot
    open. Opens the database: raises StorageLockedError while a server runs on it."""
    marker = data / MARKER
    try:
        info = LogInfo(**json.loads(marker.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{marker} is missing or unreadable ({exc})") from None
    if info.format != FORMAT or info.entries != entries:
        raise ValueError(
            f"{data} holds format {info.format} with {info.entries} entries, "
            f"not format {FORMAT} with {entries}"
        )
    try:
        size, count, vkey, signed = asyncio.run(_stored_state(data))
        key = read_key_file(_cfg(data).key_path)
    except StorageLockedError:
        raise  # a server runs on it: never rebuild underneath it
    except (LedgerError, sqlite3.Error) as exc:  # e.g. built by code with another schema
        raise ValueError(f"the current code cannot use it: {exc}") from None
    if size != entries or count != entries or not signed:
        raise ValueError(
            f"{data} has tree size {size} and {count} entries (signed head: {signed}), "
            f"expected {entries}"
        )
    if vkey != info.vkey or key.vkey != info.vkey:
        raise ValueError(f"{data}: the stored log key, the key file and {MARKER} disagree")
    info.reused = True
    info.data = str(data)
    return info


def ensure_log(
    entries: int,
    data: Path | None = None,
    *,
    projects_path: Path | None = None,
    publishers: int = DEFAULT_PUBLISHERS,
    workers: int | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> LogInfo:
    """The log of ``entries`` entries in ``data`` (default :func:`default_data_dir`):
    reused when complete and valid, else built. A directory this script made that is not
    valid (another entry count or format, or a schema the current code cannot open) is
    replaced; any other non-empty directory is refused (FileExistsError)."""
    data = data or default_data_dir(entries)
    if data.exists() and not rebuild:
        try:
            info = check_log(data, entries)
        except ValueError as exc:
            if progress:
                print(f"not reusing {data}: {exc}", flush=True)
        else:
            if progress:
                print(
                    f"reusing the log of {entries:,} entries in {data} "
                    f"(built at {info.build_entries_per_s:,.0f} entries/s)",
                    flush=True,
                )
            return info
    if data.exists():
        if not (data / MARKER).exists() and any(data.iterdir()):
            raise FileExistsError(
                f"refusing to replace {data}: it is not empty and was not made by make_log.py"
            )
        shutil.rmtree(data)
    if projects_path is None:
        projects_path = (ROOT / DEFAULT_PROJECTS).resolve()
    return build_log(
        data,
        entries,
        projects_path=projects_path,
        publishers=publishers,
        workers=workers,
        progress=progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--entries", type=int, default=DEFAULT_ENTRIES, help=f"entries ({DEFAULT_ENTRIES:,})"
    )
    p.add_argument(
        "--data",
        "--cache",
        metavar="DIR",
        help="log data directory, reused when valid (default: "
        f"{default_data_dir(DEFAULT_ENTRIES).parent.parent}/sigledger-bench-log-v{FORMAT}-N/log)",
    )
    p.add_argument("--projects", metavar="TSV", help=f"projects file (default {DEFAULT_PROJECTS})")
    p.add_argument(
        "--publishers", type=int, default=DEFAULT_PUBLISHERS, help="publisher keys (3000)"
    )
    p.add_argument("--workers", type=int, default=None, help="signing processes (CPU count)")
    p.add_argument("--rebuild", action="store_true", help="build even if a valid log exists")
    args = p.parse_args(argv)
    if args.entries < 1 or args.publishers < 1:
        p.error("--entries and --publishers must be at least 1")
    try:
        info = ensure_log(
            args.entries,
            Path(args.data) if args.data else None,
            projects_path=Path(args.projects) if args.projects else None,
            publishers=args.publishers,
            workers=args.workers,
            rebuild=args.rebuild,
        )
    except (FileExistsError, StorageLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(info), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
