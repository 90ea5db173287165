"""Ingest in-process against the private broker and a fresh database."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from .conftest import count, ingest_settings, publish, register_devices, running_ingest, wait_until


def reading(ts_ms: int, value: float = 1.0, seq: int | None = None) -> bytes:
    seq_part = b"" if seq is None else b', "seq": %d' % seq
    return b'{"ts": %d%s, "metrics": {"temp_c": %r}}' % (ts_ms, seq_part, value)


async def test_readings_end_in_telemetry_and_device_state(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, tenant: str
) -> None:
    await register_devices(db_pool, tenant, ["d1", "d2"])
    now_ms = int(time.time() * 1000)
    messages = [
        (f"tenant/{tenant}/device/d{1 + i % 2}/telemetry", reading(now_ms - i, i, seq=i))
        for i in range(50)
    ]
    batch = b'{"readings": [%s]}' % b",".join(reading(now_ms - 1000 - i) for i in range(100))
    messages.append((f"tenant/{tenant}/device/d1/telemetry", batch))
    messages.append((f"tenant/{tenant}/device/d2/heartbeat", b"{}"))
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await publish(mqtt_url, messages)
        await wait_until(lambda: _rows(db_pool, 150))
        await wait_until(lambda: _true(ingest.metrics.stats.received == 52))
    state = await db_pool.fetchrow(
        "SELECT * FROM device_state WHERE tenant_id=$1 AND device_id='d1'", tenant
    )
    assert state["metrics"] == {"temp_c": 0.0}
    assert (
        await count(db_pool, "SELECT count(*) FROM device_state WHERE last_heartbeat IS NOT NULL")
        == 1
    )
    assert await count(db_pool, "SELECT count(*) FROM quarantine") == 0


async def test_redelivered_readings_are_counted_duplicates(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, tenant: str
) -> None:
    await register_devices(db_pool, tenant, ["d1"])
    now_ms = int(time.time() * 1000)
    messages = [(f"tenant/{tenant}/device/d1/telemetry", reading(now_ms - i)) for i in range(20)]
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await publish(mqtt_url, messages + messages)
        await wait_until(lambda: _true(ingest.metrics.stats.received == 40))
        assert ingest.metrics.stats.duplicates == 20
    assert await count(db_pool, "SELECT count(*) FROM telemetry") == 20
    assert await count(db_pool, "SELECT sum(duplicates) FROM ingest_duplicate_counts") == 20


HOSTILE = {
    "BAD_JSON": [
        b'{"metrics": ',
        b'{"metrics": {"a": NaN}}',
        b'{"metrics": {"a": Infinity}}',
        b"\xff\xfe\x00garbage",
    ],
    "SCHEMA_INVALID": [
        b'{"metrics": {"a": "warm"}}',
        b'{"metrics": {"a": 1e999}}',
        b'{"x": ' + b"[" * 4000 + b"]" * 4000 + b"}",
        b'{"metrics": {%s}}' % ",".join(f'"m{i}":1' for i in range(1000)).encode(),
    ],
    "PAYLOAD_TOO_LARGE": [
        b'{"metrics": {}, "pad": "' + b"x" * (1024 * 1024) + b'"}',
        b'{"metrics": {%s}}' % ",".join(f'"m{i}": {i}' for i in range(10_000)).encode(),
    ],
}


async def test_hostile_input_lands_in_quarantine_with_its_reason(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, tenant: str
) -> None:
    await register_devices(db_pool, tenant, ["d1"])
    await register_devices(db_pool, tenant, ["gone"], status="decommissioned")
    topic = f"tenant/{tenant}/device/d1/telemetry"
    messages = [(topic, p) for payloads in HOSTILE.values() for p in payloads]
    messages += [
        (f"tenant/{tenant}/device/ghost/telemetry", b"{}"),  # unknown device
        (f"tenant/other{tenant}/device/d1/telemetry", b"{}"),  # tenant mismatch
        (f"tenant/{tenant}/device/gone/telemetry", b"{}"),  # decommissioned
        (f"tenant/{tenant}/device/d1/firmware", b"{}"),  # bad topic level
        (f"tenant/{tenant}/device/d%201/telemetry", b"{}"),  # bad id
        (topic, b'{"ts": 1000, "metrics": {"a": 1}}'),  # too old
    ]
    expected = {reason: len(p) for reason, p in HOSTILE.items()}
    expected.update(
        {
            "UNKNOWN_DEVICE": 2,
            "DEVICE_DECOMMISSIONED": 1,
            "BAD_TOPIC": 2,
            "TIMESTAMP_OUT_OF_RANGE": 1,
        }
    )
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await publish(mqtt_url, messages)
        await publish(mqtt_url, [(topic, reading(int(time.time() * 1000)))])  # still alive
        await wait_until(lambda: _true(ingest.metrics.stats.received == len(messages) + 1))
    rows = await db_pool.fetch(
        "SELECT reason, count(*) AS n, max(length(payload)) AS size FROM quarantine GROUP BY reason"
    )
    assert {r["reason"]: r["n"] for r in rows} == expected
    assert max(r["size"] for r in rows) <= 4096
    assert await count(db_pool, "SELECT count(*) FROM telemetry") == 1


async def test_flood_is_counted_not_stored_row_by_row(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, tenant: str
) -> None:
    await register_devices(db_pool, tenant, ["d1"])
    topic = f"tenant/{tenant}/device/d1/telemetry"
    settings = ingest_settings(
        database_url,
        mqtt_url,
        quarantine_rows_per_minute=10,
        rate_limit_per_s=1,
        rate_limit_burst=5,
    )
    async with running_ingest(settings) as ingest:
        ok = b'{"metrics": {"a": 1}}'
        await publish(mqtt_url, [(topic, ok)] * 300 + [(topic, b"nope")] * 300)
        await wait_until(lambda: _true(ingest.metrics.stats.received == 600))
    counts = await db_pool.fetch(
        "SELECT reason, sum(stored) s, sum(suppressed) x FROM quarantine_counts GROUP BY reason"
    )
    totals = {r["reason"]: r["s"] + r["x"] for r in counts}
    assert sum(totals.values()) + 5 == 600  # 5 accepted from the burst, the rest quarantined
    assert await count(db_pool, "SELECT count(*) FROM quarantine") <= 20


async def test_decommissioned_device_is_quarantined_within_5s(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, tenant: str
) -> None:
    await register_devices(db_pool, tenant, ["d1"])
    topic = f"tenant/{tenant}/device/d1/telemetry"
    async with running_ingest(
        ingest_settings(database_url, mqtt_url, registry_poll_ms=1000)
    ) as ingest:
        await publish(mqtt_url, [(topic, b'{"metrics": {"a": 1}}')])
        await wait_until(lambda: _rows(db_pool, 1))
        await register_devices(db_pool, tenant, ["d1"], status="decommissioned")
        decommissioned_at = time.monotonic()
        await asyncio.sleep(5.0)
        await publish(mqtt_url, [(topic, b'{"metrics": {"a": 2}}')])
        await wait_until(lambda: _true(ingest.metrics.stats.received == 2))
    assert time.monotonic() - decommissioned_at < 8
    assert (
        await count(db_pool, "SELECT count(*) FROM quarantine WHERE reason='DEVICE_DECOMMISSIONED'")
        == 1
    )


INGEST_BACKENDS = (
    "FROM pg_stat_activity WHERE application_name = 'fleetpulse-ingest' "
    "AND datname = current_database()"
)


async def test_survives_killed_database_connections(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, tenant: str
) -> None:
    """Deterministic: ingest's writes are held on a table lock, killed while blocked, then
    released. Ingest must stop pulling while blocked, count the failed writes, retry, and land
    every reading exactly once."""
    devices = [f"d{i}" for i in range(50)]
    await register_devices(db_pool, tenant, devices)
    now_ms = int(time.time() * 1000)
    messages = [
        (f"tenant/{tenant}/device/{devices[i % 50]}/telemetry", reading(now_ms - i // 50))
        for i in range(3000)
    ]
    settings = ingest_settings(
        database_url,
        mqtt_url,
        batch_max_rows=200,
        rate_limit_per_s=1000,
        rate_limit_burst=1000,
        max_pending_messages=500,
    )
    async with running_ingest(settings) as ingest:
        locker = await asyncpg.connect(database_url)
        try:
            locking = locker.transaction()
            await locking.start()
            await locker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
            await publish(mqtt_url, messages)  # the broker takes all of it while ingest is stuck
            await wait_until(lambda: _blocked_writers(db_pool, settings.writers), timeout=10)
            await wait_until(lambda: _true(ingest.pipeline.pending == 500), timeout=10)
            for _ in range(5):  # stopped pulling: bounded, nothing acknowledged
                await asyncio.sleep(0.1)
                assert ingest.pipeline.pending <= 500
                assert ingest.metrics.stats.received == 0
            killed = await db_pool.fetchval(
                f"SELECT count(pg_terminate_backend(pid)) {INGEST_BACKENDS} "
                "AND wait_event_type = 'Lock'"
            )
            assert killed == settings.writers
            await wait_until(lambda: _true(ingest.metrics.stats.write_errors >= killed), 10)
            await locking.rollback()
        finally:
            await locker.close()
        await wait_until(lambda: _true(ingest.metrics.stats.received >= 3000), timeout=20)
        assert ingest.pipeline.pending <= 500
    assert await count(db_pool, "SELECT count(*) FROM telemetry") == 3000
    assert (
        await count(
            db_pool,
            "SELECT count(DISTINCT (device_id, time)) FROM telemetry WHERE tenant_id=$1",
            tenant,
        )
        == 3000
    )


async def _blocked_writers(pool: asyncpg.Pool, writers: int) -> bool:
    blocked = await count(pool, f"SELECT count(*) {INGEST_BACKENDS} AND wait_event_type = 'Lock'")
    return blocked == writers


async def _rows(pool: asyncpg.Pool, expected: int) -> bool:
    return await count(pool, "SELECT count(*) FROM telemetry") >= expected


async def _true(value: bool) -> bool:
    return value
