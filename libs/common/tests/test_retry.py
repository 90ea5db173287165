"""The one backoff helper: schedules as the loops had them, retries only what ``on`` names."""

from __future__ import annotations

import logging

import pytest
import tenacity

from fleetpulse.common.errors import PermanentError, TransientError
from fleetpulse.common.mqtt import Backoff
from fleetpulse.common.retry import RetryPolicy, doubling, equal_jitter


def test_equal_jitter_is_half_fixed_half_random_and_capped() -> None:
    wait = equal_jitter(0.5, 30.0)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (20, 30.0)]:
        delays = [wait.delay(retry) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > 0  # jittered


def test_backoff_keeps_its_schedule_on_the_shared_strategy() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    assert 0.5 <= backoff.next() <= 1.0
    assert 1.0 <= backoff.next() <= 2.0
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


async def test_policy_retries_only_what_it_names(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(
        on=(TransientError,),
        attempts=4,
        wait=doubling(0.0),
        logger=logging.getLogger("test.retry"),
        message="work failed; retrying",
    )
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("later", code="08006")
        return "ok"

    with caplog.at_level(logging.WARNING, "test.retry"):
        assert await policy.call(flaky) == "ok"
    assert len(calls) == 3
    assert [r.attempt for r in caplog.records] == [1, 2]  # type: ignore[attr-defined]

    calls.clear()

    async def broken() -> None:
        calls.append(1)
        raise PermanentError("never", code="42P01")

    with pytest.raises(PermanentError):
        await policy.call(broken)
    assert len(calls) == 1  # positive control: a permanent failure is not retried


def test_doubling_schedule() -> None:
    wait = doubling(0.005)
    state = tenacity.RetryCallState(tenacity.AsyncRetrying(), None, (), {})
    delays = []
    for attempt in range(1, 6):
        state.attempt_number = attempt
        delays.append(wait(state))
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.08]  # the evaluator's conflict schedule
