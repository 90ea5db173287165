"""Alerts projection: status follows the alert stream, idempotent, one open alert per fingerprint."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from fleetpulse.common.eventstore import NO_STREAM, NewEvent, PostgresEventStore, ProjectionRunner
from fleetpulse.common.projections.alerts import AlertAlreadyOpenError, AlertsProjection

T = "acme"
FP = f"{T}:r1:d1"  # tenant:rule:device, as Rule.fingerprint builds it


def _opened(alert_id: str) -> NewEvent:
    return NewEvent(
        "AlertOpened",
        {
            "alert_id": alert_id,
            "fingerprint": FP,
            "rule_id": "r1",
            "rule_name": "hot",
            "device_id": "d1",
            "severity": "major",
            "opened_at": "2026-01-01T00:00:00+00:00",
            "metric": "temp_c",
            "value": 41.5,
            "threshold": 30,
            "reason": "temp_c gt 30",
        },
    )


async def _append_applied(
    store: PostgresEventStore, alert_id: str, *events: NewEvent, expected: int = NO_STREAM
) -> None:
    projection = AlertsProjection()
    async with store.pool.acquire() as conn, conn.transaction():
        recorded = await store.append(
            f"alert-{T}-{alert_id}", list(events), tenant_id=T, expected_version=expected, conn=conn
        )
        for event in recorded:
            await projection.apply(conn, event)


async def _row(pool: asyncpg.Pool, alert_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM alerts WHERE alert_id = $1", alert_id)
    assert row is not None
    return dict(row)


async def test_lifecycle_follows_the_stream(event_store: PostgresEventStore) -> None:
    await _append_applied(event_store, "a1", _opened("a1"))
    assert (await _row(event_store.pool, "a1"))["status"] == "open"
    await _append_applied(
        event_store,
        "a1",
        NewEvent(
            "AlertAcknowledged",
            {"alert_id": "a1", "acknowledged_at": "2026-01-01T00:01:00+00:00", "by": "ops"},
        ),
        NewEvent(
            "AlertSilenced", {"alert_id": "a1", "until": "2026-01-01T02:00:00+00:00", "by": "ops"}
        ),
        expected=1,
    )
    row = await _row(event_store.pool, "a1")
    assert (row["status"], row["version"], row["details"]["acknowledged_by"]) == (
        "acknowledged",
        3,
        "ops",
    )
    assert row["silenced_until"] is not None
    await _append_applied(
        event_store,
        "a1",
        NewEvent(
            "AlertResolved",
            {"alert_id": "a1", "resolved_at": "2026-01-01T00:05:00+00:00", "value": 20},
        ),
        expected=3,
    )
    row = await _row(event_store.pool, "a1")
    assert (row["status"], row["details"]["resolved_value"], row["details"]["value"]) == (
        "resolved",
        20,
        41.5,
    )
    await _append_applied(
        event_store,
        "a1",
        NewEvent(
            "AlertClosed", {"alert_id": "a1", "closed_at": "2026-01-01T00:06:00+00:00", "by": "ops"}
        ),
        expected=4,
    )
    assert (await _row(event_store.pool, "a1"))["status"] == "closed"


async def test_second_open_alert_for_a_fingerprint_is_refused(
    event_store: PostgresEventStore,
) -> None:
    await _append_applied(event_store, "a1", _opened("a1"))
    with pytest.raises(AlertAlreadyOpenError):
        await _append_applied(event_store, "a2", _opened("a2"))
    assert await event_store.stream_version(f"alert-{T}-a2") == 0  # rolled back with the append


async def test_breach_after_close_may_open_a_new_alert(event_store: PostgresEventStore) -> None:
    await _append_applied(
        event_store,
        "a1",
        _opened("a1"),
        NewEvent(
            "AlertClosed", {"alert_id": "a1", "closed_at": "2026-01-01T00:06:00+00:00", "by": "ops"}
        ),
    )
    await _append_applied(event_store, "a2", _opened("a2"))
    statuses = await event_store.pool.fetch("SELECT alert_id, status FROM alerts ORDER BY alert_id")
    assert [tuple(r) for r in statuses] == [("a1", "closed"), ("a2", "open")]


async def test_late_resolved_after_close_keeps_closed(event_store: PostgresEventStore) -> None:
    await _append_applied(
        event_store,
        "a1",
        _opened("a1"),
        NewEvent(
            "AlertClosed", {"alert_id": "a1", "closed_at": "2026-01-01T00:06:00+00:00", "by": "ops"}
        ),
        NewEvent("AlertResolved", {"alert_id": "a1", "resolved_at": "2026-01-01T00:07:00+00:00"}),
    )
    row = await _row(event_store.pool, "a1")
    assert (row["status"], row["version"]) == ("closed", 3)


async def test_applying_twice_and_rebuilding_yield_the_same_rows(
    event_store: PostgresEventStore,
) -> None:
    await _append_applied(
        event_store,
        "a1",
        _opened("a1"),
        NewEvent(
            "AlertAcknowledged",
            {"alert_id": "a1", "acknowledged_at": "2026-01-01T00:01:00+00:00", "by": "ops"},
        ),
        NewEvent("AlertResolved", {"alert_id": "a1", "resolved_at": "2026-01-01T00:05:00+00:00"}),
    )
    await _append_applied(event_store, "a2", _opened("a2"))
    before = [
        dict(r) for r in await event_store.pool.fetch("SELECT * FROM alerts ORDER BY alert_id")
    ]
    runner = ProjectionRunner(event_store, AlertsProjection())
    assert await runner.catch_up() == 4  # the inline apply already did it: no change
    assert [
        dict(r) for r in await event_store.pool.fetch("SELECT * FROM alerts ORDER BY alert_id")
    ] == before
    await runner.rebuild()
    assert [
        dict(r) for r in await event_store.pool.fetch("SELECT * FROM alerts ORDER BY alert_id")
    ] == before
