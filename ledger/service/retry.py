"""Retries with exponential backoff, for every HTTP caller (client, monitor, log).

:func:`retrying` runs one attempt after another until an answer is final or the
tries are used up:

* an attempt that raises one of ``transient`` (a refused connection, a timeout) is
  tried again after the backoff wait; when no try is left, that error is raised;
* an attempt that returns is shown to ``again(result, wait)``: None keeps the
  result, a number of seconds tries again after that long (``wait`` is the backoff's
  own next wait; a caller may prefer a server's ``Retry-After``); ``again`` sees
  every result, also the last one, but when no try is left that result is returned
  whatever ``again`` says;
* waits start at :attr:`Backoff.first`, grow by :attr:`Backoff.factor` after every
  try and are never longer than :attr:`Backoff.cap`.

``sleep`` is a parameter so that tests need not wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How often to try (``attempts``, at least 1) and how long to wait in between."""

    attempts: int
    first: float = 0.5
    factor: float = 2.0
    cap: float = 30.0


def _final(_result: object, _wait: float) -> float | None:
    return None


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    again: Callable[[T, float], float | None] = _final,
    transient: tuple[type[BaseException], ...] = (),
    sleep: Sleep = asyncio.sleep,
) -> T:
    """The first final result of ``attempt`` (see the module docstring)."""
    wait = backoff.first
    tries = max(1, backoff.attempts)
    for n in range(1, tries + 1):
        try:
            result = await attempt()
        except transient:
            if n == tries:
                raise
            pause = wait
        else:
            asked = again(result, wait)
            if asked is None or n == tries:
                return result
            pause = asked
        await sleep(min(max(pause, 0.0), backoff.cap))
        wait = min(wait * backoff.factor, backoff.cap)
    raise AssertionError("unreachable: the last try returns or raises")
