"""Bucketed telemetry reads whole rolled-up hours from telemetry_metrics_hourly and the rest
(window edges, the not yet rolled-up tail, widths that are not whole hours) from raw readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg

from fleetpulse.ingest.store import PostgresTelemetryStore
from fleetpulse.provision_api.queries import Queries, rollup_span

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def test_rollup_span_is_the_whole_hours_of_the_window() -> None:
    t = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert rollup_span(t, t + 5 * HOUR, HOUR) == (t, t + 5 * HOUR)
    assert rollup_span(t + 20 * MINUTE, t + 5 * HOUR + MINUTE, 2 * HOUR) == (t + HOUR, t + 5 * HOUR)
    assert rollup_span(t, t + 5 * HOUR, 30 * MINUTE) == (t, t)  # not whole hours: raw only
    assert rollup_span(t + MINUTE, t + 50 * MINUTE, HOUR) == (t + MINUTE, t + MINUTE)
    plus_half = datetime(2026, 1, 1, 15, 30, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=5, minutes=30))
    )
    assert rollup_span(plus_half, plus_half + 3 * HOUR, HOUR)[0] == datetime(
        2026, 1, 1, 16, tzinfo=UTC
    )


async def _buckets(pool: asyncpg.Pool, start: datetime, end: datetime, width: timedelta) -> list:
    rows = await Queries(pool).buckets("acme", "d1", "temp", start, end, width)
    return [(r["bucket"], r["min"], r["max"], r["avg"], r["count"]) for r in rows]


async def test_whole_hours_come_from_the_rollup_the_rest_from_raw(db_pool: asyncpg.Pool) -> None:
    current = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    h0 = current - (6 + current.hour % 2) * HOUR  # on a 2h bucket boundary
    rows = [(h0 + i * 10 * MINUTE, {"temp": float(i)}) for i in range(24)]  # h0 .. h0+4h
    rows += [(current + MINUTE, {"temp": 100.0})]  # the current hour
    await db_pool.executemany(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, 'acme', 'd1', $2)",
        rows,
    )
    window = (h0, current + HOUR)
    before = await _buckets(db_pool, *window, HOUR)
    assert await PostgresTelemetryStore(db_pool).housekeeping(keep_days=90)
    assert await _buckets(db_pool, *window, HOUR) == before  # same answer either way
    assert before[0] == (h0, 0.0, 5.0, 2.5, 6) and before[-1][1:] == (100.0, 100.0, 100.0, 1)

    # proof of which source answers: the raw rows of the first two hours go (as retention does)
    await db_pool.execute(
        "DELETE FROM telemetry_readings r USING device_keys k WHERE r.device_key = k.device_key"
        " AND k.tenant_id = 'acme' AND r.time < $1",
        h0 + 2 * HOUR,
    )
    hourly = await _buckets(db_pool, *window, HOUR)
    assert hourly == before  # whole hours: the rollup still has them
    two_hourly = await _buckets(db_pool, *window, 2 * HOUR)
    assert two_hourly[0] == (h0, 0.0, 11.0, 5.5, 12)
    half_hourly = await _buckets(db_pool, *window, 30 * MINUTE)
    assert half_hourly[0][0] == h0 + 2 * HOUR  # not whole hours: raw only (control)
    edge = await _buckets(db_pool, h0 + 30 * MINUTE, current + HOUR, HOUR)
    assert edge[0][0] == h0 + HOUR  # the partial first hour is raw, and its rows are gone
    assert edge[-1][1:] == (100.0, 100.0, 100.0, 1)  # the open hour is raw


async def test_large_values_average_without_overflow(db_pool: asyncpg.Pool) -> None:
    h0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
    await db_pool.executemany(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, 'acme', 'd1', $2)",
        [(h0 + i * MINUTE, {"temp": 1e308}) for i in range(3)],
    )
    raw = await _buckets(db_pool, h0, h0 + HOUR, HOUR)
    assert await PostgresTelemetryStore(db_pool).housekeeping(keep_days=90)
    rolled = await _buckets(db_pool, h0, h0 + HOUR, HOUR)
    assert raw == rolled == [(h0, 1e308, 1e308, 1e308, 3)]
