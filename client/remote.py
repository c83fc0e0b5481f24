"""HTTP access to a sigledger log (aiohttp).

Every failure of the transport (DNS, refused connection, timeout, a 5xx, a
body that is not what the endpoint promises) becomes
:class:`~sigledger.ledger.errors.NetworkError`. An error answer with our JSON
error body becomes the domain error its ``error`` code names
(:func:`~sigledger.ledger.errors.request_error_class`), carrying the log's own
explanation and details: a :class:`~sigledger.ledger.errors.RefusedError`
(:data:`LogRefusedError`) for a refusal, an
:class:`~sigledger.ledger.errors.UnavailableError` (a NetworkError) for "try
again later" once the retries are spent. Nothing returned here is trusted: callers verify
signatures and proofs (:mod:`sigledger.client.receipts`) before using it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from sigledger.ledger.entry import Signed
from sigledger.ledger.errors import (
    FormatError,
    LedgerError,
    NetworkError,
    NotFoundError,
    NotWitnessedError,
    RefusedError,
    UnavailableError,
    request_error_class,
)
from sigledger.ledger.service.httpclient import HttpClient
from sigledger.ledger.service.retry import Backoff, retrying
from sigledger.ledger.wire import (
    JSON_TYPE,
    MSGPACK_TYPE,
    ConsistencyAnswer,
    LookupAnswer,
    Receipt,
    encode_add_request,
    parse_add_answer,
)

USER_AGENT = "sigledger-client/0.1"
OBSERVING_WAIT = 300.0  # seconds a lookup waits for a log observing a large release


LogRefusedError = RefusedError
"""The log understood the request and refused it; the class of the error is the
domain error named by the answer's ``error`` code (e.g.
:class:`~sigledger.ledger.errors.BindingConflictError`)."""

NotPublishedError = NotWitnessedError
"""The log stored the statements but has not published a checkpoint covering
them yet (its witnesses did not cosign in time)."""


def normalize_url(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = (
            "http://" + url if url.startswith(("127.", "localhost", "[::1]")) else "https://" + url
        )
    return url.rstrip("/")


def _busy_wait(answer: tuple[int, bytes, str, str], wait: float) -> float | None:
    """A busy log (429, 503) is asked again, after its ``Retry-After`` when it gives one."""
    status, _, _, retry_after = answer
    if status not in (429, 503):
        return None
    return float(retry_after) if retry_after.isdigit() else wait


class LogClient(HttpClient):
    """A session with one log. Use as ``async with LogClient(url) as log: ...``."""

    user_agent = USER_AGENT

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 3) -> None:
        super().__init__(timeout)
        self.url = normalize_url(url)
        self._retries = retries

    async def _request(self, method: str, path: str, **kw: Any) -> tuple[int, bytes, str]:
        """One request with retries on connection errors, 503 and 429 (``Retry-After``)."""
        status, body, ctype, _ = await self._request_once(method, path, **kw)
        return status, body, ctype

    async def _request_once(self, method: str, path: str, **kw: Any) -> tuple[int, bytes, str, str]:
        """:meth:`_request`, also returning the answer's ``Retry-After``."""

        async def attempt() -> tuple[int, bytes, str, str]:
            async with self.session.request(method, self.url + path, **kw) as resp:
                body = await resp.read()
                return resp.status, body, resp.content_type, resp.headers.get("Retry-After", "")

        try:
            return await retrying(
                attempt,
                Backoff(self._retries + 1, first=0.5),
                again=_busy_wait,
                transient=(aiohttp.ClientError, TimeoutError),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NetworkError(
                f"cannot reach the log at {self.url}: {exc.__class__.__name__}: {exc}"
            ) from exc

    def _raise_for(self, status: int, body: bytes, what: str) -> None:
        if status == 200:
            return
        raise self._error(status, body, what)

    def _error(self, status: int, body: bytes, what: str) -> LedgerError:
        """The domain error an error answer names (its JSON ``error`` code); for
        an answer without one (a proxy, a plain tlog-tiles server), by status."""
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            key, message = str(doc.get("error", status)), str(doc.get("message", ""))
            details = {k: v for k, v in doc.items() if k not in ("error", "message")}
        else:
            key, message, details = str(status), body[:200].decode(errors="replace"), {}
        cls = request_error_class(key)
        if cls is None and 400 <= status < 500 and status != 429:
            cls = NotFoundError if status == 404 else RefusedError
        if cls is None:
            return NetworkError(
                f"{what} failed at {self.url}: HTTP {status} {key} {message}".strip()
            )
        if issubclass(cls, RefusedError):
            text = f"the log refused the request ({status} {key}): {message}"
        elif issubclass(cls, NotWitnessedError):
            text = f"logged, waiting for witness cosignatures: {message}"
        else:
            text = f"{what} failed at {self.url}: HTTP {status} {key} {message}".strip()
        return cls.from_details(text, details, key)

    async def checkpoint(self) -> bytes:
        status, body, _ = await self._request("GET", "/checkpoint")
        self._raise_for(status, body, "fetching the checkpoint")
        return body

    async def tile(self, path: str) -> bytes:
        status, body, _ = await self._request("GET", "/" + path)
        self._raise_for(status, body, f"fetching {path}")
        return body

    async def add(
        self, statements: Sequence[Signed], *, use_msgpack: bool = False
    ) -> list[Receipt]:
        """Submit signed statements and observations; return the receipts (unverified)."""
        ctype = MSGPACK_TYPE if use_msgpack else JSON_TYPE
        status, body, _ = await self._request(
            "POST",
            "/add",
            data=encode_add_request(statements, ctype),
            headers={"Content-Type": ctype},
        )
        self._raise_for(status, body, "submitting statements")
        try:
            return parse_add_answer(body, len(statements))
        except FormatError as exc:
            raise self._malformed("/add", exc) from None

    async def lookup(self, **params: str) -> LookupAnswer:
        """One page of GET /lookup (unverified). While the log answers 202 (it is
        observing a large release), ask again after its ``Retry-After``, for at most
        :data:`OBSERVING_WAIT` seconds."""
        deadline = time.monotonic() + OBSERVING_WAIT
        while True:
            status, body, _, after = await self._request_once("GET", "/lookup", params=params)
            if status != 202:
                break
            wait = min(float(after) if after.isdigit() else 1.0, 30.0)
            if time.monotonic() + wait > deadline:
                raise UnavailableError(
                    f"the log at {self.url} is still observing the release asked for "
                    f"after {OBSERVING_WAIT:.0f} s; ask again later",
                    retry_after=int(wait),
                )
            await asyncio.sleep(wait)
        self._raise_for(status, body, "looking up entries")
        try:
            return LookupAnswer.parse(body)
        except FormatError as exc:
            raise self._malformed("/lookup", exc) from None

    async def lookup_batch(self, sha256_hex: Sequence[str], *, related: bool) -> LookupAnswer:
        """POST /lookup: entries for many digests at once (unverified)."""
        status, body, _ = await self._request(
            "POST", "/lookup", json={"sha256": list(sha256_hex), "related": related}
        )
        self._raise_for(status, body, "looking up entries")
        try:
            return LookupAnswer.parse(body)
        except FormatError as exc:
            raise self._malformed("/lookup", exc) from None

    async def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """GET /proof/consistency: the proof's hashes (unverified)."""
        status, body, _ = await self._request(
            "GET", "/proof/consistency", params={"old": str(old), "new": str(new)}
        )
        self._raise_for(status, body, "fetching a consistency proof")
        try:
            return list(ConsistencyAnswer.parse(body, old, new).hashes)
        except FormatError as exc:
            raise self._malformed("/proof/consistency", exc) from None

    def _malformed(self, what: str, exc: FormatError) -> NetworkError:
        return NetworkError(f"the log at {self.url} answered {what} with a malformed body: {exc}")
