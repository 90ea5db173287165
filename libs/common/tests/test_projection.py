"""Projection checkpoints commit with the rows; a rebuilt projection equals the live one."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from fleetpulse.common.eventstore import (
    NewEvent,
    PostgresEventStore,
    ProjectionRunner,
    RecordedEvent,
    read_checkpoint,
)


class CounterProjection:
    """Counts ``Bumped`` events per stream in a scratch table."""

    name = "test-counter"
    tables = ("test_counter",)

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent) -> None:
        if event.type != "Bumped":
            return
        await conn.execute(
            """
            INSERT INTO test_counter (stream_id, total, version) VALUES ($1, $2, $3)
            ON CONFLICT (stream_id) DO UPDATE
                SET total = test_counter.total + EXCLUDED.total, version = EXCLUDED.version
                WHERE test_counter.version < EXCLUDED.version
            """,
            event.stream_id,
            event.data["by"],
            event.version,
        )


async def _create_table(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "CREATE TABLE test_counter (stream_id text PRIMARY KEY, total int NOT NULL, version int NOT NULL)"
    )


async def _rows(pool: asyncpg.Pool) -> list[tuple[str, int, int]]:
    rows = await pool.fetch("SELECT stream_id, total, version FROM test_counter ORDER BY stream_id")
    return [tuple(r) for r in rows]


async def test_rebuilt_projection_equals_live(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await _create_table(db_pool)
    runner = ProjectionRunner(event_store, CounterProjection(), batch_size=7)
    for round_ in range(5):
        await asyncio.gather(
            *(
                event_store.append(
                    f"c-{s}",
                    [NewEvent("Bumped", {"by": s + round_}), NewEvent("Other", {})],
                    tenant_id="t",
                )
                for s in range(10)
            )
        )
        await runner.catch_up()  # live: applied incrementally, in small batches
    live = await _rows(db_pool)
    assert await read_checkpoint(db_pool, "test-counter") == await event_store.head_position()

    replayed = await runner.rebuild()

    assert replayed == 100
    assert await _rows(db_pool) == live
    assert sum(total for _, total, _ in live) == sum(s + r for s in range(10) for r in range(5))


async def test_applying_twice_changes_nothing(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await _create_table(db_pool)
    await event_store.append("c-x", [NewEvent("Bumped", {"by": 3})], tenant_id="t")
    projection = CounterProjection()
    runner = ProjectionRunner(event_store, projection)
    await runner.catch_up()
    (event,) = await event_store.read_stream("c-x")
    async with db_pool.acquire() as conn:
        await projection.apply(conn, event)
    assert await _rows(db_pool) == [("c-x", 3, 1)]


async def test_checkpoint_rolls_back_with_rows(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await _create_table(db_pool)
    await event_store.append(
        "c-y", [NewEvent("Bumped", {"by": 1}), NewEvent("Bumped", {"by": "bad"})], tenant_id="t"
    )
    runner = ProjectionRunner(event_store, CounterProjection())
    with contextlib.suppress(asyncpg.PostgresError, asyncpg.DataError):
        await runner.catch_up()
    assert await read_checkpoint(db_pool, "test-counter") == 0
    assert await _rows(db_pool) == []
