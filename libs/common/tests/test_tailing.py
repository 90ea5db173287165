"""A reader following ``position`` while writers append never skips a late-committing event."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore

WRITERS = 8
EVENTS_PER_WRITER = 60


async def _writer(pool: asyncpg.Pool, store: PostgresEventStore, w: int) -> None:
    for i in range(EVENTS_PER_WRITER):
        async with pool.acquire() as conn, conn.transaction():
            await store.append(
                f"w-{w}", [NewEvent("Wrote", {"w": w, "i": i})], tenant_id="t", conn=conn
            )
            # hold the transaction open for a moment so commits interleave with the reader
            await asyncio.sleep(random.random() * 0.003)


async def test_tailing_reader_sees_every_event_once_in_order(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    seen: list[int] = []
    positions: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        position = 0
        while True:
            writers_finished = done.is_set()  # decided before the read, so the last read sees all
            events = await event_store.read_all(after_position=position, limit=37)
            for event in events:
                seen.append(event.data["w"] * 1000 + event.data["i"])
                positions.append(event.position)
            if events:
                position = events[-1].position
            elif writers_finished:
                return
            else:
                await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(_writer(db_pool, event_store, w) for w in range(WRITERS)))
    done.set()
    await reading

    assert len(seen) == WRITERS * EVENTS_PER_WRITER
    assert len(set(seen)) == len(seen), "an event was read twice"
    assert positions == sorted(positions), "events were read out of order"
    for w in range(WRITERS):
        own = [s % 1000 for s in seen if s // 1000 == w]
        assert own == list(range(EVENTS_PER_WRITER)), f"writer {w}'s events skipped or reordered"
