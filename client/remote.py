"""HTTP access to a sigledger log (aiohttp).

Every failure of the transport (DNS, refused connection, timeout, a 5xx, a
body that is not what the endpoint promises) becomes
:class:`~sigledger.ledger.errors.NetworkError`; a refusal by the log (4xx with our JSON
error body) becomes :class:`LogRefusedError` carrying the status and the
log's own explanation. Nothing returned here is trusted: callers verify
signatures and proofs (:mod:`sigledger.client.receipts`) before using it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp

from sigledger.ledger.entry import SignedStatement
from sigledger.ledger.errors import LedgerError, NetworkError
from sigledger.ledger.service.retry import Backoff, retrying
from sigledger.ledger.wire import JSON_TYPE, MSGPACK_TYPE, encode_add_request

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


def _busy_wait(answer: tuple[int, bytes, str, str], wait: float) -> float | None:
    """A busy log (429, 503) is asked again, after its ``Retry-After`` when it gives one."""
    status, _, _, retry_after = answer
    if status not in (429, 503):
        return None
    return float(retry_after) if retry_after.isdigit() else wait


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
        """One request with retries on connection errors, 503 and 429 (``Retry-After``)."""

        async def attempt() -> tuple[int, bytes, str, str]:
            async with self.session.request(method, self.url + path, **kw) as resp:
                body = await resp.read()
                return resp.status, body, resp.content_type, resp.headers.get("Retry-After", "")

        try:
            status, body, ctype, _ = await retrying(
                attempt,
                Backoff(self._retries + 1, first=0.5),
                again=_busy_wait,
                transient=(aiohttp.ClientError, TimeoutError),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NetworkError(
                f"cannot reach the log at {self.url}: {exc.__class__.__name__}: {exc}"
            ) from exc
        return status, body, ctype

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
    ) -> list[dict[str, Any]]:
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
            receipts = json.loads(body)["receipts"]
        except (ValueError, KeyError, TypeError):
            raise NetworkError(
                f"the log at {self.url} answered /add with a malformed body"
            ) from None
        if not isinstance(receipts, list) or len(receipts) != len(statements):
            raise NetworkError(
                f"the log at {self.url} returned {len(receipts)} receipts for "
                f"{len(statements)} statements"
            )
        return receipts

    async def lookup(self, **params: str) -> dict[str, Any]:
        """One page of GET /lookup (unverified)."""
        status, body, _ = await self._request("GET", "/lookup", params=params)
        self._raise_for(status, body, "looking up entries")
        return _json_object(body, self.url, "/lookup")

    async def lookup_batch(self, sha256_hex: Sequence[str], *, related: bool) -> dict[str, Any]:
        """POST /lookup: entries for many digests at once (unverified)."""
        status, body, _ = await self._request(
            "POST", "/lookup", json={"sha256": list(sha256_hex), "related": related}
        )
        self._raise_for(status, body, "looking up entries")
        return _json_object(body, self.url, "/lookup")

    async def consistency_proof(self, old: int, new: int) -> list[str]:
        """GET /proof/consistency (unverified base64 hashes)."""
        status, body, _ = await self._request(
            "GET", "/proof/consistency", params={"old": str(old), "new": str(new)}
        )
        self._raise_for(status, body, "fetching a consistency proof")
        hashes = _json_object(body, self.url, "/proof/consistency").get("hashes")
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise NetworkError(f"the log at {self.url} sent a malformed consistency proof")
        return hashes


def _json_object(body: bytes, url: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise NetworkError(f"the log at {url} answered {what} with a malformed body")
    return doc
