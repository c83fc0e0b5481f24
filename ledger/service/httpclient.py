"""The one way sigledger holds an outgoing HTTP connection pool.

An :class:`HttpClient` owns one :class:`aiohttp.ClientSession`, made with its
timeout and a ``User-Agent`` that names the program: opened by :meth:`start`
(or ``async with``), closed by :meth:`close`. The log's client, the cosigner,
the monitor's webhook and the installer's upstream each derive from it.
"""

from __future__ import annotations

from types import TracebackType
from typing import ClassVar, Self

import aiohttp

__all__ = ["HttpClient"]


class HttpClient:
    """Owns an aiohttp session with ``timeout`` (seconds, or an aiohttp timeout)
    and the subclass's ``user_agent``; :attr:`session` is it, once opened."""

    user_agent: ClassVar[str] = "sigledger/0.1"

    def __init__(self, timeout: float | aiohttp.ClientTimeout) -> None:
        self._timeout = (
            timeout
            if isinstance(timeout, aiohttp.ClientTimeout)
            else aiohttp.ClientTimeout(total=timeout)
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the session (it must be opened inside a running event loop)."""
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, headers={"User-Agent": self.user_agent}
        )

    async def close(self) -> None:
        """Close the session, if :meth:`start` opened one."""
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; RuntimeError before :meth:`start` (or ``async with``)."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} used before it was opened")
        return self._session
