"""Fault campaign against a real ``sigledger serve``: kill -9 of the server and of
its verification workers while valid, malformed and undecodable requests are in
flight.

Run from the repository root::

    .venv/bin/python bench/faults.py              # 10 rounds, about a minute
    .venv/bin/python bench/faults.py --rounds 3   # shorter

Each round starts the server on the same data directory, sends for a random
0.5-2.5 s from several connections a mix of good ``/add`` requests (small ones
verified in the event loop, large ones by the worker processes), bad
signatures, malformed JSON and msgpack, invalid gzip and deflate bodies and
requests with random garbage, kills one verification worker with SIGKILL
halfway, then kills the server with SIGKILL. At the end a fresh server reads
the whole log through the tile API and every acknowledged entry must be at its
receipt's index. Prints a table and, last, one JSON line: kills survived,
requests thrown, status counts (any 5xx other than 503 is a failure), entries
acknowledged and lost.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from common import print_table  # noqa: E402

from sigledger.ledger.note import Signer  # noqa: E402
from sigledger.ledger.wire import JSON_TYPE, MSGPACK_TYPE, encode_add_request  # noqa: E402
from tests.helpers import LogProcess, read_log, signed, worker_pids  # noqa: E402

NO_LIMITS = {
    "SIGLEDGER_CLIENT_RATE": "0",
    "SIGLEDGER_SIGNER_RATE": "0",
    "SIGLEDGER_VERIFY_WORKERS": "1",
    "SIGLEDGER_BATCH_MAX_AGE": "0.01",
}


class Campaign:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.signer = Signer.from_seed("faults", seed.to_bytes(32, "big"))
        self.other = Signer.from_seed("intruder", (seed + 1).to_bytes(32, "big"))
        self.counter = itertools.count()
        self.statuses: Counter[str] = Counter()
        self.acked: dict[int, bytes] = {}
        self.thrown = 0

    def request(self) -> tuple[bytes, dict[str, str], bool]:
        """(body, headers, expect receipts) of one random request."""
        kind = self.rng.choice(["small", "large", "bad-sig", "json", "msgpack", "gzip", "junk"])
        n = self.rng.randint(20, 60) if kind == "large" else self.rng.randint(1, 5)
        batch = [signed(self.signer, version=f"{next(self.counter)}.0") for _ in range(n)]
        ctype = self.rng.choice([JSON_TYPE, MSGPACK_TYPE])
        body = encode_add_request(batch, ctype)
        headers = {"Content-Type": ctype}
        if kind == "bad-sig":
            forged = signed(self.other, version=f"{next(self.counter)}.0")
            body = encode_add_request([*batch, forged], ctype).replace(
                base64.b64encode(forged.signature), base64.b64encode(bytes(64))
            )
        elif kind == "json":
            body, headers = body[: len(body) // 2], {"Content-Type": JSON_TYPE}
        elif kind == "msgpack":
            body, headers = b"\xdc\xff\xff" + body[:50], {"Content-Type": MSGPACK_TYPE}
        elif kind == "gzip":
            enc = self.rng.choice(["gzip", "deflate"])
            body = zlib.compress(body)[:-7] + os.urandom(5)
            headers = {"Content-Type": ctype, "Content-Encoding": enc}
        elif kind == "junk":
            body = os.urandom(self.rng.randint(0, 5000))
        return body, headers, kind in ("small", "large")

    async def hammer(self, url: str, until: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while time.monotonic() < until:
                body, headers, good = self.request()
                self.thrown += 1
                try:
                    async with session.post(url + "/add", data=body, headers=headers) as resp:
                        status = resp.status
                        data = await resp.read()
                except (TimeoutError, aiohttp.ClientError):
                    self.statuses["connection lost"] += 1
                    return  # the server died: nothing more was acknowledged
                self.statuses[str(status)] += 1
                if status == 200 and good:
                    for r in json.loads(data)["receipts"]:
                        self.acked[r["log_index"]] = base64.b64decode(r["entry"])


async def run(rounds: int, seed: int, data: Path) -> dict[str, object]:
    camp = Campaign(seed)
    vkey = ""
    worker_kills = 0
    for _ in range(rounds):
        server = LogProcess(data, env=NO_LIMITS).start()
        assert server.proc is not None
        vkey = vkey or server.vkey
        try:
            kill_at = camp.rng.uniform(0.5, 2.5)
            until = time.monotonic() + kill_at + 5
            tasks = [asyncio.create_task(camp.hammer(server.url, until)) for _ in range(6)]
            await asyncio.sleep(kill_at / 2)
            for pid in worker_pids(server.proc.pid)[:1]:
                os.kill(pid, signal.SIGKILL)
                worker_kills += 1
            await asyncio.sleep(kill_at / 2)
            server.kill()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        finally:
            server.kill()
    final = LogProcess(data, env=NO_LIMITS).start()
    try:
        size, entries = await read_log(final.url, vkey)
    finally:
        final.stop()
    lost = sum(1 for i, e in camp.acked.items() if i >= size or entries[i] != e)
    bad_5xx = sum(
        n for s, n in camp.statuses.items() if s.isdigit() and int(s) >= 500 and s != "503"
    )
    return {
        "server_kills": rounds,
        "worker_kills": worker_kills,
        "requests_thrown": camp.thrown,
        "statuses": dict(camp.statuses),
        "responses_5xx_not_503": bad_5xx,
        "entries_acknowledged": len(camp.acked),
        "entries_lost": lost,
        "final_tree_size": size,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="server kills (10)")
    p.add_argument("--seed", type=int, default=20261202, help="random seed")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sigledger-faults-") as tmp:
        result = asyncio.run(run(args.rounds, args.seed, Path(tmp) / "log"))
        tracebacks = sum(
            f.read_text(errors="replace").count("Traceback") for f in Path(tmp).glob("*.log")
        )
    result["server_tracebacks"] = tracebacks
    print_table([(k.replace("_", " "), str(v)) for k, v in result.items()])
    print(json.dumps({"benchmark": "sigledger-faults", **result}, separators=(",", ":")))
    ok = result["entries_lost"] == 0 and result["responses_5xx_not_503"] == 0
    return 0 if ok and result["entries_acknowledged"] else 1


if __name__ == "__main__":
    sys.exit(main())
