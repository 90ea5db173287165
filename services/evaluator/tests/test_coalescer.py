"""Coalescer: several messages' records in one batch; each submitter learns its batch's fate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from fleetpulse.evaluator.coalescer import Coalescer
from fleetpulse.evaluator.domain import Record


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
    await asyncio.wait_for(asyncio.gather(coalescer.submit(records(10)), coalescer.submit(records(10))), 1)
    assert batches == [20]


async def test_a_failed_batch_fails_every_submitter() -> None:
    async def handle(batch: list[Record]) -> None:
        raise RuntimeError("database gone")

    coalescer = Coalescer(handle, max_records=100, linger_s=0.01)
    results = await asyncio.gather(coalescer.submit(records(1)), coalescer.submit(records(2)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await coalescer.submit(records(1))
