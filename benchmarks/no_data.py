"""no_data at fleet scale: every due deadline fires in time, however many devices stay silent.

    uv run python benchmarks/no_data.py [--devices 100000] [--selected 1000] [--timeout 5]

Against a fresh migrated database on the local PostgreSQL (FLEETPULSE_TEST_POSTGRES_URL), with
the evaluator's real handler and clock (``Evaluator.handle``, ``Evaluator.tick`` every second as
the service runs it, ``Evaluator.catalog_changed`` as its catalog refresher calls it):

- ``--devices`` registered devices in two tenants; all but ``--selected`` are a parked fleet that
  reported once an hour ago and that no ``no_data`` rule selects (each tenant has one rule,
  ``timeout_s`` = ``--timeout``, selecting ``fleet: live``);
- the ``--selected`` devices (tenant ``bench``) go silent: half send one heartbeat at the start
  (their deadline counts from it), half never report (it counts from the rule's creation).

Figures: the catalog sync (deadline rows kept in step with rules and devices), the clock's tick
while nothing is due and while deadlines fire, and for every alert the time from its device's
last traffic (or the rule's creation) to its ``AlertOpened`` being committed; ``all within
timeout + 5 s`` is 1 when every selected device alerted within ``timeout_s + 5 s``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import uvloop
from _common import parser, percentile, report

from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.rules.domain import Record
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog, PostgresCatalogSource
from fleetpulse.evaluator.service import Evaluator
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name

TENANTS = ("bench", "other")


async def _seed_devices(pool: asyncpg.Pool, devices: int, selected: int) -> list[str]:
    """Register the fleet; the parked part gets an evaluator row from an hour ago."""
    now = datetime.now(UTC)
    parked = devices - selected
    rows: list[tuple[object, ...]] = []
    seen: list[tuple[object, ...]] = []
    for i in range(parked):
        tenant, device = TENANTS[i % 2], f"parked-{i:06d}"
        rows.append((tenant, device, device, {"fleet": "parked"}, now, now, 1))
        seen.append((tenant, device, now - timedelta(hours=1), now - timedelta(hours=1)))
    live = [f"live-{i:05d}" for i in range(selected)]
    rows += [("bench", d, d, {"fleet": "live"}, now, now, 1) for d in live]
    await pool.execute(
        "INSERT INTO devices (tenant_id, device_id, name, tags, registered_at, updated_at, version)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[],"
        " $5::timestamptz[], $6::timestamptz[], $7::int[])",
        *(list(column) for column in zip(*rows, strict=True)),
    )
    async with pool.acquire() as conn:  # the parked fleet's rows: plain text COPY (no jsonb)
        await conn.copy_records_to_table(
            "evaluator_devices",
            records=seen,
            columns=("tenant_id", "device_id", "last_seen", "last_heartbeat_at"),
        )
    return live


async def _add_rules(pool: asyncpg.Pool, timeout_s: float) -> datetime:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, device_selector,"
        " created_at, updated_at, version) VALUES ($1, 'silent', 'silent', 'no_data', 'critical',"
        " $2, $3, $4, $4, 1)",
        [(t, {"timeout_s": timeout_s}, {"tags": {"fleet": "live"}}, now) for t in TENANTS],
    )
    return now


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--selected", type=int, default=1_000, help="silent devices a rule selects")
    p.add_argument("--timeout", type=float, default=5.0, help="the rules' timeout_s")
    args = p.parse_args()
    name = unique_name("fp_bench_no_data")
    url = await create_migrated_database(name)
    pool = await create_pool(url, min_size=2, max_size=6)
    try:
        live = await _seed_devices(pool, args.devices, args.selected)
        catalog = Catalog()
        source = PostgresCatalogSource(pool, catalog)
        await source.refresh()
        evaluator = Evaluator(pool, catalog, PostgresAlertLog(PostgresEventStore(pool)))
        armed = await _add_rules(pool, args.timeout)
        await source.refresh()
        started = time.perf_counter()
        await evaluator.catalog_changed()
        sync_s = time.perf_counter() - started
        deadlines = await pool.fetchval("SELECT count(*) FROM evaluator_deadlines")
        heard = datetime.now(UTC)
        half = live[: len(live) // 2]
        await evaluator.handle([Record("bench", d, heard, {}, "heartbeat") for d in half])
        start_of = dict.fromkeys(live, armed) | dict.fromkeys(half, heard)
        idle_ticks: list[float] = []
        busy_ticks: list[float] = []
        delays: list[float] = []
        give_up = time.monotonic() + args.timeout + 30
        while len(delays) < len(live) and time.monotonic() < give_up:
            began = time.perf_counter()
            outcome = await evaluator.tick()
            committed = datetime.now(UTC)
            (busy_ticks if outcome.opened else idle_ticks).append(time.perf_counter() - began)
            delays += [(committed - start_of[o.device_id]).total_seconds() for o in outcome.opened]
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - began)))
        alerts = await pool.fetchval("SELECT count(*) FROM alerts")
        wrong = await pool.fetchval("SELECT count(*) FROM alerts WHERE device_id NOT LIKE 'live-%'")
    finally:
        await pool.close()
        await drop_database(name)
    within = int(
        len(delays) == len(live) and wrong == 0 and max(delays, default=1e9) <= args.timeout + 5
    )
    report(
        f"no_data: {args.devices:,} devices, {args.selected:,} selected and silent, "
        f"timeout_s {args.timeout:g}",
        {
            "registered devices": args.devices,
            "deadline rows": deadlines,
            "catalog sync s": sync_s,
            "tick ms, nothing due p50": percentile(idle_ticks, 0.5) * 1000,
            "tick ms, deadlines firing max": max(busy_ticks, default=0.0) * 1000,
            "alerts opened": alerts,
            "alerts on unselected devices": wrong,
            "silence -> AlertOpened p50 s": percentile(delays, 0.5),
            "silence -> AlertOpened max s": max(delays, default=float("nan")),
            "all within timeout + 5 s": within,
        },
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    uvloop.run(main())
