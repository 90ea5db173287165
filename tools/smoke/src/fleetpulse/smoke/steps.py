"""Named steps with timeouts, and polling until a condition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
Say = Callable[[str], None]


class StepError(Exception):
    """A step failed or timed out; ``step`` names it."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class NotYet(Exception):  # noqa: N818 - "keep polling", not an error
    """Raised by a poll function: the condition does not hold yet (the message says why)."""


@dataclass
class Steps:
    say: Say
    timeout_s: float = 30.0
    passed: list[tuple[str, float]] = field(default_factory=list)
    waiting_for: str = ""  # the last NotYet reason of the running step

    async def run(self, name: str, action: Awaitable[T], timeout_s: float | None = None) -> T:
        """Run ``action`` as step ``name``; :class:`StepError` on error or timeout."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        self.waiting_for = ""
        try:
            result = await asyncio.wait_for(action, limit)
        except TimeoutError:
            detail = f" ({self.waiting_for})" if self.waiting_for else ""
            raise StepError(name, f"timed out after {limit:.0f}s{detail}") from None
        except StepError:
            raise
        except Exception as exc:
            raise StepError(name, f"{type(exc).__name__}: {exc}") from exc
        elapsed = time.monotonic() - started
        self.passed.append((name, elapsed))
        self.say(f"ok   {name} ({elapsed:.1f}s)")
        return result

    async def poll(
        self,
        check: Callable[[], Awaitable[T]],
        *,
        every_s: float = 0.5,
        meanwhile: Callable[[], Awaitable[None]] | None = None,
        meanwhile_every_s: float = 3.0,
    ) -> T:
        """Call ``check`` until it returns instead of raising :class:`NotYet` (:meth:`run` bounds
        the time); ``meanwhile`` runs now and then (say, to publish the reading again)."""
        last_nudge = time.monotonic()
        while True:
            try:
                return await check()
            except NotYet as not_yet:
                self.waiting_for = str(not_yet)
            if meanwhile is not None and time.monotonic() - last_nudge >= meanwhile_every_s:
                await meanwhile()
                last_nudge = time.monotonic()
            await asyncio.sleep(every_s)
