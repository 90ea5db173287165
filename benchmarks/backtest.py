"""Backtest: 1,000,000 stored readings previewed by POST /api/v1/rules/preview's work.

    uv run python benchmarks/backtest.py [--devices 1000] [--readings 1000000]
        [--baseline old.json] [--save new.json]

Stores ``--readings`` readings of ``--devices`` devices (one per device per second) in a fresh
migrated database on the local PostgreSQL (FLEETPULSE_TEST_POSTGRES_URL), then times the
preview of a threshold rule (with a duration and hysteresis) and of a condition rule (window
average against a device attribute, or a rate) over the whole range: the endpoint's own code
(rule, device selection, server-side cursor streaming in time order, the evaluator's pure core),
everything but the HTTP round trip. Target: under 10 s for 1,000,000 readings.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import parser, report

from fleetpulse.common.db import create_pool
from fleetpulse.provision_api.api.preview import PreviewIn, run_preview
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name

T = "bench"
T0 = datetime(2026, 1, 5, tzinfo=UTC)
THRESHOLD: dict[str, Any] = {
    "name": "hot",
    "kind": "threshold",
    "metric": "temp_c",
    "operator": "gt",
    "threshold": 45,
    "clear_threshold": 40,
    "duration_s": 5,
    "severity": "major",
}
CONDITION: dict[str, Any] = {
    "name": "warming",
    "kind": "condition",
    "any": [
        {
            "metric": "temp_c",
            "aggregate": "avg",
            "window_s": 30,
            "operator": "gt",
            "threshold_from": "attributes.max_temp_c",
            "default": 40,
        },
        {"metric": "temp_c", "aggregate": "rate", "operator": "gt", "threshold": 8},
    ],
    "severity": "major",
}


async def _seed(pool: Any, devices: int, readings: int) -> datetime:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO devices (tenant_id, device_id, tags, attributes, registered_at, updated_at,"
        " version) VALUES ($1, $2, '{}', $3, $4, $4, 1)",
        [(T, f"d{i:05d}", {"max_temp_c": 38 + i % 5}, now) for i in range(devices)],
    )
    per_device = readings // devices
    # a slow wave per device plus noise, generated in the database (1M rows in seconds), into
    # telemetry_readings under the keys registration assigned (the telemetry view's row trigger
    # would take minutes, and ANALYZE skips a view)
    await pool.execute(
        """
        INSERT INTO telemetry_readings (time, device_key, metric_ids, metric_values)
        SELECT $1::timestamptz + s * interval '1 second', k.device_key,
               ARRAY[(SELECT metric_id FROM fleetpulse_metric_ids('{temp_c}', '{f}'))],
               ARRAY[round((32 + 12 * sin(s / 40.0 + d) + 6 * random())::numeric, 2)::float8]
        FROM generate_series(0, $3 - 1) AS s, generate_series(0, $4 - 1) AS d
        JOIN device_keys k ON k.tenant_id = $2 AND k.device_id = 'd' || lpad(d::text, 5, '0')
        """,
        T0,
        T,
        per_device,
        devices,
    )
    await pool.execute("ANALYZE telemetry_readings")
    return T0 + timedelta(seconds=per_device)


async def _time(pool: Any, rule: dict[str, Any], end: datetime) -> tuple[float, dict[str, Any]]:
    body = PreviewIn.model_validate({"rule": rule, "from": T0, "to": end})
    started = time.perf_counter()
    result = await run_preview(pool, T, body)
    return time.perf_counter() - started, result


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--readings", type=int, default=1_000_000)
    args = p.parse_args()
    name = unique_name("fp_bench_backtest")
    url = await create_migrated_database(name)
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        started = time.perf_counter()
        end = await _seed(pool, args.devices, args.readings)
        print(f"seeded {args.readings:,} readings in {time.perf_counter() - started:.1f} s")
        threshold_s, threshold = await _time(pool, THRESHOLD, end)
        condition_s, condition = await _time(pool, CONDITION, end)
    finally:
        await pool.close()
        await drop_database(name)
    assert threshold["counts"]["readings"] == args.readings, threshold["counts"]
    assert condition["counts"]["readings"] == args.readings, condition["counts"]
    report(
        f"backtest: {args.readings:,} stored readings of {args.devices} devices",
        {
            "threshold rule: preview s": threshold_s,
            "threshold rule: readings/s": args.readings / threshold_s,
            "threshold rule: alerts opened": threshold["counts"]["opened"],
            "condition rule: preview s": condition_s,
            "condition rule: readings/s": args.readings / condition_s,
            "condition rule: alerts opened": condition["counts"]["opened"],
        },
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    asyncio.run(main())
