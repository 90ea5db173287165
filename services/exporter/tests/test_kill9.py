"""SIGKILL of the real exporter process mid-export, then a restart: no loss, no duplicate."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import asyncpg
import pytest

from .conftest import Lake

ROWS = 12_000
ROWS_PER_FILE = 100


def start_exporter(
    database_url: str,
    moto_server: str,
    bucket: str,
    *args: str,
    interval_s: str = "300",
    min_rows: str = "100000",
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": database_url,
        "FLEETPULSE_AWS_ENDPOINT_URL": moto_server,
        "FLEETPULSE_LAKE_BUCKET": bucket,
        "FLEETPULSE_EXPORT_ROWS_PER_FILE": str(ROWS_PER_FILE),
        "FLEETPULSE_HEALTH_PORT": "0",
        "FLEETPULSE_EXPORT_INTERVAL_S": interval_s,
        "FLEETPULSE_EXPORT_MIN_ROWS": min_rows,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    code = "import sys; from fleetpulse.exporter.main import main; main(sys.argv[1:])"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env)


async def wait_for_keys(lake: Lake, prefix: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(keys := await lake.keys(prefix)) >= at_least:
            return len(keys)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"fewer than {at_least} objects under {prefix}")


@pytest.mark.slow
async def test_sigkill_mid_export_then_restart_loses_and_duplicates_nothing(
    db_pool: asyncpg.Pool, database_url: str, moto_server: str, lake: Lake
) -> None:
    await db_pool.execute(
        """
        INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics)
        SELECT timestamptz '2026-11-20 00:00Z' + i * interval '5 seconds',
               't' || (i % 2), 'd' || (i % 4), i, jsonb_build_object('temp_c', i, 'x', i % 7)
        FROM generate_series(1, $1) AS i
        """,
        ROWS,
    )
    exporter = start_exporter(database_url, moto_server, lake.bucket, "--once")
    try:
        written = await wait_for_keys(lake, "telemetry/", 5, timeout=60)
        exporter.send_signal(signal.SIGKILL)
        exporter.wait(timeout=10)
    finally:
        if exporter.poll() is None:
            exporter.kill()
    partial = await lake.keys("telemetry/")
    pending = await db_pool.fetchrow(
        "SELECT done, pending_until FROM export_checkpoints WHERE stream = 'telemetry'"
    )
    # positive control: killed mid-range, with some of its files written and nothing committed
    assert written <= len(partial) < ROWS // ROWS_PER_FILE
    assert pending["pending_until"] is not None and pending["done"] == 0

    restarted = start_exporter(database_url, moto_server, lake.bucket, "--once")
    assert restarted.wait(timeout=120) == 0

    keys = await lake.keys("telemetry/")
    assert set(partial) <= set(keys)  # the same keys were rewritten, none added beside them
    table = lake.table("telemetry")
    assert lake.sql("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM t", t=table) == [
        (ROWS, ROWS, 1, ROWS)
    ]
    assert len(keys) == ROWS // ROWS_PER_FILE
    done = await db_pool.fetchrow(
        "SELECT done, pending_until, rows FROM export_checkpoints WHERE stream = 'telemetry'"
    )
    assert done["pending_until"] is None and done["rows"] == ROWS


@pytest.mark.slow
async def test_loop_mode_exports_on_its_interval_and_stops_on_sigterm(
    db_pool: asyncpg.Pool, database_url: str, moto_server: str, lake: Lake
) -> None:
    exporter = start_exporter(
        database_url, moto_server, lake.bucket, interval_s="0.2", min_rows="1"
    )
    try:
        await db_pool.execute(
            "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES (now(), 't', 'd', '{}')"
        )
        await wait_for_keys(lake, "telemetry/", 1, timeout=30)
        await db_pool.execute(
            "INSERT INTO telemetry (time, tenant_id, device_id, metrics)"
            " VALUES (now() + interval '1 s', 't', 'd', '{}')"
        )
        await wait_for_keys(lake, "telemetry/", 2, timeout=30)  # a second run, unprompted
        exporter.send_signal(signal.SIGTERM)
        assert exporter.wait(timeout=20) == 0
    finally:
        if exporter.poll() is None:
            exporter.kill()
