"""Telemetry housekeeping on plain PostgreSQL: ingest runs retention and the hourly rollups
(nothing else calls them), on one replica at a time."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import asyncpg

from fleetpulse.common.db import create_pool
from fleetpulse.ingest.store import HOUSEKEEPING_LOCK, PostgresTelemetryStore

from .conftest import ingest_settings, running_ingest, wait_until

HOUR = timedelta(hours=1)


def _hour(hours_ago: int) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - hours_ago * HOUR


async def _insert(pool: asyncpg.Pool, tenant: str, rows: list[tuple[datetime, dict]]) -> None:
    await pool.executemany(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, $2, 'd1', $3)",
        [(at, tenant, metrics) for at, metrics in rows],
    )


async def _rollup(pool: asyncpg.Pool, tenant: str) -> dict[tuple[datetime, str], tuple]:
    rows = await pool.fetch(
        "SELECT bucket, metric, min, max, sum, count FROM telemetry_metrics_hourly "
        "WHERE tenant_id = $1",
        tenant,
    )
    return {(r["bucket"], r["metric"]): (r["min"], r["max"], r["sum"], r["count"]) for r in rows}


async def test_housekeeping_rolls_up_complete_hours_and_late_readings(
    db_pool: asyncpg.Pool,
) -> None:
    tenant, store = "acme", PostgresTelemetryStore(db_pool)
    old, now = _hour(5), datetime.now(UTC)
    await _insert(
        db_pool,
        tenant,
        [
            (old + timedelta(minutes=1), {"temp": 1e308, "door": True}),
            (old + timedelta(minutes=2), {"temp": 1e308, "door": False}),
            (now - timedelta(seconds=5), {"temp": 5.0}),  # the current hour: not complete yet
        ],
    )
    assert await _rollup(db_pool, tenant) == {}  # control: nothing rolls up by itself
    done = await store.housekeeping(keep_days=90)
    assert done is not None and done["rolled_up_device_hours"] >= 1
    rollup = await _rollup(db_pool, tenant)
    assert rollup[(old, "temp")][:2] == (1e308, 1e308) and rollup[(old, "temp")][3] == 2
    assert float(rollup[(old, "temp")][2]) == 2e308  # numeric sum: no overflow
    assert rollup[(old, "door")] == (0.0, 1.0, 1, 2)
    assert all(bucket < _hour(0) for bucket, _ in rollup)  # the open hour stays raw
    readings = await db_pool.fetchval(
        "SELECT readings FROM telemetry_hourly WHERE tenant_id = $1 AND bucket = $2", tenant, old
    )
    assert readings == 2

    # a late reading for the rolled-up hour is folded in by the next run
    await _insert(db_pool, tenant, [(old + timedelta(minutes=3), {"temp": -1.0})])
    await store.housekeeping(keep_days=90)
    rollup = await _rollup(db_pool, tenant)
    assert rollup[(old, "temp")][0] == -1.0 and rollup[(old, "temp")][3] == 3
    assert math.isclose(float(rollup[(old, "temp")][2]), 2e308)


async def test_housekeeping_drops_partitions_past_keep_days(db_pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    await _insert(db_pool, "acme", [(now - timedelta(days=33), {"t": 1}), (now - HOUR, {"t": 2})])
    done = await PostgresTelemetryStore(db_pool).housekeeping(keep_days=30)
    assert done is not None and done["dropped_partitions"] >= 3
    times = await db_pool.fetch("SELECT time FROM telemetry WHERE tenant_id = 'acme'")
    assert [r["time"] for r in times] == [now - HOUR]  # the young row stays


async def test_one_replica_at_a_time_runs_housekeeping(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        store = PostgresTelemetryStore(pool)
        async with pool.acquire() as other, other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1)", HOUSEKEEPING_LOCK)
            assert await store.housekeeping(keep_days=90) is None
        assert await store.housekeeping(keep_days=90) is not None  # positive control
    finally:
        await pool.close()


async def test_running_ingest_schedules_housekeeping(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str
) -> None:
    state = "SELECT complete_before FROM telemetry_rollup_state"
    assert str(await db_pool.fetchval(f"SELECT ({state})::text")) == "-infinity"
    async with running_ingest(ingest_settings(database_url, mqtt_url)):

        async def rolled_up() -> bool:
            return str(await db_pool.fetchval(f"SELECT ({state})::text")) != "-infinity"

        await wait_until(rolled_up, timeout=15)
