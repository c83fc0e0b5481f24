"""The log's side of witnessing (c2sp.org/tlog-witness): collect cosignatures.

For each new checkpoint the log asks every configured witness concurrently,
``POST <witness>/add-checkpoint`` with ``old <size>`` = the size that witness
last cosigned (as far as the log knows) and the consistency proof from there.
A 409 answer carries the witness's real size; the log retries once from it.
Each cosignature line that comes back is verified against that witness's
key before it is kept.

:meth:`WitnessPool.cosign` returns as soon as ``quorum`` witnesses have
cosigned, or when every witness has answered or failed, or after
``timeout`` seconds -- a slow or dead witness never stalls the log longer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import NoteSignature, Verifier, verify_cosignature
from sigledger.ledger.service.httpclient import HttpClient
from sigledger.ledger.service.retry import Backoff, retrying
from sigledger.ledger.witnessproto import (
    AddCheckpointRequest,
    format_add_checkpoint,
    parse_cosignature_lines,
    parse_size_body,
)

log = logging.getLogger("sigledger.cosigner")

ProveConsistency = Callable[[int, int], Awaitable[list[bytes]]]


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    url: str  # the witness's submission prefix; /add-checkpoint is appended
    verifier: Verifier  # its cosignature/v1 (0x04) key

    @property
    def name(self) -> str:
        return self.verifier.name


@dataclass
class WitnessStatus:
    size: int = 0  # what we believe this witness last cosigned
    last_ok: float = 0.0
    last_error: str = ""


class WitnessPool(HttpClient):
    """The log's witnesses: asks each to cosign a checkpoint (:meth:`cosign`) over
    one session, opened by :meth:`start` and closed by :meth:`close`."""

    user_agent = "sigledger-log/0.1"

    def __init__(
        self,
        witnesses: Sequence[WitnessEndpoint],
        quorum: int,
        timeout: float,
        prove: ProveConsistency,
    ) -> None:
        super().__init__(timeout)
        self.witnesses = list(witnesses)
        self.quorum = quorum
        self.timeout = timeout
        self._prove = prove
        self.status = {w.url: WitnessStatus() for w in self.witnesses}

    async def cosign(self, note: bytes, cp: Checkpoint) -> list[NoteSignature]:
        """Cosignatures on ``cp`` from as many witnesses as answer in time (verified)."""
        if not self.witnesses:
            return []
        text = note.decode().split("\n\n", 1)[0] + "\n"
        tasks = {asyncio.create_task(self._one(w, note, cp, text)): w for w in self.witnesses}
        got: list[NoteSignature] = []
        deadline = time.monotonic() + self.timeout
        pending = set(tasks)
        try:
            while pending and len(got) < self.quorum:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    sig = task.result()
                    if sig is not None:
                        got.append(sig)
        finally:
            for task in pending:
                task.cancel()
        for task, w in tasks.items():
            if task in pending:
                self.status[w.url].last_error = "timed out or not needed for the quorum"
        return got

    async def _one(
        self, w: WitnessEndpoint, note: bytes, cp: Checkpoint, text: str
    ) -> NoteSignature | None:
        status = self.status[w.url]

        async def attempt() -> tuple[int, bytes, str]:
            old = status.size if status.size <= cp.size else 0
            proof = await self._prove(old, cp.size) if 0 < old < cp.size else []
            return await self._post(w, AddCheckpointRequest(old, tuple(proof), note))

        def resend(answer: tuple[int, bytes, str], _wait: float) -> float | None:
            # 409 tells the witness's real size: ask once more from there, at once,
            # unless the witness is ahead of us.
            code, body, ctype = answer
            if code != 409:
                return None
            status.size = parse_size_body(body, ctype)
            return 0.0 if status.size <= cp.size else None

        try:
            code, body, _ = await retrying(attempt, Backoff(2, first=0.0), again=resend)
            if code == 409 and status.size > cp.size:
                status.last_error = (
                    f"witness has cosigned size {status.size}, larger than ours ({cp.size})"
                )
                log.error(
                    "witness is ahead of the log",
                    extra={"witness": w.url, "witness_size": status.size, "tree_size": cp.size},
                )
                return None
            if code == 409:
                status.last_error = "witness size kept changing"
                return None
            if code != 200:
                status.last_error = f"HTTP {code}: {body[:200].decode(errors='replace')}"
                log.warning(
                    "witness refused checkpoint",
                    extra={"witness": w.url, "status": code, "tree_size": cp.size},
                )
                return None
            for sig in parse_cosignature_lines(body):
                if verify_cosignature(w.verifier, text, sig) is not None:
                    status.size = cp.size
                    status.last_ok = time.time()
                    status.last_error = ""
                    return sig
            status.last_error = "no valid cosignature in the answer"
            return None
        except (aiohttp.ClientError, TimeoutError, FormatError, OSError) as exc:
            status.last_error = f"{exc.__class__.__name__}: {exc}"
            return None

    async def _post(self, w: WitnessEndpoint, req: AddCheckpointRequest) -> tuple[int, bytes, str]:
        async with self.session.post(
            w.url.rstrip("/") + "/add-checkpoint", data=format_add_checkpoint(req)
        ) as resp:
            return resp.status, await resp.read(), resp.headers.get("Content-Type", "")
