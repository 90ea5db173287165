"""Migration 0700 (plain PostgreSQL): existing telemetry moves to the keyed layout unchanged, and
the `telemetry` view reads and writes it with the old contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from fleetpulse.common.db.migrate import _apply_missing, _ensure_ledger, load_migrations, migrate
from fleetpulse.common.db.pool import connect
from fleetpulse.testing.postgres import create_database, drop_database, unique_name

LAYOUT = 700
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
OLD_ROWS = [
    (T0, "acme", "d1", 1, {"temp": 21.5, "door_open": True, "rpm": 1200}),
    (T0 + timedelta(seconds=1), "acme", "d1", 2, {"temp": 21.75, "door_open": False}),
    (T0, "globex", "d1", None, {"temp": -3.0, "door_open": 1}),  # the same name as a number
    (T0 - timedelta(days=60), "acme", "d2", None, {}),  # before any daily partition: default
]


@pytest_asyncio.fixture
async def before_layout() -> AsyncIterator[asyncpg.Connection]:
    """A database migrated up to (not including) 0700, with rows in the old `telemetry`."""
    name = unique_name("fp_layout")
    conn = await connect(await create_database(name))
    try:
        await _ensure_ledger(conn)
        older = [m for m in load_migrations("postgres") if m.version < LAYOUT]
        await _apply_missing(conn, older, "postgres")
        await conn.execute(
            "INSERT INTO devices (tenant_id, device_id, registered_at, updated_at, version) "
            "VALUES ('acme', 'registered-only', now(), now(), 1)"
        )
        await conn.executemany(
            "INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics) "
            "VALUES ($1, $2, $3, $4, $5::jsonb)",
            OLD_ROWS,
        )
        yield conn
    finally:
        await conn.close()
        await drop_database(name)


async def _view(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT time, tenant_id, device_id, seq, metrics, ingest_xid FROM telemetry "
        "ORDER BY tenant_id, device_id, time"
    )
    return [tuple(r) for r in rows]


async def test_existing_rows_read_back_the_same_through_the_view(
    before_layout: asyncpg.Connection,
) -> None:
    conn = before_layout
    before = await _view(conn)
    assert len(before) == len(OLD_ROWS)

    applied = await migrate(conn)

    assert [m.version for m in applied] == [
        m.version for m in load_migrations("postgres") if m.version >= LAYOUT
    ]
    after = await _view(conn)
    assert after == before  # metrics, booleans as booleans, seq and ingest_xid kept
    assert await conn.fetchval("SELECT to_regclass('telemetry_readings_default') IS NOT NULL")
    keys = await conn.fetch("SELECT tenant_id, device_id FROM device_keys ORDER BY 1, 2")
    assert ("acme", "registered-only") in [tuple(k) for k in keys]
    kinds = await conn.fetch("SELECT name, is_bool FROM metric_names WHERE name = 'door_open'")
    assert sorted(tuple(k) for k in kinds) == [("door_open", False), ("door_open", True)]


async def test_the_view_keeps_first_stored_wins_and_refuses_what_float8_cannot_hold(
    before_layout: asyncpg.Connection,
) -> None:
    conn = before_layout
    await migrate(conn)
    insert = (
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, $2, $3, $4::jsonb)"
    )
    new_time = T0 + timedelta(minutes=5)
    assert await conn.execute(insert, new_time, "acme", "new-device", {"temp": 1}) == "INSERT 0 1"
    assert await conn.execute(insert, new_time, "acme", "new-device", {"temp": 2}) == "INSERT 0 0"
    stored = await conn.fetchval("SELECT metrics FROM telemetry WHERE device_id = 'new-device'")
    assert stored == {"temp": 1}

    with pytest.raises(asyncpg.InvalidParameterValueError, match='"huge"'):
        await conn.execute(
            "INSERT INTO telemetry (time, tenant_id, device_id, metrics) "
            "VALUES ($1, 'acme', 'd9', '{\"huge\": 1e400}')",
            new_time,
        )
    with pytest.raises(asyncpg.InvalidParameterValueError, match='"label"'):
        await conn.execute(insert, new_time, "acme", "d9", {"label": "x"})
    assert await conn.execute(insert, new_time, "acme", "d9", {"big": 1e308}) == "INSERT 0 1"


async def test_a_registered_device_gets_its_key_at_registration(
    before_layout: asyncpg.Connection,
) -> None:
    conn = before_layout
    await migrate(conn)
    assert await conn.fetchval("SELECT count(*) FROM device_keys WHERE device_id = 'later'") == 0
    await conn.execute(
        "INSERT INTO devices (tenant_id, device_id, registered_at, updated_at, version) "
        "VALUES ('acme', 'later', now(), now(), 1)"
    )
    assert await conn.fetchval("SELECT count(*) FROM device_keys WHERE device_id = 'later'") == 1
    keys = await conn.fetch(
        "SELECT * FROM fleetpulse_device_keys($1, $2)", ["acme", "acme"], ["later", "brand-new"]
    )
    assert len({k["device_key"] for k in keys}) == 2


async def test_rollups_read_the_new_table(before_layout: asyncpg.Connection) -> None:
    conn = before_layout
    await migrate(conn)
    await conn.execute("SELECT fleetpulse_refresh_telemetry_rollups(interval '0 minutes')")
    rows = await conn.fetch(
        "SELECT tenant_id, metric, min, max, count FROM telemetry_metrics_hourly "
        "WHERE device_id = 'd1' ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [
        ("acme", "door_open", 0.0, 1.0, 2),
        ("acme", "rpm", 1200.0, 1200.0, 1),
        ("acme", "temp", 21.5, 21.75, 2),
        ("globex", "door_open", 1.0, 1.0, 1),
        ("globex", "temp", -3.0, -3.0, 1),
    ]
    counts = await conn.fetch(
        "SELECT device_id, readings FROM telemetry_hourly WHERE tenant_id = 'acme' ORDER BY 1"
    )
    assert [tuple(r) for r in counts] == [("d1", 2), ("d2", 1)]
