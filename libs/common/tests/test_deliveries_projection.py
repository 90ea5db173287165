"""The deliveries projection: inline application, once per (alert event, integration), replay."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from fleetpulse.common.eventstore import (
    NO_STREAM,
    NewEvent,
    PostgresEventStore,
    ProjectionRunner,
    RecordedEvent,
)
from fleetpulse.common.projections.deliveries import (
    DeliveriesProjection,
    DeliveryAlreadyScheduledError,
)

PROJECTION = DeliveriesProjection()


def scheduled(delivery_id: str, alert_event_id: uuid.UUID, integration_id: str = "i1") -> NewEvent:
    return NewEvent(
        "DeliveryScheduled",
        {
            "delivery_id": delivery_id,
            "alert_id": "a1",
            "alert_event_id": str(alert_event_id),
            "alert_event_type": "AlertOpened",
            "integration_id": integration_id,
            "route_id": "r1",
            "notification_type": "firing",
            "payload": {"type": "alert.opened"},
        },
    )


async def append_inline(
    store: PostgresEventStore, stream: str, events: list[NewEvent], expected: int
) -> list[RecordedEvent]:
    async with store.pool.acquire() as conn, conn.transaction():
        recorded = await store.append(
            stream, events, tenant_id="t1", expected_version=expected, conn=conn
        )
        for event in recorded:
            await PROJECTION.apply(conn, event)
        return recorded


async def rows(pool: asyncpg.Pool) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    deliveries = await pool.fetch(
        "SELECT tenant_id, delivery_id, alert_id, alert_event_id, integration_id, status, attempts,"
        " last_status_code, last_error, scheduled_at, completed_at, version, route_id,"
        " notification_type, next_attempt_at FROM deliveries ORDER BY delivery_id"
    )
    attempts = await pool.fetch("SELECT * FROM delivery_attempts ORDER BY delivery_id, attempt")
    return [dict(r) for r in deliveries], [dict(r) for r in attempts]


async def test_a_delivery_lifecycle_is_projected(event_store: PostgresEventStore) -> None:
    alert_event = uuid.uuid4()
    await append_inline(event_store, "delivery-t1-d1", [scheduled("d1", alert_event)], NO_STREAM)
    await append_inline(
        event_store,
        "delivery-t1-d1",
        [
            NewEvent(
                "DeliveryAttempted",
                {
                    "delivery_id": "d1",
                    "attempt": 1,
                    "status_code": 503,
                    "latency_ms": 12.5,
                    "error": "HTTP 503",
                    "next_attempt_at": "2030-01-01T00:00:05+00:00",
                },
            ),
            NewEvent(
                "DeliveryAttempted",
                {
                    "delivery_id": "d1",
                    "attempt": 2,
                    "status_code": 204,
                    "latency_ms": 3.0,
                    "error": None,
                    "next_attempt_at": None,
                },
            ),
            NewEvent("DeliverySucceeded", {"delivery_id": "d1", "attempt": 2}),
        ],
        1,
    )
    deliveries, attempts = await rows(event_store.pool)
    assert deliveries[0]["status"] == "succeeded"
    assert deliveries[0]["attempts"] == 2
    assert deliveries[0]["last_status_code"] == 204
    assert deliveries[0]["version"] == 4
    assert deliveries[0]["notification_type"] == "firing"
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 503), (2, 204)]


async def test_second_delivery_for_the_same_alert_event_and_integration_is_refused(
    event_store: PostgresEventStore,
) -> None:
    alert_event = uuid.uuid4()
    await append_inline(event_store, "delivery-t1-d1", [scheduled("d1", alert_event)], NO_STREAM)
    with pytest.raises(DeliveryAlreadyScheduledError):
        await append_inline(
            event_store, "delivery-t1-d2", [scheduled("d2", alert_event)], NO_STREAM
        )
    assert await event_store.stream_version("delivery-t1-d2") == 0
    await append_inline(
        event_store, "delivery-t1-d3", [scheduled("d3", alert_event, "i2")], NO_STREAM
    )


async def test_applying_twice_and_rebuilding_give_the_same_rows(
    event_store: PostgresEventStore,
) -> None:
    await append_inline(event_store, "delivery-t1-d1", [scheduled("d1", uuid.uuid4())], NO_STREAM)
    await append_inline(
        event_store,
        "delivery-t1-d1",
        [
            NewEvent(
                "DeliveryAttempted",
                {
                    "delivery_id": "d1",
                    "attempt": 1,
                    "status_code": None,
                    "latency_ms": 15000.0,
                    "error": "timeout",
                    "next_attempt_at": None,
                },
            ),
            NewEvent("DeliveryAbandoned", {"delivery_id": "d1", "attempts": 1, "reason": "gone"}),
        ],
        1,
    )
    before = await rows(event_store.pool)
    async with event_store.pool.acquire() as conn, conn.transaction():
        for event in await event_store.read_all(conn=conn):
            await PROJECTION.apply(conn, event)
    assert await rows(event_store.pool) == before
    await ProjectionRunner(event_store, PROJECTION).rebuild()
    assert await rows(event_store.pool) == before
    assert before[0][0]["status"] == "abandoned"


async def test_apply_batch_gives_the_rows_apply_gives(event_store: PostgresEventStore) -> None:
    for n in range(3):
        await append_inline(
            event_store, f"delivery-t1-d{n}", [scheduled(f"d{n}", uuid.uuid4())], NO_STREAM
        )
        await append_inline(
            event_store,
            f"delivery-t1-d{n}",
            [
                NewEvent(
                    "DeliveryAttempted",
                    {
                        "delivery_id": f"d{n}",
                        "attempt": 1,
                        "status_code": 200,
                        "latency_ms": 1.0,
                        "error": None,
                        "next_attempt_at": None,
                        "attempted_at": "2030-01-01T00:00:00+00:00",
                    },
                ),
                NewEvent(
                    "DeliverySucceeded",
                    {
                        "delivery_id": f"d{n}",
                        "attempt": 1,
                        "completed_at": "2030-01-01T00:00:01+00:00",
                    },
                ),
            ],
            1,
        )
    one_by_one = await rows(event_store.pool)
    async with event_store.pool.acquire() as conn, conn.transaction():
        await conn.execute("TRUNCATE deliveries, delivery_attempts")
        await PROJECTION.apply_batch(conn, await event_store.read_all(conn=conn))
    assert await rows(event_store.pool) == one_by_one
