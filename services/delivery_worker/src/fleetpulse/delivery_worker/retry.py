"""When to try a delivery again, pure: the backoff schedule, jitter, Retry-After, outcomes.

Attempt 1 goes out at once; after a failed attempt ``n`` the next waits ``SCHEDULE_S[n-1]`` with
+-20 % jitter (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 attempts over about 28 hours). A
``Retry-After`` on a 429 or 503 replaces the schedule's delay (capped at 12 hours). 410 Gone is
final: the integration is disabled. A destination refused by the SSRF guard is final too.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import Enum

SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(SCHEDULE_S) + 1
JITTER = 0.2
MAX_RETRY_AFTER_S = 12 * 3600
RETRY_AFTER_STATUSES = frozenset({429, 503})
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt found out. ``endpoint_failure`` feeds the circuit breaker (no answer,
    5xx); ``permanent`` means retrying cannot help; ``gone`` is HTTP 410."""

    ok: bool
    status_code: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    retry_after_s: float | None = None
    endpoint_failure: bool = False
    permanent: bool = False
    gone: bool = False


class Verdict(Enum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    ABANDON = "abandon"
    DISABLE = "disable"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    delay_s: float = 0.0
    reason: str = ""


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Delay after failed attempt ``attempt`` (1-based), with jitter."""
    base = SCHEDULE_S[min(attempt, len(SCHEDULE_S)) - 1]
    return base * (1 + (rng or random).uniform(-JITTER, JITTER))


def decide(result: AttemptResult, attempt: int, rng: random.Random | None = None) -> Decision:
    if result.ok:
        return Decision(Verdict.SUCCEEDED)
    if result.gone:
        return Decision(Verdict.DISABLE, reason="endpoint answered 410 Gone")
    if result.permanent:
        return Decision(Verdict.ABANDON, reason=result.error or "permanent failure")
    if attempt >= MAX_ATTEMPTS:
        return Decision(Verdict.ABANDON, reason=f"gave up after {attempt} attempts: {result.error}")
    delay = backoff_s(attempt, rng)
    if result.status_code in RETRY_AFTER_STATUSES and result.retry_after_s is not None:
        delay = min(max(result.retry_after_s, 1.0), MAX_RETRY_AFTER_S)
    return Decision(Verdict.RETRY, delay_s=delay)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header, capped at ``MAX_RETRY_AFTER_S``: delta-seconds
    (``120``, and the fractional ``2.5`` some servers send) or an HTTP-date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)
