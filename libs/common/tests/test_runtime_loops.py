"""A service's loops run as one task group: the first to fail cancels the rest, fast; the pause
between rounds ends at shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.runtime import _sole, run_loops, sleep_until_stopped


async def test_a_failing_loop_cancels_the_others_at_once() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await stop.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")

    started = time.monotonic()
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(run_loops([forever(), failing()]), 5)
    assert time.monotonic() - started < 1
    assert cancelled.is_set()
    assert isinstance(_sole(caught.value), RuntimeError)


async def test_loops_that_stop_return_together() -> None:
    stop = asyncio.Event()
    rounds: list[int] = []

    async def loop(n: int) -> None:
        while not await sleep_until_stopped(stop, 0.01):
            rounds.append(n)

    async def stopper() -> None:
        await asyncio.sleep(0.05)
        stop.set()

    await asyncio.wait_for(run_loops([loop(1), loop(2), stopper()]), 5)
    assert {1, 2} <= set(rounds)


async def test_sleep_until_stopped_ends_early_at_shutdown() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, stop.set)
    started = time.monotonic()
    assert await sleep_until_stopped(stop, 30) is True
    assert time.monotonic() - started < 1
    assert await sleep_until_stopped(asyncio.Event(), 0.01) is False


def test_the_error_inside_a_task_group_is_what_the_service_reports() -> None:
    error = ConfigurationError("FLEETPULSE_X", "bad")
    assert _sole(ExceptionGroup("g", [ExceptionGroup("h", [error])])) is error
    both = ExceptionGroup("g", [error, RuntimeError()])
    assert _sole(both) is both
    assert _sole(None) is None
