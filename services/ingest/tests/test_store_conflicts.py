"""Redelivered readings mixed with new ones: every row ends stored or counted as a duplicate,
even when the database's ON CONFLICT DO NOTHING loses the rows after the first conflict (the
TimescaleDB compressed-chunk bug class; tests/timescale runs the real thing on TimescaleDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import Accepted, Record
from fleetpulse.ingest.store import PostgresTelemetryStore

# Fault injection: while test_lossy.active, the first conflicting row of an INSERT makes the
# rest of that statement vanish (neither inserted nor an error); the statement ends the mode.
LOSSY_TRIGGER = """
CREATE TABLE test_lossy (active boolean NOT NULL);
INSERT INTO test_lossy VALUES (false);
CREATE FUNCTION test_lossy_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT active FROM test_lossy) THEN
        RETURN NEW;
    END IF;
    IF current_setting('fleetpulse.test_dropping', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM telemetry_readings t
               WHERE t.device_key = NEW.device_key AND t.time = NEW.time) THEN
        PERFORM set_config('fleetpulse.test_dropping', 'on', true);
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION test_lossy_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE test_lossy SET active = false;
    PERFORM set_config('fleetpulse.test_dropping', 'off', true);
    RETURN NULL;
END $$;
CREATE TRIGGER test_lossy_row BEFORE INSERT ON telemetry_readings
    FOR EACH ROW EXECUTE FUNCTION test_lossy_row();
CREATE TRIGGER test_lossy_end AFTER INSERT ON telemetry_readings
    FOR EACH STATEMENT EXECUTE FUNCTION test_lossy_end();
"""


def _batch(rows: list[tuple[str, datetime, float]]) -> Batch:
    batch = Batch(QuarantineThrottle(50), forward=False)
    received = int(datetime.now(UTC).timestamp() * 1_000_000)
    for device, at, temp in rows:
        time_us = int(at.timestamp() * 1_000_000)
        record = Record("reading", "acme", device, time_us, None, {"t": temp})
        batch.add(Envelope(None, "t", b"", received), Accepted([record]))
    return batch


async def test_rows_lost_after_a_conflict_are_stored_by_a_second_pass(
    db_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await db_pool.execute(LOSSY_TRIGGER)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - 10 * timedelta(1)
    old = [(f"d{i % 3}", day + timedelta(minutes=i), 1.0) for i in range(50)]
    store = PostgresTelemetryStore(db_pool)
    assert (await store.write(_batch(old))).duplicates == 0

    async with db_pool.acquire() as conn:
        # control: the injected fault does lose rows from a plain ON CONFLICT DO NOTHING
        control = conn.transaction()
        await control.start()
        await conn.execute("UPDATE test_lossy SET active = true")
        status = await conn.execute(
            "INSERT INTO telemetry_readings (time, device_key, metric_ids, metric_values) "
            "SELECT t, k.device_key, '{}', '{}' FROM unnest($1::timestamptz[]) t, device_keys k "
            "WHERE k.tenant_id = 'acme' AND k.device_id = 'd0' ON CONFLICT DO NOTHING",
            [day, day + timedelta(seconds=1)],
        )
        await control.rollback()
        assert status == "INSERT 0 0"  # the new second row vanished
    new = [(f"d{i % 4}", day + timedelta(minutes=i, seconds=30), 2.0) for i in range(50)]
    mixed = [row for pair in zip(old, new, strict=True) for row in pair]
    await db_pool.execute("UPDATE test_lossy SET active = true")
    duplicates = (await store.write(_batch(mixed))).duplicates
    stored = await db_pool.fetchval("SELECT count(*) FROM telemetry WHERE tenant_id = 'acme'")
    assert (stored, duplicates) == (100, 50)
    second_pass = [r for r in caplog.records if r.getMessage().startswith("telemetry rows lost")]
    assert [r.rows for r in second_pass] == [50]  # all new rows came after the first conflict
