"""The production database branch, for real: TimescaleDB 2.23 (PGlite) via ``timescale_url``.

One server for the module, migrated once by the ``fleetpulse-migrate`` command; each test keeps
to its own tenant. The server takes one client at a time, so every test holds one connection or a
pool of size 1 and closes it before the next part connects.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetpulse.common.db import create_pool
from fleetpulse.common.db.migrate import load_migrations
from fleetpulse.common.db.pool import connect
from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import Accepted, Record
from fleetpulse.ingest.store import PostgresTelemetryStore
from fleetpulse.provision_api.queries import Queries

pytestmark = pytest.mark.slow

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


async def _run_migrate(url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from fleetpulse.common.db.migrate import main; main()",
        "--database-url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("fleetpulse-migrate did not finish on TimescaleDB") from None
    return proc.returncode or 0, out.decode()


@pytest.fixture(scope="module")
async def migrated(timescale_url: str) -> tuple[str, list[str]]:
    """The DSN after two ``fleetpulse-migrate`` runs, and each run's output."""
    first = await _run_migrate(timescale_url)
    second = await _run_migrate(timescale_url)
    assert first[0] == 0 and second[0] == 0, (first, second)
    return timescale_url, [first[1], second[1]]


@pytest.fixture
async def pool(migrated: tuple[str, list[str]]) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(migrated[0], min_size=1, max_size=1)
    yield pool
    await pool.close()


def _tenant() -> str:
    return f"ts-{uuid.uuid4().hex[:10]}"


def _us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _batch(rows: list[tuple[str, str, datetime, float]]) -> Batch:
    """One accepted message per (tenant, device, time, temp) reading."""
    batch = Batch(QuarantineThrottle(50), forward=False)
    received = _us(datetime.now(UTC))
    for tenant, device, at, temp in rows:
        record = Record("reading", tenant, device, _us(at), None, {"temp": temp})
        batch.add(Envelope(None, "t", b"", received), Accepted([record]))
    return batch


async def test_migrate_applies_the_timescale_variants(migrated: tuple[str, list[str]]) -> None:
    url, (first, second) = migrated
    names = [m.name for m in load_migrations("timescale")]
    assert f"{len(names)} migration(s) applied: " in first
    assert "applying migration 0002_telemetry (timescale)" in first
    assert second.strip().splitlines()[-1] == "fleetpulse-migrate: 0 migration(s) applied"
    conn = await connect(url)
    try:
        variants = {r["variant"] for r in await conn.fetch("SELECT variant FROM schema_migrations")}
        assert variants == {"timescale"}
        assert await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'telemetry'"
        )
        jobs = {
            r["proc_name"]
            for r in await conn.fetch("SELECT proc_name FROM timescaledb_information.jobs")
        }
        assert {
            "policy_compression",
            "policy_retention",
            "policy_refresh_continuous_aggregate",
        } <= jobs
    finally:
        await conn.close()


async def test_ingest_store_writes_a_batch_once(pool: asyncpg.Pool) -> None:
    tenant, now = _tenant(), datetime.now(UTC).replace(microsecond=0)
    rows = [(tenant, f"d{i % 3}", now - timedelta(seconds=i), float(i)) for i in range(30)]
    store = PostgresTelemetryStore(pool)
    assert (await store.write(_batch(rows))).duplicates == 0
    assert (await store.write(_batch(rows))).duplicates == 30  # redelivered: all duplicates
    assert await pool.fetchval("SELECT count(*) FROM telemetry WHERE tenant_id = $1", tenant) == 30
    assert (
        await pool.fetchval("SELECT count(*) FROM device_state WHERE tenant_id = $1", tenant) == 3
    )


async def test_api_bucketed_query_uses_time_bucket(pool: asyncpg.Pool) -> None:
    tenant = _tenant()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
    rows = [(tenant, "d1", start + timedelta(minutes=10 * i), float(i)) for i in range(18)]
    await PostgresTelemetryStore(pool).write(_batch(rows))
    buckets = await Queries(pool, timescale=True).buckets(
        tenant, "d1", "temp", start, start + 3 * HOUR, HOUR
    )
    assert [(b["bucket"], b["count"], b["min"], b["max"]) for b in buckets] == [
        (start, 6, 0.0, 5.0),
        (start + HOUR, 6, 6.0, 11.0),
        (start + 2 * HOUR, 6, 12.0, 17.0),
    ]
    assert [b["avg"] for b in buckets] == [2.5, 8.5, 14.5]


async def test_retention_drops_old_chunks_only(pool: asyncpg.Pool) -> None:
    tenant, now = _tenant(), datetime.now(UTC)
    await pool.execute(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES "
        "($1, $3, 'd1', '{}'), ($2, $3, 'd1', '{}')",
        now - 100 * DAY,
        now - 2 * DAY,
        tenant,
    )
    dropped = await pool.fetchval("SELECT fleetpulse_drop_telemetry_partitions(90)")
    assert dropped >= 1
    times = await pool.fetch("SELECT time FROM telemetry WHERE tenant_id = $1", tenant)
    assert [r["time"] for r in times] == [now - 2 * DAY]  # positive control: the young row stays


async def test_hourly_rollup_counts_readings(pool: asyncpg.Pool) -> None:
    tenant = _tenant()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 5 * HOUR
    rows = [(tenant, "d1", hour + timedelta(minutes=i), 1.0) for i in range(7)]
    await PostgresTelemetryStore(pool).write(_batch(rows))
    async with pool.acquire() as conn:  # not in a transaction: Timescale refuses that
        await conn.execute(
            "CALL refresh_continuous_aggregate('telemetry_hourly', $1::timestamptz, $2::timestamptz)",
            hour - HOUR,
            hour + 2 * HOUR,
        )
    rollup = await pool.fetch(
        "SELECT bucket, readings FROM telemetry_hourly WHERE tenant_id = $1", tenant
    )
    assert [(r["bucket"], r["readings"]) for r in rollup] == [(hour, 7)]


async def test_redelivery_into_a_compressed_chunk_loses_nothing(pool: asyncpg.Pool) -> None:
    """A batch older than the compression horizon, redelivered mixed with new rows, after the
    chunk was compressed: every row ends stored or counted as a duplicate."""
    tenant = _tenant()
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - 10 * DAY
    first = [(tenant, f"d{i % 4}", day + timedelta(minutes=i), float(i)) for i in range(200)]
    store = PostgresTelemetryStore(pool)
    assert (await store.write(_batch(first))).duplicates == 0
    async with pool.acquire() as conn:
        compressed = await conn.fetch(
            "SELECT compress_chunk(c, if_not_compressed => true) "
            "FROM show_chunks('telemetry', older_than => interval '7 days') c"
        )
        assert compressed
        assert await conn.fetchval(
            "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'telemetry' AND range_start <= $1 AND range_end > $1",
            day,
        )
    # the same readings again, interleaved with new ones in the same chunk (and a new device)
    new = [(tenant, f"d{i % 5}", day + timedelta(minutes=i, seconds=30), -1.0) for i in range(200)]
    mixed = [row for pair in zip(first, new, strict=True) for row in pair]
    duplicates = (await store.write(_batch(mixed))).duplicates
    stored = await pool.fetchval("SELECT count(*) FROM telemetry WHERE tenant_id = $1", tenant)
    assert (stored, duplicates) == (400, 200)
    values = await pool.fetchval(
        "SELECT count(*) FROM telemetry WHERE tenant_id = $1 AND metrics ->> 'temp' = '-1.0'",
        tenant,
    )
    assert values == 200  # the new rows are the ones stored, the old ones kept their values


async def _run_job(pool: asyncpg.Pool, proc: str, relation: str) -> None:
    """Run a Timescale policy job now, as its background worker would."""
    async with pool.acquire() as conn:
        job = await conn.fetchval(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = $1 AND hypertable_name = $2",
            proc,
            relation,
        )
        assert job is not None, (proc, relation)
        await conn.execute(f"CALL run_job({int(job)})")


async def test_retention_job_drops_chunks_past_90_days(pool: asyncpg.Pool) -> None:
    tenant, now = _tenant(), datetime.now(UTC)
    await pool.execute(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES "
        "($1, $3, 'd1', '{}'), ($2, $3, 'd1', '{}')",
        now - 95 * DAY,
        now - 80 * DAY,
        tenant,
    )
    await _run_job(pool, "policy_retention", "telemetry")
    times = await pool.fetch("SELECT time FROM telemetry WHERE tenant_id = $1", tenant)
    assert [r["time"] for r in times] == [now - 80 * DAY]


async def test_metric_rollup_is_a_continuous_aggregate_the_api_reads(pool: asyncpg.Pool) -> None:
    tenant = _tenant()
    h0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 4 * HOUR
    rows = [(tenant, "d1", h0 + timedelta(minutes=10 * i), 1e308) for i in range(12)]
    await PostgresTelemetryStore(pool).write(_batch(rows))
    queries = Queries(pool, timescale=True)
    window = (h0, h0 + 3 * HOUR)
    realtime = await queries.buckets(tenant, "d1", "temp", *window, HOUR)
    assert [(b["bucket"], b["avg"], b["count"]) for b in realtime] == [
        (h0, 1e308, 6),
        (h0 + HOUR, 1e308, 6),
    ]
    assert await PostgresTelemetryStore(pool).housekeeping(90) == {}  # Timescale's jobs do it
    await _run_job(pool, "policy_refresh_continuous_aggregate", "telemetry_metrics_hourly")
    # which source answers: raw rows of the first hour go; the materialized hour still answers
    await pool.execute(
        "DELETE FROM telemetry WHERE tenant_id = $1 AND time < $2", tenant, h0 + HOUR
    )
    hourly = await queries.buckets(tenant, "d1", "temp", *window, HOUR)
    assert hourly == realtime
    half_hourly = await queries.buckets(tenant, "d1", "temp", *window, timedelta(minutes=30))
    assert half_hourly[0]["bucket"] == h0 + HOUR  # control: raw only, the first hour is gone
