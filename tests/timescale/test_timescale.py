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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetpulse.common.db import create_pool
from fleetpulse.common.db.migrate import (
    _apply_missing,
    _ensure_ledger,
    detect_variant,
    load_migrations,
)
from fleetpulse.common.db.pool import connect
from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import Accepted, Record
from fleetpulse.ingest.store import PostgresTelemetryStore
from fleetpulse.provision_api.queries import Queries
from fleetpulse.testing.timescale import start_timescale

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
            "WHERE hypertable_name = 'telemetry_readings'"
        )
        caggs = {
            r["view_name"]
            for r in await conn.fetch(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates "
                "WHERE NOT materialized_only"
            )
        }
        assert caggs == {"telemetry_hourly_by_key", "telemetry_metrics_hourly_by_key"}
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
            "CALL refresh_continuous_aggregate('telemetry_hourly_by_key', $1::timestamptz, "
            "$2::timestamptz)",
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
            "FROM show_chunks('telemetry_readings', older_than => interval '7 days') c"
        )
        assert compressed
        assert await conn.fetchval(
            "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'telemetry_readings' AND range_start <= $1 AND range_end > $1",
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
    await _run_job(pool, "policy_retention", "telemetry_readings")
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
    await _run_job(pool, "policy_refresh_continuous_aggregate", "telemetry_metrics_hourly_by_key")
    # which source answers: raw rows of the first hour go; the materialized hour still answers
    await pool.execute(
        "DELETE FROM telemetry_readings r USING device_keys k "
        "WHERE k.device_key = r.device_key AND k.tenant_id = $1 AND r.time < $2",
        tenant,
        h0 + HOUR,
    )
    hourly = await queries.buckets(tenant, "d1", "temp", *window, HOUR)
    assert hourly == realtime
    half_hourly = await queries.buckets(tenant, "d1", "temp", *window, timedelta(minutes=30))
    assert half_hourly[0]["bucket"] == h0 + HOUR  # control: raw only, the first hour is gone


# ---------------------------------------------------------------- 0700: the keyed layout
LAYOUT = 700
Rows = list[tuple[object, ...]]


@dataclass(frozen=True)
class OldLayout:
    """A database just migrated to 0700, and what it read before: one tenant's rows through the
    old `telemetry` table and its old continuous aggregates."""

    conn: asyncpg.Connection
    tenant: str
    now: datetime
    view: Rows
    hourly: Rows
    metrics: Rows


def _typed(metrics: dict[str, object]) -> dict[str, tuple[str, object]]:
    """Metrics with each value's JSON type: True == 1.0 in Python, so compare types too."""
    return {k: ("bool" if isinstance(v, bool) else "number", v) for k, v in metrics.items()}


async def _read_view(conn: asyncpg.Connection, tenant: str) -> Rows:
    rows = await conn.fetch(
        "SELECT time, tenant_id, device_id, seq, metrics, ingest_xid FROM telemetry "
        "WHERE tenant_id = $1 ORDER BY device_id, time",
        tenant,
    )
    return [(*r[:4], _typed(r["metrics"]), r["ingest_xid"]) for r in rows]


async def _rollups(conn: asyncpg.Connection, tenant: str) -> tuple[Rows, Rows]:
    hourly = await conn.fetch(
        "SELECT bucket, tenant_id, device_id, readings FROM telemetry_hourly "
        "WHERE tenant_id = $1 ORDER BY device_id, bucket",
        tenant,
    )
    metrics = await conn.fetch(
        "SELECT tenant_id, device_id, metric, bucket, min, max, sum, count "
        "FROM telemetry_metrics_hourly WHERE tenant_id = $1 ORDER BY device_id, metric, bucket",
        tenant,
    )
    return [tuple(r) for r in hourly], [tuple(r) for r in metrics]


async def _refresh(conn: asyncpg.Connection, *caggs: str) -> None:
    for cagg in caggs:  # outside a transaction: Timescale refuses it inside one
        await conn.execute(f"CALL refresh_continuous_aggregate('{cagg}', NULL, NULL)")


@pytest.fixture(scope="module")
async def before_layout() -> AsyncIterator[OldLayout]:
    """Its own harness server, migrated up to (not including) 0700, with old-layout rows: numbers,
    booleans, a name seen as both, a string (not carried over), rows in a compressed chunk, and
    the old continuous aggregates refreshed over all of them."""
    server = start_timescale()
    conn = await connect(server.url)
    try:
        await _ensure_ledger(conn)
        variant = await detect_variant(conn)
        assert variant == "timescale"
        older = [m for m in load_migrations(variant) if m.version < LAYOUT]
        await _apply_missing(conn, older, variant)
        tenant = _tenant()
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        old_day = now - 10 * DAY  # past the compression horizon
        rows: list[tuple[datetime, str, int | None, str]] = [
            (now - 3 * HOUR, "d1", 1, '{"temp": 21.5, "door_open": true, "rpm": 1200}'),
            (now - 3 * HOUR + timedelta(minutes=5), "d1", 2, '{"temp": 22.5, "door_open": false}'),
            (now - 2 * HOUR, "d1", None, '{"temp": -3.0, "door_open": 1}'),  # same name, number
            (now - 2 * HOUR, "d2", 7, '{"temp": 1e300, "note": "left open"}'),  # string dropped
            (now - 2 * HOUR + timedelta(seconds=1), "d2", 8, "{}"),
            (now - 40 * DAY, "d2", 40, '{"temp": 40.0}'),  # older than the refresh windows
        ] + [
            (old_day + timedelta(minutes=i), f"d{i % 2 + 1}", i, f'{{"temp": {i}.25}}')
            for i in range(6)
        ]
        await conn.executemany(
            "INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics) "
            "VALUES ($1, $5, $2, $3, $4::text::jsonb)",
            [(*r, tenant) for r in rows],
        )
        await conn.execute(
            "INSERT INTO devices (tenant_id, device_id, registered_at, updated_at, version) "
            "VALUES ($1, 'registered-only', now(), now(), 1)",
            tenant,
        )
        compressed = await conn.fetch(
            "SELECT compress_chunk(c) FROM show_chunks('telemetry', older_than => interval '7 days') c"
        )
        assert len(compressed) == 2
        await _refresh(conn, "telemetry_hourly", "telemetry_metrics_hourly")
        view = await _read_view(conn, tenant)
        hourly, metrics = await _rollups(conn, tenant)
        applied = await _apply_missing(conn, load_migrations(variant), variant)
        assert [m.version for m in applied] == [LAYOUT]
        yield OldLayout(conn, tenant, now, view, hourly, metrics)
    finally:
        await conn.close()
        server.stop()


async def test_layout_migration_keeps_every_reading(
    before_layout: OldLayout,
) -> None:
    conn, tenant, old = before_layout.conn, before_layout.tenant, before_layout.view
    assert len(old) == 12
    assert all(r[5] is not None for r in old)  # rows written after 0600 carry their ingest xid
    expected = [  # the same, but for the string metric: only numbers and booleans move
        (*r[:4], {k: v for k, v in r[4].items() if k != "note"}, r[5])  # type: ignore[attr-defined]
        for r in old
    ]
    assert await _read_view(conn, tenant) == expected
    d1 = await conn.fetchval(
        "SELECT metrics FROM telemetry WHERE tenant_id = $1 AND device_id = 'd1' AND seq = 1",
        tenant,
    )
    assert _typed(d1) == {
        "temp": ("number", 21.5),
        "door_open": ("bool", True),
        "rpm": ("number", 1200.0),
    }
    assert isinstance(d1["rpm"], float)  # read back as ingest wrote numbers: 1200.0, not 1200
    keys = await conn.fetch(
        "SELECT device_id FROM device_keys WHERE tenant_id = $1 ORDER BY device_id", tenant
    )
    assert [k["device_id"] for k in keys] == ["d1", "d2", "registered-only"]
    names = await conn.fetch("SELECT name, is_bool FROM metric_names ORDER BY name, is_bool")
    assert [tuple(n) for n in names] == [
        ("door_open", False),
        ("door_open", True),
        ("rpm", False),
        ("temp", False),
    ]
    # the old table, its caggs and jobs are gone; the new ones are in place
    relkinds = {
        r["relname"]: r["relkind"]
        for r in await conn.fetch(
            "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY($1::text[])",
            ["telemetry", "telemetry_hourly", "telemetry_metrics_hourly", "telemetry_readings"],
        )
    }
    assert relkinds == {
        "telemetry": "v",
        "telemetry_hourly": "v",
        "telemetry_metrics_hourly": "v",
        "telemetry_readings": "r",
    }
    jobs = await conn.fetch(
        "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs "
        "WHERE hypertable_name IS NOT NULL ORDER BY 1, 2"
    )
    assert [tuple(j) for j in jobs] == [
        ("policy_compression", "telemetry_readings"),
        ("policy_refresh_continuous_aggregate", "telemetry_hourly_by_key"),
        ("policy_refresh_continuous_aggregate", "telemetry_metrics_hourly_by_key"),
        ("policy_retention", "telemetry_readings"),
    ]
    assert await conn.fetchval(
        "SELECT count(*) FROM timescaledb_information.jobs "
        "WHERE proc_name = 'fleetpulse_backfill_telemetry_rollups'"
    )
    # the copied chunks past 7 days are compressed again, the recent ones (one, or two when the
    # recent rows straddle midnight) are not
    chunks = await conn.fetch(
        "SELECT range_start, range_end, is_compressed FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'telemetry_readings' ORDER BY range_start"
    )
    horizon = before_layout.now - 7 * DAY
    assert [c["is_compressed"] for c in chunks if c["range_end"] <= horizon] == [True, True]
    recent = [c["is_compressed"] for c in chunks if c["range_end"] > horizon]
    assert recent and not any(recent), chunks


async def test_layout_migration_rollup_views_answer_as_before(
    before_layout: OldLayout,
) -> None:
    conn, tenant = before_layout.conn, before_layout.tenant
    hourly, metrics = before_layout.hourly, before_layout.metrics
    assert len(hourly) == 6 and len(metrics) == 9  # positive control: the old caggs had rows
    door = [m for m in metrics if m[2] == "door_open"]
    assert [(m[4], m[5], m[7]) for m in door] == [(0.0, 1.0, 2), (1.0, 1.0, 1)]
    assert await _rollups(conn, tenant) == (hourly, metrics)  # real time: nothing materialized
    # the scheduler's runs, policies first: the 32-day windows leave the 40-day-old hour out,
    # and real time no longer covers it; the one-off backfill job materializes it
    for cagg in ("telemetry_hourly_by_key", "telemetry_metrics_hourly_by_key"):
        job = await conn.fetchval(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = $1",
            cagg,
        )
        await conn.execute(f"CALL run_job({int(job)})")
    forty = before_layout.now - 40 * DAY
    recent = [h for h in hourly if h[0] != forty], [m for m in metrics if m[3] != forty]
    assert (len(recent[0]), len(recent[1])) == (5, 8)
    assert await _rollups(conn, tenant) == recent
    backfill = await conn.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs "
        "WHERE proc_name = 'fleetpulse_backfill_telemetry_rollups'"
    )
    await conn.execute(f"CALL run_job({int(backfill)})")
    assert await _rollups(conn, tenant) == (hourly, metrics)  # materialized: the same
    assert not await conn.fetchval(  # the job deleted itself
        "SELECT count(*) FROM timescaledb_information.jobs WHERE job_id = $1", backfill
    )


async def test_layout_migration_view_writes_new_rows(
    before_layout: OldLayout,
) -> None:
    conn, tenant, now = before_layout.conn, before_layout.tenant, before_layout.now
    inserted = await conn.execute(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) "
        "VALUES ($1, $2, 'd1', '{\"temp\": 5}'), ($3, $2, 'd1', '{\"temp\": 6}')",
        now - 3 * HOUR,  # taken by a copied row: first stored wins
        tenant,
        now - HOUR,
    )
    assert inserted == "INSERT 0 1"
    rows = await conn.fetch(
        "SELECT time, metrics FROM telemetry WHERE tenant_id = $1 AND device_id = 'd1' "
        "AND time IN ($2, $3) ORDER BY time",
        tenant,
        now - 3 * HOUR,
        now - HOUR,
    )
    assert [r["metrics"]["temp"] for r in rows] == [21.5, 6.0]
    # a device registered after the migration gets its key at registration
    await conn.execute(
        "INSERT INTO devices (tenant_id, device_id, registered_at, updated_at, version) "
        "VALUES ($1, 'new', now(), now(), 1)",
        tenant,
    )
    keys = await conn.fetch(
        "SELECT device_id FROM device_keys WHERE tenant_id = $1 ORDER BY device_id", tenant
    )
    assert [k["device_id"] for k in keys] == ["d1", "d2", "new", "registered-only"]


async def test_binary_copy_of_a_duplicate_key_raises_unique_violation(pool: asyncpg.Pool) -> None:
    """Ingest's fast path: binary COPY into telemetry_readings must refuse a stored key (it then
    retries through staging), also when that key sits in a compressed chunk."""
    tenant, now = _tenant(), datetime.now(UTC).replace(microsecond=0)
    old = now - 10 * DAY
    columns = ["time", "seq", "device_key", "metric_ids", "metric_values"]
    async with pool.acquire() as conn:
        key = await conn.fetchval(
            "SELECT device_key FROM fleetpulse_device_keys($1, $2)", [tenant], ["d1"]
        )
        ids = {
            (r["name"], r["is_bool"]): r["metric_id"]
            for r in await conn.fetch(
                "SELECT * FROM fleetpulse_metric_ids($1, $2)", ["temp", "on"], [False, True]
            )
        }
        metric_ids, values = [ids[("temp", False)], ids[("on", True)]], [21.5, 1.0]

        def records(*times: datetime) -> list[tuple[object, ...]]:
            return [(t, i, key, metric_ids, values) for i, t in enumerate(times)]

        await conn.copy_records_to_table(  # asyncpg sends records as binary COPY
            "telemetry_readings", records=records(now, old), columns=columns
        )
        await conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) "
            "FROM show_chunks('telemetry_readings', older_than => interval '7 days') c"
        )
        for stored in (now, old):  # an uncompressed and a compressed chunk
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "telemetry_readings",
                        records=records(stored + timedelta(seconds=1), stored),
                        columns=columns,
                    )
        # positive control: fresh keys in the same chunks are taken
        await conn.copy_records_to_table(
            "telemetry_readings",
            records=records(now + timedelta(seconds=1), old + timedelta(seconds=1)),
            columns=columns,
        )
        rows = await conn.fetch(
            "SELECT time, metrics, received_at IS NOT NULL AS received, ingest_xid IS NOT NULL "
            "AS xid FROM telemetry WHERE tenant_id = $1 ORDER BY time",
            tenant,
        )
    expected = {"temp": ("number", 21.5), "on": ("bool", True)}
    assert [(r["time"], _typed(r["metrics"]), r["received"], r["xid"]) for r in rows] == [
        (t, expected, True, True)
        for t in (old, old + timedelta(seconds=1), now, now + timedelta(seconds=1))
    ]


async def test_compressed_readings_read_and_deduplicate_through_the_view(
    pool: asyncpg.Pool,
) -> None:
    tenant = _tenant()
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - 9 * DAY
    insert = (
        "INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics) "
        "SELECT $1::timestamptz + make_interval(mins => i), $2, 'd' || i % 3, i, "
        "jsonb_build_object('temp', i + 0.5, 'on', i % 2 = 0) FROM generate_series(0, $3 - 1) i"
    )
    async with pool.acquire() as conn:
        assert await conn.execute(insert, day, tenant, 60) == "INSERT 0 60"
        before = await _read_view(conn, tenant)
        await conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) "
            "FROM show_chunks('telemetry_readings', older_than => interval '7 days') c"
        )
        assert await conn.fetchval(
            "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'telemetry_readings' AND range_start <= $1 AND range_end > $1",
            day,
        )
        assert await _read_view(conn, tenant) == before
        seq1 = next(r for r in before if r[3] == 1)
        assert seq1[4] == {"temp": ("number", 1.5), "on": ("bool", False)}
        # a redelivery into the compressed chunk stores nothing; 10 more minutes store 10
        assert await conn.execute(insert, day, tenant, 60) == "INSERT 0 0"
        assert await conn.execute(insert, day, tenant, 70) == "INSERT 0 10"
        assert len(await _read_view(conn, tenant)) == 70


async def test_view_refuses_a_value_that_is_not_a_number_or_boolean(pool: asyncpg.Pool) -> None:
    tenant, now = _tenant(), datetime.now(UTC)
    insert = (
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) "
        "VALUES ($1, $2, 'd1', $3::text::jsonb)"
    )
    for name, bad in [
        ("note", '{"temp": 1.0, "note": "x"}'),
        ("big", '{"temp": 1.0, "big": 1e400}'),
        ("nested", '{"nested": {"a": 1}}'),
    ]:
        with pytest.raises(asyncpg.InvalidParameterValueError, match=f'"{name}"'):
            await pool.execute(insert, now, tenant, bad)
    assert await pool.fetchval("SELECT count(*) FROM telemetry WHERE tenant_id = $1", tenant) == 0
    # positive control: numbers (one below float8's range reads as 0) and a boolean are stored
    ok = '{"temp": 1e-400, "ok": true}'
    assert await pool.execute(insert, now, tenant, ok) == "INSERT 0 1"
    metrics = await pool.fetchval("SELECT metrics FROM telemetry WHERE tenant_id = $1", tenant)
    assert _typed(metrics) == {"temp": ("number", 0.0), "ok": ("bool", True)}


async def test_rollup_views_read_one_device_by_its_key(pool: asyncpg.Pool) -> None:
    """A query for one device must reach the raw rows of the real-time half by the device key,
    not aggregate every device's recent readings and join afterwards."""
    tenant = _tenant()
    await pool.execute(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) "
        "VALUES (now() - interval '30 minutes', $1, 'd', '{\"temp\": 1.0}')",
        tenant,
    )
    for query in (
        "SELECT * FROM telemetry_hourly WHERE tenant_id = $1 AND device_id = 'd' "
        "AND bucket >= now() - interval '1 day'",
        "SELECT * FROM telemetry_metrics_hourly WHERE tenant_id = $1 AND device_id = 'd' "
        "AND metric = 'temp' AND bucket >= now() - interval '1 day'",
    ):
        assert len(await pool.fetch(query, tenant)) == 1
        plan = "\n".join(r[0] for r in await pool.fetch(f"EXPLAIN {query}", tenant))
        # an index (or bitmap) condition on the key, in the raw half: a plain join only hashes
        # the aggregated rows on it ("*SELECT* 2".device_key = k.device_key)
        raw = plan[plan.index("telemetry_readings") :]
        assert "Cond: ((device_key = k.device_key)" in raw, plan


# The 0700 contract (LAYOUT): the same names and columns as the plain variant, in this order.
CONTRACT_COLUMNS = {
    "device_keys": "device_key int4, tenant_id text, device_id text",
    "metric_names": "metric_id int4, name text, is_bool bool",
    "telemetry_readings": "time timestamptz, received_at timestamptz, ingest_xid int8, "
    "seq int8, device_key int4, metric_ids _int4, metric_values _float8",
    "telemetry": "time timestamptz, tenant_id text, device_id text, seq int8, metrics jsonb, "
    "received_at timestamptz, ingest_xid int8",
    "telemetry_hourly": "bucket timestamptz, tenant_id text, device_id text, readings int8",
    "telemetry_metrics_hourly": "tenant_id text, device_id text, metric text, "
    "bucket timestamptz, min float8, max float8, sum numeric, count int8",
    "telemetry_hourly_by_key": "bucket timestamptz, device_key int4, readings int8",
    "telemetry_metrics_hourly_by_key": "device_key int4, metric_id int4, bucket timestamptz, "
    "min float8, max float8, sum numeric, count int8",
}


async def test_layout_names_and_columns_are_the_contract(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT table_name, string_agg(column_name || ' ' || udt_name, ', ' "
        "ORDER BY ordinal_position) AS columns FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = ANY($1::text[]) GROUP BY 1",
        list(CONTRACT_COLUMNS),
    )
    assert {r["table_name"]: r["columns"] for r in rows} == CONTRACT_COLUMNS
    functions = await pool.fetch(
        "SELECT proname, pg_get_function_identity_arguments(oid) AS args, "
        "pg_get_function_result(oid) AS result FROM pg_proc "
        "WHERE proname = ANY($1::text[]) ORDER BY 1",
        ["fleetpulse_device_keys", "fleetpulse_metric_ids", "fleetpulse_metrics_json"],
    )
    assert [tuple(f) for f in functions] == [
        (
            "fleetpulse_device_keys",
            "tenants text[], devices text[]",
            "TABLE(tenant_id text, device_id text, device_key integer)",
        ),
        (
            "fleetpulse_metric_ids",
            "names text[], bools boolean[]",
            "TABLE(name text, is_bool boolean, metric_id integer)",
        ),
        ("fleetpulse_metrics_json", "ids integer[], vals double precision[]", "jsonb"),
    ]
