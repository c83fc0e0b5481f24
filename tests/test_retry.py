"""The one retry loop (ledger/service/retry.py) and the policies its callers give it."""

from __future__ import annotations

import pytest

from sigledger.client.monitor.watcher import _webhook_again
from sigledger.client.remote import _busy_wait
from sigledger.ledger.checkpoint import Checkpoint, format_checkpoint, sign_checkpoint
from sigledger.ledger.log.cosigner import WitnessEndpoint, WitnessPool
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Signer, sign_cosignature
from sigledger.ledger.service.retry import Backoff, retrying
from sigledger.ledger.witnessproto import (
    SIZE_CONTENT_TYPE,
    AddCheckpointRequest,
    format_size_body,
)


class _Script:
    """Attempts that raise or return what the test lists, in order; sleeps recorded."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.slept: list[float] = []

    async def attempt(self) -> object:
        self.calls += 1
        out = self.outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_transient_errors_are_retried_with_growing_waits() -> None:
    s = _Script(TimeoutError(), ConnectionError(), "ok")
    got = await retrying(
        s.attempt, Backoff(5, first=0.5), transient=(TimeoutError, OSError), sleep=s.sleep
    )
    assert (got, s.calls, s.slept) == ("ok", 3, [0.5, 1.0])


async def test_the_last_transient_error_is_raised() -> None:
    s = _Script(TimeoutError(), TimeoutError("last"))
    with pytest.raises(TimeoutError, match="last"):
        await retrying(s.attempt, Backoff(2, first=1.0), transient=(TimeoutError,), sleep=s.sleep)
    assert s.slept == [1.0]


async def test_other_errors_are_not_retried() -> None:
    s = _Script(ValueError("bad"), "never")
    with pytest.raises(ValueError):
        await retrying(s.attempt, Backoff(3), transient=(TimeoutError,), sleep=s.sleep)
    assert s.calls == 1


async def test_again_chooses_the_wait_and_the_last_result_is_kept() -> None:
    s = _Script(503, 503, 503)
    seen: list[tuple[int, float]] = []

    def again(status: int, wait: float) -> float | None:
        seen.append((status, wait))
        return 100.0 if len(seen) == 1 else wait

    got = await retrying(s.attempt, Backoff(3, first=0.25, cap=10.0), again=again, sleep=s.sleep)
    # The server's long wait is capped; again saw every answer, the last one too.
    assert (got, s.slept) == (503, [10.0, 0.5])
    assert [w for _, w in seen] == [0.25, 0.5, 1.0]


async def test_a_final_answer_ends_the_loop() -> None:
    s = _Script(500, 200, 500)
    got = await retrying(
        s.attempt, Backoff(3), again=lambda st, w: w if st >= 500 else None, sleep=s.sleep
    )
    assert (got, s.calls) == (200, 2)


async def test_one_attempt_never_sleeps() -> None:
    s = _Script(503)
    assert await retrying(s.attempt, Backoff(0), again=lambda st, w: w, sleep=s.sleep) == 503
    assert s.slept == []


def test_the_callers_policies() -> None:
    # The log client: busy answers are asked again, after Retry-After when given.
    assert _busy_wait((503, b"", "", "7"), 0.5) == 7.0
    assert _busy_wait((429, b"", "", ""), 0.5) == 0.5
    assert _busy_wait((404, b"", "", "7"), 0.5) is None
    assert _busy_wait((200, b"", "", ""), 0.5) is None
    # The alarm webhook: taken and refused are final; 429, 3xx and 5xx are retried.
    assert [_webhook_again(s, 1.0) for s in (200, 204, 400, 404)] == [None] * 4
    assert [_webhook_again(s, 1.0) for s in (302, 429, 500, 503)] == [1.0] * 4


# -- the cosigner's resend after a witness's 409 -------------------------------------------

LOG = Signer.from_seed("example.org/log", bytes(32))
WITNESS = Signer.from_seed("example.org/w", bytes([3]) * 32, ALG_COSIGNATURE_V1)
CP = Checkpoint("example.org/log", 10, bytes(32))
NOTE = sign_checkpoint(CP, LOG)
TEXT = format_checkpoint(CP)


class _ScriptedWitness(WitnessPool):
    """A pool of one witness whose answers the test lists; records the old sizes sent."""

    def __init__(self, *answers: tuple[int, bytes, str]) -> None:
        async def prove(old: int, new: int) -> list[bytes]:
            return [bytes(32)]

        super().__init__([WitnessEndpoint("http://w", WITNESS.verifier())], 1, 5.0, prove)
        self.answers = list(answers)
        self.sent: list[int] = []

    async def _post(self, w: WitnessEndpoint, req: AddCheckpointRequest) -> tuple[int, bytes, str]:
        self.sent.append(req.old_size)
        return self.answers.pop(0)


def _size(n: int) -> tuple[int, bytes, str]:
    return 409, format_size_body(n), SIZE_CONTENT_TYPE


def _cosigned() -> tuple[int, bytes, str]:
    return 200, sign_cosignature(WITNESS, TEXT, 1).line().encode(), "text/plain"


async def test_cosigner_resends_once_from_the_witness_size() -> None:
    pool = _ScriptedWitness(_size(4), _cosigned())
    got = await pool.cosign(NOTE, CP)
    assert len(got) == 1 and pool.sent == [0, 4]
    assert (pool.status["http://w"].size, pool.status["http://w"].last_error) == (10, "")


async def test_cosigner_gives_up_on_a_witness_that_keeps_moving_or_is_ahead() -> None:
    moving = _ScriptedWitness(_size(4), _size(6))
    assert await moving.cosign(NOTE, CP) == []
    assert moving.sent == [0, 4]
    assert moving.status["http://w"].last_error == "witness size kept changing"
    ahead = _ScriptedWitness(_size(12))
    assert await ahead.cosign(NOTE, CP) == []
    assert ahead.sent == [0]  # not asked again from a size beyond ours
    assert "larger than ours" in ahead.status["http://w"].last_error
    late = _ScriptedWitness(_size(4), _size(11))
    assert await late.cosign(NOTE, CP) == []
    assert "larger than ours" in late.status["http://w"].last_error
