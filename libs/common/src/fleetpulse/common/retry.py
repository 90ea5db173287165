"""One backoff helper for infrastructure retries, built on tenacity.

A :class:`RetryPolicy` says what is retried (exception types: FleetPulse's translated errors,
never a driver's), how often (``attempts``, None: until it succeeds) and how long to wait
between tries (:func:`equal_jitter`: exponential, half fixed and half random, the platform's
shape since the first reconnect loop; :func:`doubling`: exponential without jitter). Each run
builds a fresh ``tenacity.AsyncRetrying``, so one policy serves concurrent tasks.

The delivery worker's webhook schedule (Retry-After, the Standard Webhooks steps) is a product
feature, not an infrastructure retry: it lives in ``delivery_worker/retry.py``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity
from tenacity.wait import wait_base

T = TypeVar("T")


class equal_jitter(wait_base):  # noqa: N801 - named like tenacity's own wait strategies
    """``min(maximum, initial * factor**(n-1))`` for retry ``n``, half fixed and half random."""

    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor

    def delay(self, retry: int) -> float:
        """The wait before retry ``retry`` (1-based)."""
        ceiling = min(self.maximum, self.initial * self.factor ** (retry - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.delay(retry_state.attempt_number)


class doubling(wait_base):  # noqa: N801 - named like tenacity's own wait strategies
    """``initial * 2**(n-1)`` for retry ``n``, no jitter (short, local conflicts)."""

    def __init__(self, initial: float) -> None:
        self.initial = initial

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return float(self.initial * 2 ** (retry_state.attempt_number - 1))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """What to retry, how many times, how long to wait, and what to log before each wait.

    ``on``: the exception types worth another try (anything else propagates at once).
    ``attempts``: tries in all, the first included; None retries until success.
    ``wait``: a tenacity wait strategy (``equal_jitter``, ``doubling``, ``wait_none()``).
    ``logger``/``message``/``level``: one log record per retry, with ``error`` and ``attempt``.
    """

    on: tuple[type[BaseException], ...]
    attempts: int | None = None
    wait: wait_base = tenacity.wait_none()  # noqa: RUF009 - immutable strategy object
    logger: logging.Logger | None = None
    message: str = "retrying"
    level: int = logging.WARNING

    def retrying(self) -> tenacity.AsyncRetrying:
        """A fresh controller: ``async for attempt in policy.retrying(): with attempt: ...``."""
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_never
            if self.attempts is None
            else tenacity.stop_after_attempt(self.attempts),
            wait=self.wait,
            retry=tenacity.retry_if_exception_type(self.on),
            before_sleep=self._log if self.logger is not None else None,
            reraise=True,
        )

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` until it returns, retrying the failures in ``on``."""
        result: T = await self.retrying()(work)
        return result

    def _log(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        assert self.logger is not None
        self.logger.log(
            self.level,
            self.message,
            extra={"error": _name(exc), "attempt": state.attempt_number},
        )


def _name(exc: BaseException | None) -> str:
    """The failure's type name; a translated error's driver type (what the logs always said)."""
    if exc is None:
        return ""
    return type(exc.__cause__ or exc).__name__


#: Run once, no retry (the default of a unit of work).
NO_RETRY = RetryPolicy(on=(), attempts=1)

__all__ = ["NO_RETRY", "RetryPolicy", "doubling", "equal_jitter"]
