"""Exporter throughput: telemetry rows/s and events/s from PostgreSQL to moto's S3 as Parquet.

    uv run python benchmarks/export.py [--readings 200000] [--events 50000]

A fresh migrated database is filled (readings over 10 devices x 2 tenants, events over many
streams), then one export run per dataset is timed end to end: claim the range, read it, encode
zstd Parquet, PUT every object to a private moto server (real HTTP) and commit the checkpoint.
"per exporter CPU-s" divides by this process's CPU time only (PostgreSQL and moto excluded), a
figure that moves less than wall time on a shared machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import uvloop
from _common import parser, report

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import NewEvent, PostgresEventStore
from fleetpulse.exporter.exporter import Exporter, ExportOptions
from fleetpulse.exporter.lake import S3ObjectStore
from fleetpulse.exporter.store import PostgresExportStore
from fleetpulse.testing.ports import free_port, wait_for_port
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    wait_for_port(port, timeout=30)
    return process, f"http://127.0.0.1:{port}"


async def fill(pool: object, store: PostgresEventStore, readings: int, events: int) -> None:
    # into the stored layout directly (migration 0700): keys for the 20 devices, ids for the metrics
    await pool.execute(  # type: ignore[attr-defined]
        """
        WITH keys AS (
            SELECT * FROM fleetpulse_device_keys(
                ARRAY(SELECT 't' || (i % 2) FROM generate_series(0, 19) AS i),
                ARRAY(SELECT 'd' || (i % 10) FROM generate_series(0, 19) AS i))
        ), ids AS (
            SELECT array_agg(metric_id ORDER BY name) AS ids FROM fleetpulse_metric_ids(
                '{door_open,humidity_pct,temperature_c,vibration_g}', '{true,false,false,false}')
        )
        INSERT INTO telemetry_readings (time, seq, device_key, metric_ids, metric_values)
        SELECT now() - interval '2 days' + i * interval '100 ms', i, k.device_key, ids.ids,
               ARRAY[(i % 2 = 0)::int, i % 100, i % 40, (i % 9) / 10.0]::float8[]
        FROM generate_series(1, $1) AS i, ids
        JOIN keys k ON true
        WHERE k.tenant_id = 't' || (i % 2) AND k.device_id = 'd' || (i % 10)
        """,
        readings,
    )
    data = {"rule_id": "r", "name": "n", "threshold": 1}
    for i in range(events // 100):
        batch = [NewEvent("RuleUpdated", data) for _ in range(100)]
        await store.append(f"rule-t{i % 2}-r{i}", batch, tenant_id=f"t{i % 2}")


async def timed(exporter: Exporter, dataset: str) -> tuple[float, float, int]:
    """(rows per wall second, rows per CPU second of this process, rows)."""
    started, cpu, rows = time.perf_counter(), time.process_time(), 0
    while (result := await exporter.export_range(dataset)) is not None and result.rows:  # type: ignore[arg-type]
        rows += result.rows
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return rows / wall, rows / used, rows


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=200_000)
    p.add_argument("--events", type=int, default=50_000)
    args = p.parse_args()
    name = unique_name("fp_bench_export")
    url = await create_migrated_database(name)
    pool = await create_pool(url, max_size=4)
    moto, endpoint = start_moto()
    try:
        await fill(pool, PostgresEventStore(pool), args.readings, args.events)
        async with aws_client("s3", AwsConfig(endpoint_url=endpoint)) as s3:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            await s3.create_bucket(Bucket=bucket)
            exporter = Exporter(
                PostgresExportStore(pool), S3ObjectStore(s3, bucket), ExportOptions()
            )
            events_rate, events_cpu, events_rows = await timed(exporter, "events")
            telemetry_rate, telemetry_cpu, telemetry_rows = await timed(exporter, "telemetry")
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        await pool.close()
        await drop_database(name)
    report(
        "export to S3 (moto) as Parquet",
        {
            "telemetry rows/s": telemetry_rate,
            "telemetry rows per exporter CPU-s": telemetry_cpu,
            "telemetry rows": telemetry_rows,
            "events/s": events_rate,
            "events per exporter CPU-s": events_cpu,
            "events": events_rows,
        },
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    uvloop.run(main())
