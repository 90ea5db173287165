"""Event store throughput: appends/s (one writer, many writers, batched) and catch-up reads/s.

    uv run python benchmarks/eventstore.py [--events 5000] [--baseline old.json] [--save new.json]

Runs against a fresh migrated database on the local PostgreSQL (FLEETPULSE_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import asyncio
import time

import uvloop
from _common import parser, report

from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import NewEvent, PostgresEventStore
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name


def _event(i: int) -> NewEvent:
    return NewEvent("DeviceRegistered", {"device_id": f"d{i}", "tags": {"site": "s1"}, "n": i})


async def _single_writer(store: PostgresEventStore, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        await store.append(f"device-t-{i}", [_event(i)], tenant_id="t", expected_version=0)
    return n / (time.perf_counter() - started)


async def _concurrent_writers(store: PostgresEventStore, n: int, writers: int) -> float:
    async def write(w: int) -> None:
        for i in range(n // writers):
            await store.append(f"dev-{w}-{i}", [_event(i)], tenant_id="t", expected_version=0)

    started = time.perf_counter()
    await asyncio.gather(*(write(w) for w in range(writers)))
    return n / (time.perf_counter() - started)


async def _batched(store: PostgresEventStore, n: int, batch: int) -> float:
    started = time.perf_counter()
    for b in range(n // batch):
        await store.append(f"batch-{b}", [_event(i) for i in range(batch)], tenant_id="t")
    return n / (time.perf_counter() - started)


async def _catch_up(store: PostgresEventStore) -> tuple[float, int]:
    started = time.perf_counter()
    position, total = 0, 0
    while events := await store.read_all(after_position=position, limit=1000):
        position, total = events[-1].position, total + len(events)
    return total / (time.perf_counter() - started), total


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--writers", type=int, default=16)
    args = p.parse_args()
    name = unique_name("fp_bench_es")
    url = await create_migrated_database(name)
    pool = await create_pool(url, min_size=args.writers, max_size=args.writers + 2)
    try:
        store = PostgresEventStore(pool)
        figures = {
            "appends/s, one writer": await _single_writer(store, args.events),
            f"appends/s, {args.writers} concurrent writers": await _concurrent_writers(
                store, args.events, args.writers
            ),
            "events/s, batches of 100": await _batched(store, args.events * 4, 100),
        }
        rate, total = await _catch_up(store)
        figures["catch-up read events/s"] = rate
        figures["events read"] = total
    finally:
        await pool.close()
        await drop_database(name)
    report("event store", figures, args.baseline, args.save)


if __name__ == "__main__":
    uvloop.run(main())
