"""HTTP access to a sigledger log (aiohttp).

Every failure of the transport (DNS, refused connection, timeout, a 5xx, a
body that is not what the endpoint promises) becomes
:class:`~sigledger.ledger.errors.NetworkError`; a refusal by the log (4xx with our JSON
error body) becomes :class:`LogRefusedError` carrying the status and the
log's own explanation. Nothing returned here is trusted: callers verify
signatures and proofs (:mod:`sigledger.client.receipts`) before using it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp

from sigledger.ledger.entry import SignedStatement
from sigledger.ledger.errors import FormatError, LedgerError, NetworkError
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


class LogRefusedError(LedgerError):
    """The log understood the request and refused it (HTTP 4xx)."""

    def __init__(self, status: int, error_key: str, message: str, body: dict[str, Any]):
        super().__init__(f"the log refused the request ({status} {error_key}): {message}")
        self.status = status
        self.error_key = error_key
        self.body = body

    @property
    def hint(self) -> str:  # type: ignore[override]
        return {
            400: "The statement is malformed; check the file name, project and version.",
            403: "The signature did not verify; check that --key is the key you meant.",
            409: "This key already logged a different hash for this file. A release file "
            "must never change: publish a new version instead.",
            413: "Send fewer files per request.",
        }.get(self.status, "")


class NotPublishedError(NetworkError):
    """The log stored the statements but has not published a checkpoint covering
    them yet (its witnesses did not cosign in time): HTTP 503 ``not_witnessed``."""

    hint = (
        "Nothing is wrong with the files: the log keeps them and will publish them "
        "once enough witnesses cosign its checkpoint. Run the same command again "
        "later to fetch the receipts (submitting again is safe)."
    )

    def __init__(self, message: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.error_key = "not_witnessed"
        self.body = body


def normalize_url(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = (
            "http://" + url if url.startswith(("127.", "localhost", "[::1]")) else "https://" + url
        )
    return url.rstrip("/")


class LogClient:
    """A session with one log. Use as ``async with LogClient(url) as log: ...``."""

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 3) -> None:
        self.url = normalize_url(url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LogClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, headers={"User-Agent": USER_AGENT}
        )
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("LogClient used outside 'async with'")
        return self._session

    async def _request(self, method: str, path: str, **kw: Any) -> tuple[int, bytes, str]:
        """One request with retries on connection errors, 503 and 429."""
        delay = 0.5
        for attempt in range(self._retries + 1):
            try:
                async with self.session.request(method, self.url + path, **kw) as resp:
                    body = await resp.read()
                    if resp.status in (429, 503) and attempt < self._retries:
                        retry_after = resp.headers.get("Retry-After", "")
                        wait = float(retry_after) if retry_after.isdigit() else delay
                        await asyncio.sleep(min(wait, 30.0))
                        delay *= 2
                        continue
                    return resp.status, body, resp.content_type
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt < self._retries:
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                raise NetworkError(
                    f"cannot reach the log at {self.url}: {exc.__class__.__name__}: {exc}"
                ) from exc
        raise AssertionError("bad math in LogClient._request: retry loop fell through")

    def _raise_for(self, status: int, body: bytes, what: str) -> None:
        if status == 200:
            return
        try:
            doc = json.loads(body)
            key, message = str(doc.get("error", status)), str(doc.get("message", ""))
        except (ValueError, AttributeError):
            doc, key, message = {}, str(status), body[:200].decode(errors="replace")
        if 400 <= status < 500 and status != 429:
            raise LogRefusedError(status, key, message, doc if isinstance(doc, dict) else {})
        if status == 503 and key == "not_witnessed":
            raise NotPublishedError(
                f"logged, waiting for witness cosignatures: {message}",
                doc if isinstance(doc, dict) else {},
            )
        raise NetworkError(f"{what} failed at {self.url}: HTTP {status} {key} {message}".strip())

    async def checkpoint(self) -> bytes:
        status, body, _ = await self._request("GET", "/checkpoint")
        self._raise_for(status, body, "fetching the checkpoint")
        return body

    async def tile(self, path: str) -> bytes:
        status, body, _ = await self._request("GET", "/" + path)
        self._raise_for(status, body, f"fetching {path}")
        return body

    async def add(
        self, statements: Sequence[SignedStatement], *, use_msgpack: bool = False
    ) -> list[Receipt]:
        """Submit statements; return the log's receipts (unverified) in order."""
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
        """One page of GET /lookup (unverified)."""
        status, body, _ = await self._request("GET", "/lookup", params=params)
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
