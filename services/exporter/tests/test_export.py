"""The exporter against a real database and moto's S3, read back with pyarrow datasets + DuckDB."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore
from fleetpulse.exporter.exporter import Exporter, ExportOptions
from fleetpulse.exporter.files import Coalescing
from fleetpulse.exporter.lake import S3ObjectStore
from fleetpulse.exporter.schema import EVENTS_SCHEMA, TELEMETRY_SCHEMA
from fleetpulse.exporter.store import PostgresExportStore
from fleetpulse.testing.postgres import server_url

from .conftest import Lake, insert_reading

DAY1 = datetime(2026, 11, 20, 23, 59, 59, 500_000, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC)


async def seed(db_pool: asyncpg.Pool, event_store: PostgresEventStore) -> None:
    await insert_reading(db_pool, "t1", "d1", DAY1, {"temperature_c": 21.5, "door_open": False}, 1)
    await insert_reading(db_pool, "t1", "d1", DAY2, {"temperature_c": 22.0, "vibration_g": 0.3}, 2)
    await insert_reading(db_pool, "t1", "d2", DAY2, {"door_open": True, "tamper": True})
    await insert_reading(db_pool, "t2", "d1", DAY1, {"humidity_pct": 40, "temperature_c": True})
    await insert_reading(db_pool, "t2", "d2", DAY1, {"door_open": 1, "b": 2.5, "a": -1e300})
    for tenant in ("t1", "t2"):
        await event_store.append(
            f"device-{tenant}-d1",
            [NewEvent("DeviceRegistered", {"device_id": "d1", "tags": {"a": "b"}})],
            tenant_id=tenant,
        )
    await event_store.append(
        "rule-t1-r1", [NewEvent("RuleCreated", {"rule_id": "r1", "name": "hot"})], tenant_id="t1"
    )


async def test_rows_equal_the_source_in_hive_partitions(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore, lake: Lake, make_exporter: Any
) -> None:
    await seed(db_pool, event_store)

    results = await make_exporter().export_all()

    assert {(r.dataset, r.rows) for r in results} == {("events", 3), ("telemetry", 5)}
    keys = await lake.keys()
    assert all(k.endswith(".parquet") for k in keys)
    assert {k.rsplit("/", 1)[0] for k in keys} == {
        "events/tenant_id=t1/date=" + datetime.now(UTC).date().isoformat(),
        "events/tenant_id=t2/date=" + datetime.now(UTC).date().isoformat(),
        "telemetry/tenant_id=t1/date=2026-11-20",
        "telemetry/tenant_id=t1/date=2026-11-21",
        "telemetry/tenant_id=t2/date=2026-11-20",
    }
    telemetry = lake.table("telemetry")
    assert telemetry.schema.names == [*TELEMETRY_SCHEMA.names, "tenant_id", "date"]
    assert all(telemetry.schema.field(f.name).type == f.type for f in TELEMETRY_SCHEMA)
    rows = lake.sql(
        "SELECT tenant_id, date, device_id, time, seq, temperature_c, humidity_pct, door_open,"
        " other_metrics, other_flags FROM telemetry ORDER BY tenant_id, device_id, time",
        telemetry=telemetry,
    )
    assert rows == [
        ("t1", "2026-11-20", "d1", DAY1, 1, 21.5, None, False, None, None),
        ("t1", "2026-11-21", "d1", DAY2, 2, 22.0, None, None, {"vibration_g": 0.3}, None),
        ("t1", "2026-11-21", "d2", DAY2, None, None, None, True, None, {"tamper": True}),
        # a known numeric metric sent as a boolean is kept, in the map of its real type
        ("t2", "2026-11-20", "d1", DAY1, None, None, 40.0, None, None, {"temperature_c": True}),
        # ... and a known boolean sent as a number too; map keys sorted
        ("t2", "2026-11-20", "d2", DAY1, None, None, None, None,
         {"a": -1e300, "b": 2.5, "door_open": 1.0}, None),
    ]  # fmt: skip
    source = await db_pool.fetch("SELECT position, tenant_id, type, data FROM events ORDER BY 1")
    events = lake.table("events")
    assert events.schema.names == [*EVENTS_SCHEMA.names, "tenant_id", "date"]
    exported = lake.sql(
        "SELECT position, tenant_id, type, json_extract_string(data, '$.device_id')"
        " FROM events ORDER BY position",
        events=events,
    )
    assert exported == [
        (r["position"], r["tenant_id"], r["type"], r["data"].get("device_id")) for r in source
    ]


async def test_incremental_runs_export_only_what_is_new(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore, lake: Lake, make_exporter: Any
) -> None:
    exporter = make_exporter()
    await seed(db_pool, event_store)
    await exporter.export_all()
    first = await lake.keys()

    assert await exporter.export_all() == []  # caught up: nothing written
    assert await lake.keys() == first

    await insert_reading(db_pool, "t1", "d1", DAY2 + timedelta(seconds=1), {"temp_c": 1.0})
    await event_store.append(
        "rule-t1-r1", [NewEvent("RuleDeleted", {"rule_id": "r1"})], tenant_id="t1"
    )
    results = await exporter.export_all()

    assert {(r.dataset, r.rows, r.files) for r in results} == {
        ("events", 1, 1),
        ("telemetry", 1, 1),
    }
    assert len(await lake.keys()) == len(first) + 2
    assert lake.sql("SELECT count(*), count(DISTINCT position) FROM e", e=lake.table("events")) == [
        (4, 4)
    ]
    assert lake.sql("SELECT count(*) FROM t", t=lake.table("telemetry")) == [(6,)]


async def test_late_readings_are_exported_into_their_day(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore, lake: Lake, make_exporter: Any
) -> None:
    """Device time is not the watermark: a reading from days ago arriving now is not skipped."""
    exporter = make_exporter()
    now = datetime.now(UTC)
    await insert_reading(db_pool, "t1", "d1", now, {"temp_c": 1.0})
    await exporter.export_all()

    three_days_ago = now - timedelta(days=3)
    await insert_reading(db_pool, "t1", "d1", three_days_ago, {"temp_c": 2.0})
    [result] = await exporter.export_all()

    assert (result.dataset, result.rows) == ("telemetry", 1)
    rows = lake.sql("SELECT date, temp_c FROM t ORDER BY time", t=lake.table("telemetry"))
    assert rows == [(three_days_ago.date().isoformat(), 2.0), (now.date().isoformat(), 1.0)]


async def test_a_transaction_committing_late_is_not_skipped(
    db_pool: asyncpg.Pool, lake: Lake, make_exporter: Any
) -> None:
    """A reading inserted first but committed after a later one (and after an export) is exported.

    A watermark on received_at or on a sequence would pass the later row and skip this one.
    """
    exporter = make_exporter()
    early = datetime.now(UTC) - timedelta(seconds=10)
    # the metric name is known before (as ingest learns names in their own transaction): a
    # name first inserted by the open transaction would make the second insert wait for it
    await db_pool.fetch("SELECT * FROM fleetpulse_metric_ids(ARRAY['temp_c'], ARRAY[false])")
    async with db_pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        await insert_reading(slow, "t1", "slow", early, {"temp_c": 1.0})  # not yet committed
        await insert_reading(db_pool, "t1", "fast", datetime.now(UTC), {"temp_c": 2.0})

        held_back = await exporter.export_all()
        files_while_open = await lake.keys("telemetry/")
        await transaction.commit()
    caught_up = await exporter.export_all()

    # the fast row waited for the open transaction (the watermark stays below it) ...
    assert held_back == []
    assert files_while_open == []
    # ... and then both went out, once each
    assert [(r.dataset, r.rows) for r in caught_up] == [("telemetry", 2)]
    rows = lake.sql("SELECT device_id FROM t ORDER BY device_id", t=lake.table("telemetry"))
    assert rows == [("fast",), ("slow",)]


async def test_files_are_split_by_rows_per_file(
    db_pool: asyncpg.Pool, lake: Lake, make_exporter: Any
) -> None:
    base = datetime(2026, 11, 20, 12, tzinfo=UTC)
    for i in range(7):
        await insert_reading(db_pool, "t1", "d1", base + timedelta(seconds=i), {"temp_c": i})

    [result] = await make_exporter(rows_per_file=3).export_all()

    assert (result.files, result.rows) == (3, 7)
    keys = await lake.keys("telemetry/tenant_id=t1/date=2026-11-20/")
    assert [k.rsplit("-", 1)[1] for k in keys] == [
        "00000.parquet",
        "00001.parquet",
        "00002.parquet",
    ]
    assert lake.sql("SELECT count(DISTINCT time) FROM t", t=lake.table("telemetry")) == [(7,)]


async def test_a_range_cut_short_is_rewritten_under_the_same_keys(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore, lake: Lake, make_exporter: Any
) -> None:
    """Files of a range written before a crash are replaced by the re-run, not duplicated."""
    await seed(db_pool, event_store)

    class CrashError(Exception):
        pass

    class CrashingLake(S3ObjectStore):
        """Dies (like a killed process) before its third object."""

        written = 0

        async def put(self, key: str, body: bytes) -> None:
            if self.written == 2:
                raise CrashError
            self.written += 1
            await super().put(key, body)

    store = PostgresExportStore(db_pool)
    crashing = Exporter(store, CrashingLake(lake.s3, lake.bucket), ExportOptions(rows_per_file=1))
    with pytest.raises(CrashError):
        await crashing.export_range("telemetry")
    partial = await lake.keys("telemetry/")
    assert len(partial) == 2  # positive control: the crash left files of an uncommitted range

    # the restart (a new setting must not change the pending range's files) rewrites them
    await make_exporter(rows_per_file=1000).export_all()

    keys = await lake.keys("telemetry/")
    assert set(partial) <= set(keys) and len(keys) == 5
    assert lake.sql(
        "SELECT count(*), count(DISTINCT (tenant_id, device_id, time)) FROM t",
        t=lake.table("telemetry"),
    ) == [(5, 5)]


async def test_two_exporters_at_once_write_each_row_once(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore, lake: Lake, make_exporter: Any
) -> None:
    await seed(db_pool, event_store)
    await asyncio.gather(make_exporter().export_all(), make_exporter().export_all())
    assert lake.sql("SELECT count(*) FROM t", t=lake.table("telemetry")) == [(5,)]
    assert lake.sql("SELECT count(*) FROM e", e=lake.table("events")) == [(3,)]


async def test_small_ranges_wait_for_rows_or_time_instead_of_writing_tiny_files(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore, lake: Lake, make_exporter: Any
) -> None:
    exporter = make_exporter(coalescing=Coalescing(min_rows=5, max_delay_s=1.0))
    await seed(db_pool, event_store)
    assert {r.dataset for r in await exporter.export_all()} == {"events", "telemetry"}  # first

    base = DAY2 + timedelta(minutes=1)
    for i in range(3):
        await insert_reading(db_pool, "t1", "d1", base + timedelta(seconds=i), {"temp_c": i})
    waiting = await exporter.export_all()  # 3 < 5 rows and committed just now
    for i in range(3, 5):
        await insert_reading(db_pool, "t1", "d1", base + timedelta(seconds=i), {"temp_c": i})
    enough = await exporter.export_all()  # 5 rows: one file with all of them

    await insert_reading(db_pool, "t1", "d1", base + timedelta(seconds=9), {"temp_c": 9})
    too_soon = await exporter.export_all()
    await asyncio.sleep(1.1)
    late = await exporter.export_all()  # max_delay_s passed: the single row goes out

    assert waiting == [] and too_soon == []
    assert [(r.dataset, r.files, r.rows) for r in enough] == [("telemetry", 1, 5)]
    assert [(r.dataset, r.rows) for r in late] == [("telemetry", 1)]
    assert lake.sql("SELECT count(*) FROM t", t=lake.table("telemetry")) == [(11,)]


async def test_open_transactions_of_other_databases_do_not_hold_telemetry_back(
    db_pool: asyncpg.Pool, lake: Lake, make_exporter: Any
) -> None:
    """xids are cluster-wide, but only this database's transactions can still add telemetry."""
    elsewhere = await asyncpg.connect(server_url())
    try:
        transaction = elsewhere.transaction()
        await transaction.start()
        await elsewhere.fetchval("SELECT pg_current_xact_id()")  # holds an xid, stays open
        await insert_reading(db_pool, "t1", "d1", datetime.now(UTC), {"temp_c": 1.0})

        results = await make_exporter().export_all()

        await transaction.rollback()
    finally:
        await elsewhere.close()
    assert [(r.dataset, r.rows) for r in results] == [("telemetry", 1)]


async def test_a_stop_request_ends_the_run_between_ranges(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore, lake: Lake, make_exporter: Any
) -> None:
    await seed(db_pool, event_store)
    stop = asyncio.Event()
    stop.set()
    assert await make_exporter(max_events=1).export_all(stop) == []
    assert await lake.keys() == []
    # positive control: without the stop request the same exporter writes every range
    results = await make_exporter(max_events=1).export_all()
    assert [r.dataset for r in results] == ["events", "events", "events", "telemetry"]
