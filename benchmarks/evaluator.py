"""Evaluator: readings/s with 1,000 devices x 10 rules, and breach-to-AlertOpened-committed latency.

    uv run python benchmarks/evaluator.py [--devices 1000] [--seconds 15] [--batch 1000]
        [--concurrency 4] [--rate 50000] [--coalesce] [--baseline old.json] [--save new.json]

Runs the evaluator's handler (``Evaluator.handle``: lock devices, load state, evaluate, write
state, append alert events with the inline projection, commit) against a fresh migrated database
on the local PostgreSQL (FLEETPULSE_TEST_POSTGRES_URL). SQS is left out: it is measured by the
messaging benchmarks, and moto could not feed 50,000 readings/s anyway. Batches are what ingest
sends: ``--batch`` records of distinct devices (one packed SQS message), ``--concurrency``
handled at once like the SQS consumer does. With ``--coalesce`` the batches go through the
service's ``Coalescer`` (as in production: ``--concurrency`` is then the SQS messages in flight).

1. core: the pure evaluation core alone (no database), readings/s.
2. throughput: as fast as it goes, readings/s.
3. latency: batches offered at ``--rate`` readings/s; for each alert opened, the time from its
   batch being offered to the transaction with ``AlertOpened`` committed, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import uvloop
from _common import parser, percentile, report

from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.rules.domain import (
    Record,
    RuleMemory,
    RuleState,
    Watermarks,
    evaluate_device,
)
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog, PostgresCatalogSource
from fleetpulse.evaluator.coalescer import Coalescer
from fleetpulse.evaluator.service import Evaluator
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name

T = "bench"
RULES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("hot", "threshold", "critical", {"metric": "temp_c", "operator": "gt", "threshold": 80}),
    (
        "warm",
        "threshold",
        "major",
        {
            "metric": "temp_c",
            "operator": "gt",
            "threshold": 70,
            "clear_threshold": 60,
            "duration_s": 5,
        },
    ),
    ("freezing", "threshold", "minor", {"metric": "temp_c", "operator": "lt", "threshold": -10}),
    ("humid", "threshold", "warning", {"metric": "humidity", "operator": "gt", "threshold": 95}),
    ("dry", "threshold", "info", {"metric": "humidity", "operator": "lt", "threshold": 5}),
    (
        "overpressure",
        "threshold",
        "major",
        {"metric": "pressure", "operator": "gte", "threshold": 1100},
    ),
    (
        "underpressure",
        "threshold",
        "major",
        {"metric": "pressure", "operator": "lte", "threshold": 900, "duration_s": 10},
    ),
    ("battery", "threshold", "warning", {"metric": "battery", "operator": "lt", "threshold": 10}),
    (
        "door",
        "threshold",
        "minor",
        {"metric": "door_open", "operator": "eq", "threshold": 1, "duration_s": 30},
    ),
    ("silent", "no_data", "critical", {"timeout_s": 600}),
]
WINDOW_S = (
    0.1  # readings are 10 ms apart: ~10 values per window (set directly, below the API's 1 s)
)
# --mixed: three of the threshold rules become condition rules with windows and a rate.
MIXED: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "humid": (
        "humid",
        "condition",
        "warning",
        {
            "all": [
                {
                    "metric": "humidity",
                    "aggregate": "avg",
                    "window_s": WINDOW_S,
                    "operator": "gt",
                    "threshold": 95,
                }
            ]
        },
    ),
    "dry": (
        "dry",
        "condition",
        "info",
        {
            "any": [
                {
                    "metric": "humidity",
                    "aggregate": "min",
                    "window_s": WINDOW_S,
                    "operator": "lt",
                    "threshold": 5,
                },
                {"metric": "pressure", "aggregate": "rate", "operator": "gt", "threshold": 100_000},
            ]
        },
    ),
    "battery": (
        "battery",
        "condition",
        "warning",
        {
            "all": [
                {
                    "metric": "battery",
                    "operator": "lt",
                    "threshold_from": "attributes.low_battery",
                    "default": 10,
                }
            ]
        },
    ),
}


async def _seed(
    pool: asyncpg.Pool, devices: int, rules: list[tuple[str, str, str, dict[str, Any]]]
) -> None:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO devices (tenant_id, device_id, tags, registered_at, updated_at, version) "
        "VALUES ($1, $2, $3, $4, $4, 1)",
        [(T, f"d{i:05d}", {"site": "s1"}, now) for i in range(devices)],
    )
    await pool.executemany(
        "INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, device_selector, "
        "created_at, updated_at, version) VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $7, 1)",
        [
            (T, rid, kind, sev, definition, {"tags": {"site": "s1"}}, now)
            for rid, kind, sev, definition in rules
        ],
    )


class Readings:
    """Step ``s`` is one reading per device at ``base + s * 10 ms``; a few devices breach ``hot``
    for one step (open, then resolve on the next)."""

    def __init__(self, devices: int, breaches_per_batch: int, seed: int = 7) -> None:
        self._devices = [f"d{i:05d}" for i in range(devices)]
        self._breaches = breaches_per_batch
        self._random = random.Random(seed)
        self._base = datetime.now(UTC) - timedelta(hours=1)
        self.step = 0
        rnd = self._random.random
        # a pool of normal readings, so generating load costs little of the evaluator's CPU
        self._normal = [
            {
                "temp_c": 20 + 30 * rnd(),
                "humidity": 30 + 40 * rnd(),
                "pressure": 1000 + 50 * rnd(),
                "battery": 50 + 50 * rnd(),
                "door_open": False,
            }
            for _ in range(4099)
        ]
        self.hot = {**self._normal[0], "temp_c": 90.0}

    def batch(self, size: int) -> list[Record]:
        """``size`` records; whole steps when ``size`` is a multiple of the device count."""
        records: list[Record] = []
        while len(records) < size:
            records += self._step()
        return records

    def _step(self) -> list[Record]:
        ts = self._base + timedelta(milliseconds=10 * self.step)
        self.step += 1
        hot = set(self._random.sample(range(len(self._devices)), self._breaches))
        normal, offset = self._normal, self.step * 7
        return [
            Record(T, device, ts, self.hot if i in hot else normal[(i + offset) % 4099])
            for i, device in enumerate(self._devices)
        ]


def _core_rate(catalog: Catalog, devices: int, n: int) -> float:
    readings = Readings(devices, 1, seed=1)
    states: dict[str, dict[str, RuleState]] = {}
    seen: dict[str, Watermarks | None] = {}
    memory: dict[str, dict[str, RuleMemory]] = {}
    batches = [readings.batch(devices) for _ in range(max(1, n // devices))]
    started = time.perf_counter()
    for batch in batches:
        for record in batch:
            key = (record.tenant_id, record.device_id)
            out = evaluate_device(
                catalog.plan_for(key),
                states.get(record.device_id, {}),
                seen.get(record.device_id),
                (record,),
                memory=memory.get(record.device_id),
            )
            states[record.device_id], seen[record.device_id] = out.states, out.seen
            memory[record.device_id] = out.memory
    return len(batches) * devices / (time.perf_counter() - started)


async def _drive(
    evaluator: Evaluator,
    readings: Readings,
    *,
    batch: int,
    concurrency: int,
    seconds: float,
    rate: float | None,
    coalesce: bool = False,
) -> tuple[float, list[float], int]:
    """Offer batches (paced at ``rate`` readings/s, or as fast as taken) for ``seconds``;
    returns (readings/s, latencies of opened alerts, alerts opened)."""
    queue: asyncio.Queue[tuple[float, list[Record]] | None] = asyncio.Queue(
        maxsize=0 if rate else concurrency
    )
    latencies: list[float] = []
    done = 0
    offered_at: dict[tuple[str, datetime], float] = {}  # breaching record -> when offered

    async def handle(records: list[Record]) -> None:
        outcome = await evaluator.handle(records)
        committed = time.perf_counter()
        latencies.extend(
            committed - offered_at.pop((o.device_id, o.opened_at), committed)
            for o in outcome.opened
        )

    coalescer = Coalescer(handle)

    async def worker() -> None:
        nonlocal done
        while (item := await queue.get()) is not None:
            offered, records = item
            offered_at.update(
                ((r.device_id, r.ts), offered) for r in records if r.metrics is readings.hot
            )
            await (coalescer.submit(records) if coalesce else handle(records))
            done += len(records)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    started = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        if rate is not None and sent > elapsed * rate:
            await asyncio.sleep(min(0.002, sent / rate - elapsed))
            continue
        records = readings.batch(batch)
        await queue.put((time.perf_counter(), records))
        sent += len(records)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    return done / (time.perf_counter() - started), latencies, len(latencies)


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--batch", type=int, default=1000, help="records per batch (SQS message)")
    p.add_argument(
        "--concurrency", type=int, default=16, help="SQS messages in flight (as in the service)"
    )
    p.add_argument(
        "--rate", type=float, default=50_000, help="offered readings/s in the latency phase"
    )
    p.add_argument(
        "--coalesce",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="through the service's Coalescer, as deployed (--no-coalesce: one transaction per message)",
    )
    p.add_argument(
        "--breaches", type=int, default=1, help="devices breaching per 1,000-device step"
    )
    p.add_argument(
        "--mixed",
        action="store_true",
        help="a mixed rule set: 3 of the 10 rules are condition rules (windows, rate, attribute)",
    )
    args = p.parse_args()
    rules = [MIXED.get(r[0], r) for r in RULES] if args.mixed else RULES
    name = unique_name("fp_bench_evaluator")
    url = await create_migrated_database(name)
    pool = await create_pool(url, min_size=args.concurrency + 2, max_size=args.concurrency + 4)
    try:
        await _seed(pool, args.devices, rules)
        catalog = Catalog()
        await PostgresCatalogSource(pool, catalog).refresh()
        assert all(len(catalog.rules_for((T, f"d{i:05d}"))) == 10 for i in range(args.devices))
        core = _core_rate(catalog, args.devices, 200_000)
        evaluator = Evaluator(pool, catalog, PostgresAlertLog(PostgresEventStore(pool)))
        readings = Readings(args.devices, args.breaches)
        await _drive(
            evaluator,
            readings,
            batch=args.batch,
            concurrency=args.concurrency,
            seconds=2,
            rate=None,
            coalesce=args.coalesce,
        )
        throughput, _, opened_max = await _drive(
            evaluator,
            readings,
            batch=args.batch,
            concurrency=args.concurrency,
            seconds=args.seconds,
            rate=None,
            coalesce=args.coalesce,
        )
        offered, latencies, opened = await _drive(
            evaluator,
            readings,
            batch=args.batch,
            concurrency=args.concurrency,
            seconds=args.seconds,
            rate=args.rate,
            coalesce=args.coalesce,
        )
        events = await pool.fetchval("SELECT count(*) FROM events")
    finally:
        await pool.close()
        await drop_database(name)
    report(
        f"evaluator: {args.devices} devices x {len(rules)} rules"
        f"{' (mixed: 3 condition rules)' if args.mixed else ''}, batch {args.batch}, "
        f"concurrency {args.concurrency}{', coalesced' if args.coalesce else ''}",
        {
            "core readings/s (no database)": core,
            "readings/s evaluated (max)": throughput,
            "alerts opened during max run": opened_max,
            f"readings/s at offered {args.rate:,.0f}/s": offered,
            "alerts opened during latency run": opened,
            "breach->AlertOpened committed p50 ms": percentile(latencies, 0.5) * 1000,
            "breach->AlertOpened committed p99 ms": percentile(latencies, 0.99) * 1000,
            "alert events appended (total)": events,
        },
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    uvloop.run(main())
