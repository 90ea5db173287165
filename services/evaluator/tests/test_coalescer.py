"""Coalescer: several messages' records in one batch; each submitter learns its batch's fate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from fleetpulse.common.rules.domain import Record
from fleetpulse.evaluator.coalescer import Coalescer


def records(n: int) -> list[Record]:
    return [Record("t", f"d{i}", datetime.now(UTC)) for i in range(n)]


async def test_submissions_within_the_linger_share_one_batch() -> None:
    batches: list[int] = []

    async def handle(batch: list[Record]) -> None:
        batches.append(len(batch))

    coalescer = Coalescer(handle, max_records=100, linger_s=0.05)
    await asyncio.gather(*(coalescer.submit(records(10)) for _ in range(3)))
    assert batches == [30]


async def test_a_full_batch_starts_at_once() -> None:
    batches: list[int] = []

    async def handle(batch: list[Record]) -> None:
        batches.append(len(batch))

    coalescer = Coalescer(handle, max_records=20, linger_s=10)
    await asyncio.wait_for(
        asyncio.gather(coalescer.submit(records(10)), coalescer.submit(records(10))), 1
    )
    assert batches == [20]


async def test_a_failed_batch_fails_every_submitter() -> None:
    async def handle(batch: list[Record]) -> None:
        raise RuntimeError("database gone")

    coalescer = Coalescer(handle, max_records=100, linger_s=0.01)
    results = await asyncio.gather(
        coalescer.submit(records(1)), coalescer.submit(records(2)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await coalescer.submit(records(1))


async def test_batches_due_while_the_slots_are_busy_wait_and_grow() -> None:
    batches: list[int] = []
    running = 0
    release = asyncio.Event()

    async def handle(batch: list[Record]) -> None:
        nonlocal running
        running += 1
        assert running == 1
        batches.append(len(batch))
        await release.wait()
        running -= 1

    coalescer = Coalescer(handle, max_records=25, linger_s=0, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(records(10)))
    while not batches:
        await asyncio.sleep(0)
    rest = [asyncio.ensure_future(coalescer.submit(records(10))) for _ in range(5)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert batches == [10]  # the slot is busy: nothing else started
    release.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 1)
    assert batches == [10, 20, 20, 10]  # whole submissions, never above max_records
