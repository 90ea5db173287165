"""Backoff schedule, Retry-After and the circuit breaker, no I/O."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from fleetpulse.delivery_worker.breaker import CircuitBreakers
from fleetpulse.delivery_worker.retry import (
    MAX_ATTEMPTS,
    SCHEDULE_S,
    AttemptResult,
    Verdict,
    backoff_s,
    decide,
    parse_retry_after,
)

FAILED = AttemptResult(ok=False, status_code=500, error="HTTP 500", endpoint_failure=True)


def test_schedule_spans_about_a_day() -> None:
    assert SCHEDULE_S == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert 20 * 3600 < sum(SCHEDULE_S) < 30 * 3600
    assert MAX_ATTEMPTS == 8


@pytest.mark.parametrize("attempt", range(1, 8))
def test_backoff_has_bounded_jitter(attempt: int) -> None:
    rng = random.Random(attempt)
    delays = [backoff_s(attempt, rng) for _ in range(200)]
    base = SCHEDULE_S[attempt - 1]
    assert all(0.8 * base <= d <= 1.2 * base for d in delays)
    assert len(set(delays)) > 100


def test_success_failure_and_exhaustion() -> None:
    assert decide(AttemptResult(ok=True, status_code=200), 1).verdict is Verdict.SUCCEEDED
    retry = decide(FAILED, 1, random.Random(0))
    assert retry.verdict is Verdict.RETRY
    assert 4 <= retry.delay_s <= 6
    assert decide(FAILED, MAX_ATTEMPTS).verdict is Verdict.ABANDON


def test_retry_after_is_honoured_on_429_and_503_only() -> None:
    for status in (429, 503):
        result = AttemptResult(ok=False, status_code=status, retry_after_s=120)
        assert decide(result, 1).delay_s == 120
    assert decide(AttemptResult(ok=False, status_code=500, retry_after_s=120), 1).delay_s < 10
    capped = decide(AttemptResult(ok=False, status_code=429, retry_after_s=10**9), 1)
    assert capped.delay_s == 12 * 3600


def test_gone_disables_and_permanent_abandons() -> None:
    assert decide(AttemptResult(ok=False, status_code=410, gone=True), 1).verdict is Verdict.DISABLE
    assert decide(AttemptResult(ok=False, permanent=True, error="x"), 1).verdict is Verdict.ABANDON


def test_parse_retry_after() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Tue, 01 Jan 2030 00:01:00 GMT", now) == 60
    assert (
        parse_retry_after((now - timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now)
        == 0
    )
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_circuit_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(failures=3, open_s=30, clock=clock)
    for _ in range(3):
        assert await breakers.acquire("dead") == 0
        breakers.release("dead", endpoint_failure=True)
    assert await breakers.acquire("dead") == pytest.approx(30)
    assert await breakers.acquire("healthy") == 0
    clock.now = 31
    assert await breakers.acquire("dead") == 0  # the probe
    assert await breakers.acquire("dead") > 0  # only one probe at a time
    breakers.release("dead", endpoint_failure=True)
    assert await breakers.acquire("dead") == pytest.approx(60)  # open twice as long
    clock.now = 92
    assert await breakers.acquire("dead") == 0
    breakers.release("dead", endpoint_failure=False)
    assert await breakers.acquire("dead") == 0


async def test_bulkhead_caps_attempts_in_flight_per_integration() -> None:
    breakers = CircuitBreakers(max_in_flight=2)
    assert await breakers.acquire("a") == 0
    assert await breakers.acquire("a") == 0
    assert await breakers.acquire("a") > 0
    assert await breakers.acquire("b") == 0
    breakers.release("a", endpoint_failure=False)
    assert await breakers.acquire("a") == 0
