"""Who may submit, and how much: the log's controls against floods and spam.

Checked for every ``POST /add``, cheapest first:

1. **Per-client token bucket** (requests per second and burst, per client
   address) before the body is read. The address is the TCP peer, or -- only
   when ``client_ip_header`` is configured, for a log behind a reverse proxy --
   the last address in that header (the one the trusted proxy appended).
2. **Backlog bound** before the body is read: bytes and requests that have been
   admitted but not yet verified. Past either limit the answer is 503 with
   ``Retry-After`` at once, so memory stays bounded however many connections
   flood the log.
3. **Allowlist** (``submitters_file``, optional) after the statements parse: one
   signer verifier key per line (``#`` comments); other keys get 403. Reloaded
   on SIGHUP; a file that cannot be read keeps the previous list.
4. **Per-signer token bucket** (statements per second and burst, per signer
   key) after the signatures verify, so nobody can drain a publisher's bucket
   with forged statements.

Refusals by a bucket are 429 with ``Retry-After`` and a JSON ``limit`` naming
the bucket (``client`` or ``signer``). Bucket tables are bounded: idle buckets
(refilled to their burst) are forgotten, and the least recently used ones are
dropped beyond ``max_keys``, which can only make a limit more lenient.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sigledger.ledger.errors import ConfigError, FormatError
from sigledger.ledger.note import Verifier

log = logging.getLogger("sigledger.admission")


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, holding at most ``burst``.

    ``rate <= 0`` disables the limit (every take succeeds).
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, n: float = 1.0) -> float:
        """Take ``n`` tokens for ``key``: 0.0 if allowed, else seconds until it would be.

        A refused take takes nothing. A take larger than the burst is allowed
        only from a full bucket and leaves it in debt, so the long-run rate holds.
        """
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        needed = min(n, self.burst)
        if tokens >= needed:
            tokens -= n
            wait = 0.0
        else:
            wait = (needed - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        # Least recently used first: drop buckets that have refilled (the same as
        # no bucket), and any beyond max_keys.
        while self._buckets:
            key, (tokens, at) = next(iter(self._buckets.items()))
            refilled = tokens + (now - at) * self.rate >= self.burst
            if not refilled and len(self._buckets) <= self.max_keys:
                break
            del self._buckets[key]


@dataclass
class Backlog:
    """Bytes and requests admitted but not yet verified (the memory at stake)."""

    max_bytes: int
    max_requests: int
    bytes: int = 0
    requests: int = 0
    refused: int = field(default=0)

    def try_enter(self, nbytes: int) -> bool:
        """Reserve room for one request of ``nbytes``; False (nothing reserved) if full.

        A request larger than ``max_bytes`` is admitted only into an empty
        backlog, so one large but allowed body is never refused forever.
        """
        if self.requests >= self.max_requests or (
            self.requests > 0 and self.bytes + nbytes > self.max_bytes
        ):
            self.refused += 1
            return False
        self.bytes += nbytes
        self.requests += 1
        return True

    def leave(self, nbytes: int) -> None:
        self.bytes -= nbytes
        self.requests -= 1
        if self.bytes < 0 or self.requests < 0:
            raise AssertionError("bad math in Backlog: left more than entered")


def read_submitters(path: Path) -> frozenset[str]:
    """Signer verifier keys allowed to submit, one per line; ConfigError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read submitters_file {path}: {exc}") from None
    keys = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            keys.add(Verifier.from_vkey(line).vkey)
        except FormatError as exc:
            raise ConfigError(f"{path}:{number}: not a verifier key: {exc}") from None
    return frozenset(keys)


class Submitters:
    """The optional allowlist of signer keys; ``None`` path means everyone may submit."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.keys: frozenset[str] | None = read_submitters(path) if path is not None else None

    def allows(self, vkey: str) -> bool:
        return self.keys is None or vkey in self.keys

    def reload(self) -> bool:
        """Re-read the file (on SIGHUP); on failure keep the current list and log why."""
        if self.path is None:
            return False
        try:
            keys = read_submitters(self.path)
        except ConfigError as exc:
            log.error(  # noqa: TRY400 (the message says it all; no traceback wanted)
                "submitters_file not reloaded, keeping the previous list: %s", exc
            )
            return False
        self.keys = keys
        log.info("submitters_file reloaded", extra={"submitters": len(keys)})
        return True


def client_address(peer: str | None, headers: Iterable[str], header_set: bool) -> str:
    """The client address a limit applies to.

    ``headers`` are the values of the configured trusted-proxy header (when
    ``header_set``); its last comma-separated item is what the proxy appended,
    the only part a client cannot forge. Without a usable header value the TCP
    peer counts. IPv6 clients share a bucket per /64, the unit one host gets.
    """
    address = peer or ""
    if header_set:
        values = [v.strip() for h in headers for v in h.split(",") if v.strip()]
        if values:
            address = values[-1]
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address[:64] or "unknown"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
