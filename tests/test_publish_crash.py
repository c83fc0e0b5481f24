"""kill -9 a server publishing static files, at random moments under load.

After every kill, before anything restarts: the directory's checkpoint verifies
and every file it needs is there and authenticates (the files hash to its root,
every hash tile matches the entries). After each restart the directory catches
up to what the log publishes, and at the end it is a prefix of the final log.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path

import aiohttp

from sigledger.ledger import tiles
from sigledger.ledger.note import Signer
from sigledger.ledger.wire import MSGPACK_TYPE, encode_add_request
from tests.helpers import LogProcess, read_log, signed
from tests.test_publish import check_directory

ROUNDS = 6


async def _load(url: str, signer: Signer, counter: itertools.count[int], until: float) -> int:
    """Submit batches until ``until`` (monotonic) or the server dies; acknowledged count."""
    acked = 0
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            batch = [signed(signer, version=f"{next(counter)}.0") for _ in range(17)]
            try:
                async with session.post(
                    url + "/add",
                    data=encode_add_request(batch, MSGPACK_TYPE),
                    headers={"Content-Type": MSGPACK_TYPE},
                ) as resp:
                    if resp.status == 200:
                        acked += len(batch)
            except (TimeoutError, aiohttp.ClientError):
                return acked  # killed under us
    return acked


async def _dir_size(public: Path) -> int:
    try:
        return int((public / "checkpoint").read_bytes().split(b"\n")[1])
    except FileNotFoundError:
        return -1


async def test_kill9_leaves_a_consistent_directory(tmp_path: Path) -> None:
    data = tmp_path / "log"
    public = tmp_path / "public"
    signer = Signer.generate("publisher")
    counter = itertools.count()
    rng = random.Random(20261202)
    vkey = ""
    acked = 0
    sizes: list[int] = []
    for _ in range(ROUNDS):
        server = LogProcess(
            data, "--publish-dir", str(public), env={"SIGLEDGER_BATCH_MAX_AGE": "0.005"}
        ).start()
        vkey = vkey or server.vkey
        try:
            kill_at = rng.uniform(0.05, 1.0)
            until = time.monotonic() + kill_at + 5
            workers = [
                asyncio.create_task(_load(server.url, signer, counter, until)) for _ in range(3)
            ]
            await asyncio.sleep(kill_at)
            server.kill()  # SIGKILL: no shutdown code runs, writes stop wherever they are
            acked += sum(await asyncio.wait_for(asyncio.gather(*workers), 30))
        finally:
            server.kill()
        if (public / "checkpoint").exists():
            sizes.append(check_directory(public, vkey))
    assert acked > 200, "the test must actually log entries before the kills"
    assert sizes and sizes[-1] > 0, "the directory must have been written before a kill"
    assert sizes == sorted(sizes), "the checkpoint on disk went backwards"

    final = LogProcess(data, "--publish-dir", str(public)).start()
    try:
        size, entries = await read_log(final.url, vkey)
        deadline = time.monotonic() + 20
        while await _dir_size(public) != size:
            assert time.monotonic() < deadline, "the directory did not catch up after restart"
            await asyncio.sleep(0.05)
    finally:
        final.stop()
    assert check_directory(public, vkey) == size
    published: list[bytes] = []
    for n in range((size + 255) // 256):
        ref = tiles.TileRef(-1, n, min(256, size - 256 * n))
        published += tiles.decode_entry_bundle((public / ref.path).read_bytes())
    assert published == entries
    # A killed write may leave a temporary file; no tile path names it (nginx 404s it).
    leftovers = len(list(public.rglob("*.tmp")))
    print(
        f"{acked} entries acknowledged over {ROUNDS} kills; directory sizes {sizes}; "
        f"{leftovers} temporary files left"
    )
